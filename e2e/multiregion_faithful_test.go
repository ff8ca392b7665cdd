package e2e

// Multi-region mode on the faithful network (fleet.AWSMultiOptions.Faithful):
// every instance in a network namespace of its region with a private
// address, a public address and a public DNS name that the harness's
// resolver answers with the private address inside the region and the
// public one outside; traffic between regions only through the public
// addresses (a user-space proxy, which can add the inter-region delay);
// and each region's security group in moto enforced in every namespace, so
// that a missing rule cuts the members of the other regions off.
//
// moto gaps, supplied by the harness: no public address or name for an
// instance in our VPCs (the harness's EC2 endpoint fills them into
// DescribeInstances, and each IMDS serves them); security groups that are
// kept, not enforced (the harness enforces them with nftables); the
// template's rules "within the cluster" (the harness adds them).

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

func newAWSMultiFaithful(t *testing.T, rtt time.Duration, sizes ...int) *fleet.AWSMulti {
	t.Helper()
	if os.Geteuid() != 0 && !testing.Short() {
		t.Fatal("the faithful network needs root (network namespaces): run the e2e tests as root, as .ci/run does")
	}
	return newAWSMultiWith(t, fleet.AWSMultiOptions{Sizes: sizes, Faithful: true, InterRegionRTT: rtt})
}

// checkPublicMembers checks that every running instance is a member that
// advertises its public name and publishes its public address.
func checkPublicMembers(t *testing.T, g *fleet.AWSMulti, st cluster.ClusterStatus) {
	t.Helper()
	for _, inst := range g.Running() {
		m := memberByName(t, st, inst.ID)
		want := cluster.DefaultPorts.PeerURL("http", g.PublicName(inst.ID))
		if m.PeerURL != want {
			t.Errorf("%s: member peer URL %q, want %q (its public name)", inst.ID, m.PeerURL, want)
		}
		if m.PublicIP != g.PublicIP(inst.ID) {
			t.Errorf("%s: member public IP %q, want %q", inst.ID, m.PublicIP, g.PublicIP(inst.ID))
		}
	}
}

// timingLine is the appliance's log line of the raft timing it derived.
var timingLine = regexp.MustCompile(`raft timing derived from the round trips to the peers.*`)

// derivedTimings returns each instance's log line of the derived timing.
func derivedTimings(g *fleet.AWSMulti) map[string]string {
	out := map[string]string{}
	for _, inst := range g.Instances() {
		b, err := os.ReadFile(inst.LogPath)
		if err != nil {
			continue
		}
		if m := timingLine.FindAll(b, -1); len(m) > 0 {
			out[inst.ID] = string(m[len(m)-1])
		}
	}
	return out
}

// replaceIn terminates the first running instance of region, launches its
// replacement there and waits until the cluster is the running instances
// again, with the same cluster id, advertised as check wants, and the
// rules and records follow the instances' addresses as addr gives them.
func replaceIn(t *testing.T, ctx context.Context, g *fleet.AWSMulti, region string, clusterID cluster.ID,
	addr func(*fleet.Instance) string, check func(*testing.T, *fleet.AWSMulti, cluster.ClusterStatus)) {
	t.Helper()
	var victim *fleet.Instance
	for _, inst := range g.Running() {
		if g.RegionOf(inst.ID) == region {
			victim = inst
			break
		}
	}
	if victim == nil {
		t.Fatalf("no running instance in %s", region)
	}
	victimIP := addr(victim)
	if err := g.Terminate(ctx, victim.ID); err != nil {
		t.Fatal(err)
	}
	terminated := time.Now()
	repl, err := g.Launch(ctx, region)
	if err != nil {
		t.Fatal(err)
	}
	after := waitMultiConverged(t, ctx, g, 3)
	if after.ClusterID != clusterID {
		t.Fatalf("cluster id changed from %s to %s: a new cluster formed", clusterID, after.ClusterID)
	}
	check(t, g, after)
	converged := time.Since(terminated)
	waitClientName(t, ctx, g, after, addr)
	records := time.Since(terminated)
	ictx, cancel := context.WithTimeout(ctx, convergeTimeout)
	rules, err := g.WaitIngress(ictx, wantedIngress(g, addr))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(rules, func(r cluster.IngressRule) bool { return r.CIDR == victimIP+"/32" }) {
		t.Errorf("a rule of terminated %s (%s) is left: %v", victim.ID, victimIP, rules)
	}
	t.Logf("replaced %s by %s (%s, %s) in %s: converged %s, records %s, rules %s after the termination",
		victim.ID, repl.ID, addr(repl), g.PublicName(repl.ID), region, converged.Round(time.Millisecond),
		records.Round(time.Millisecond), time.Since(terminated).Round(time.Millisecond))
}

// TestMultiRegionFaithful: 2+1 instances in two regions, each in a
// namespace with a public name, form one cluster whose members advertise
// their public names, reached across regions only through the public
// addresses and the rules the leader keeps; the resolver answers a name
// with the private address in its region and the public one elsewhere; a
// replacement in each region joins the same cluster, its rules replacing
// the terminated instance's.
func TestMultiRegionFaithful(t *testing.T) {
	start := time.Now()
	g := newAWSMultiFaithful(t, faithfulRTT(t), 2, 1)
	ctx := testContext(t, 4*time.Minute)
	east, west := g.Regions()[0], g.Regions()[1]

	st := waitMultiConverged(t, ctx, g, 3)
	t.Logf("3 healthy voters in %s and %s with public names %s after creating the group; cluster %s",
		east, west, time.Since(start).Round(time.Millisecond), st.ClusterID)
	checkPublicMembers(t, g, st)

	// The resolver splits the horizon: the private address in the region,
	// the public one outside.
	inRegion := oneInEachRegion(g)
	eastInst, westInst := inRegion[east], inRegion[west]
	for _, c := range []struct {
		from, of *fleet.Instance
		want     string
	}{
		{eastInst, westInst, g.PublicIP(westInst.ID)},
		{westInst, eastInst, g.PublicIP(eastInst.ID)},
		{eastInst, eastInst, eastInst.Address},
		{westInst, westInst, westInst.Address},
	} {
		addrs, err := g.LookupFrom(ctx, c.from.ID, g.PublicName(c.of.ID))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(addrs, []string{c.want}) {
			t.Errorf("%s resolves %s to %v, want [%s]", c.from.ID, g.PublicName(c.of.ID), addrs, c.want)
		}
	}
	// No path between the regions' private addresses (no peering).
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := g.DialFrom(dctx, eastInst.ID, fmt.Sprintf("%s:%d", westInst.Address, cluster.DefaultPorts.Peer))
	cancel()
	if err == nil {
		t.Errorf("%s reached %s's private address across regions", eastInst.ID, westInst.ID)
	}

	ictx, cancel := context.WithTimeout(ctx, convergeTimeout)
	rules, err := g.WaitIngress(ictx, wantedIngress(g, func(inst *fleet.Instance) string { return g.PublicIP(inst.ID) }))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	forwarded, refused := g.PublicConnections()
	t.Logf("%d ingress rules for the public addresses %s after creating the group; public proxy: forwarded %v, refused %v",
		len(rules), time.Since(start).Round(time.Millisecond), forwarded, refused)
	if forwarded[east+"→"+west] == 0 || forwarded[west+"→"+east] == 0 {
		t.Errorf("no connection went between the regions through the public addresses: %v", forwarded)
	}
	putKeys(t, ctx, g, "faithful", 50)
	waitClientName(t, ctx, g, st, func(inst *fleet.Instance) string { return g.PublicIP(inst.ID) })
	for id, line := range derivedTimings(g) {
		t.Logf("%s: %s", id, strings.TrimSpace(line))
	}
	public := func(inst *fleet.Instance) string { return g.PublicIP(inst.ID) }
	replaceIn(t, ctx, g, west, st.ClusterID, public, checkPublicMembers)
	replaceIn(t, ctx, g, east, st.ClusterID, public, checkPublicMembers)
	for _, inst := range g.Running() {
		checkKeys(t, ctx, g, "faithful", 50, inst.ID)
	}
	t.Logf("whole scenario %s", time.Since(start).Round(time.Millisecond))
}

// TestChaosMultiRegionPeered: the regions' VPCs peered with DNS
// resolution on, the appliances in --multi-region-network private: 2+1
// members advertise their private addresses and reach each other over the
// peering (never through the public addresses), with rules for the
// private addresses enforced in both regions; a replacement in each region
// follows; the client name lists the private addresses and serves from
// both regions.
func TestChaosMultiRegionPeered(t *testing.T) {
	if os.Geteuid() != 0 && !testing.Short() {
		t.Fatal("the faithful network needs root (network namespaces): run the e2e tests as root, as .ci/run does")
	}
	g := newAWSMultiWith(t, fleet.AWSMultiOptions{Sizes: []int{2, 1}, Faithful: true, Peered: true,
		Args: []string{"--multi-region-network", "private"}})
	ctx := testContext(t, 4*time.Minute)
	east, west := g.Regions()[0], g.Regions()[1]
	st := waitMultiConverged(t, ctx, g, 3)
	checkPrivateMembers(t, g, st)
	inRegion := oneInEachRegion(g)
	eastInst, westInst := inRegion[east], inRegion[west]
	// Peering's DNS resolution: the public name is the private address in
	// the other region too; and the private address is reachable there.
	addrs, err := g.LookupFrom(ctx, eastInst.ID, g.PublicName(westInst.ID))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(addrs, []string{westInst.Address}) {
		t.Errorf("%s resolves %s to %v over the peering, want [%s]", eastInst.ID, g.PublicName(westInst.ID), addrs, westInst.Address)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = g.DialFrom(dctx, eastInst.ID, fmt.Sprintf("%s:%d", westInst.Address, cluster.DefaultPorts.Peer))
	cancel()
	if err != nil {
		t.Errorf("no path over the peering: %v", err)
	}
	ictx, cancel := context.WithTimeout(ctx, convergeTimeout)
	_, err = g.WaitIngress(ictx, wantedIngress(g, privateAddress))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	putKeys(t, ctx, g, "peered", 50)
	waitClientName(t, ctx, g, st, privateAddress)
	replaceIn(t, ctx, g, west, st.ClusterID, privateAddress, checkPrivateMembers)
	replaceIn(t, ctx, g, east, st.ClusterID, privateAddress, checkPrivateMembers)
	for _, inst := range g.Running() {
		checkKeys(t, ctx, g, "peered", 50, inst.ID)
	}
	if forwarded, _ := g.PublicConnections(); forwarded[east+"→"+west]+forwarded[west+"→"+east] > 0 {
		t.Errorf("members went through the public addresses although peered: %v", forwarded)
	}
}

// checkPrivateMembers checks that every running instance is a member that
// advertises its private address and publishes no public one.
func checkPrivateMembers(t *testing.T, g *fleet.AWSMulti, st cluster.ClusterStatus) {
	t.Helper()
	for _, inst := range g.Running() {
		m := memberByName(t, st, inst.ID)
		if want := cluster.DefaultPorts.PeerURL("http", inst.Address); m.PeerURL != want {
			t.Errorf("%s: member peer URL %q, want %q (its private address)", inst.ID, m.PeerURL, want)
		}
		if m.PublicIP != "" {
			t.Errorf("%s: member publishes public IP %q in private mode", inst.ID, m.PublicIP)
		}
	}
}

// oneInEachRegion is a running instance of each region, by region.
func oneInEachRegion(g *fleet.AWSMulti) map[string]*fleet.Instance {
	out := map[string]*fleet.Instance{}
	for _, inst := range g.Running() {
		out[g.RegionOf(inst.ID)] = inst
	}
	return out
}
