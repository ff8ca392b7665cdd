package e2e

// Multi-region mode end to end (SPEC §4.1, §4.4): instances in two regions
// of one moto, tagged with the cluster tag, each running its appliance with
// --regions (fleet.AWSMulti).
//
// moto gaps, supplied or worked around by the harness: no per-instance
// metadata service (the harness serves IMDSv2 per instance); no propagation
// of aws:cloudformation:* tags (the test uses a cluster tag key of its own,
// --cluster-tag-key); no public addresses in a 127.0.0.0/16 VPC, so the
// members advertise their private addresses, not public DNS names; and
// security group rules are kept but not enforced, so the test checks the
// rules themselves, not that they let traffic through.

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// multiRegionPorts are the ports every member is allowed on: etcd's client
// and peer ports and the appliance API's.
var multiRegionPorts = []int{cluster.DefaultPorts.Client, cluster.DefaultPorts.Peer, cluster.DefaultPorts.API}

func newAWSMulti(t *testing.T, sizes ...int) *fleet.AWSMulti {
	t.Helper()
	return newAWSMultiWith(t, fleet.AWSMultiOptions{Sizes: sizes})
}

// newAWSMultiWith starts the multi-region group of opts with the test
// binary, the fast flags, a temp dir and the test's log.
func newAWSMultiWith(t *testing.T, opts fleet.AWSMultiOptions) *fleet.AWSMulti {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: starts moto and real appliance processes")
	}
	lw := &testLogWriter{t: t}
	opts.Binary, opts.Dir = binary, t.TempDir()
	if opts.HostedZone == "" {
		opts.HostedZone = testZone
	}
	opts.Args = append(append([]string(nil), fastFlags...), opts.Args...)
	opts.Logger = slog.New(slog.NewTextHandler(lw, nil))
	g, err := fleet.NewAWSMulti(testContext(t, 2*time.Minute), opts)
	if err != nil {
		lw.close()
		t.Fatalf("the multi-region end-to-end tests need moto_server (SPEC §6), and the faithful tier root, ip and nft: %v", err)
	}
	closeAWSAtEnd(t, g, lw)
	return g
}

// wantedIngress is one rule per running instance, port and region, for
// the instance's address as addr gives it.
func wantedIngress(g *fleet.AWSMulti, addr func(*fleet.Instance) string) []cluster.IngressRule {
	var want []cluster.IngressRule
	for _, inst := range g.Running() {
		for _, region := range g.Regions() {
			for _, port := range multiRegionPorts {
				want = append(want, cluster.IngressRule{Region: region, Port: port, CIDR: addr(inst) + "/32"})
			}
		}
	}
	return want
}

// privateAddress is an instance's address on moto's loopback network.
func privateAddress(inst *fleet.Instance) string { return inst.Address }

// TestMultiRegion: a group spread over two regions forms one cluster of 3
// voters; the leader allows every member in the cluster security group of
// both regions, leaving an operator's rule alone; an instance terminated
// and replaced in the other region leaves the cluster, and its rules go
// while the replacement's come, with the data intact.
func TestMultiRegion(t *testing.T) {
	start := time.Now()
	g := newAWSMulti(t, 2, 1)
	ctx := testContext(t, 4*time.Minute)
	east, west := g.Regions()[0], g.Regions()[1]
	if err := g.AddIngress(ctx, east, int32(cluster.DefaultPorts.Client), "192.0.2.99/32", "monitoring"); err != nil {
		t.Fatal(err)
	}

	st := waitMultiConverged(t, ctx, g, 3)
	t.Logf("3 healthy voters in %s and %s %s after creating the group; cluster %s",
		east, west, time.Since(start).Round(time.Millisecond), st.ClusterID)
	regions := map[string]int{}
	for _, inst := range g.Running() {
		regions[g.RegionOf(inst.ID)]++
		m := memberByName(t, st, inst.ID)
		// moto gives no public address: the peer-facing address falls back
		// to the private one (on EC2 it is the public DNS name).
		if m.PeerURL != "" && m.PeerURL != inst.PeerURL() {
			t.Errorf("%s: member peer URL %s, want %s", inst.ID, m.PeerURL, inst.PeerURL())
		}
	}
	if regions[east] != 2 || regions[west] != 1 {
		t.Fatalf("members by region %v, want 2 in %s and 1 in %s", regions, east, west)
	}
	putKeys(t, ctx, g, "multi", 50)
	waitClientName(t, ctx, g, st, privateAddress)

	ictx, cancel := context.WithTimeout(ctx, convergeTimeout)
	rules, err := g.WaitIngress(ictx, wantedIngress(g, privateAddress))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d ingress rules in the two regions' security groups %s after creating the group",
		len(rules), time.Since(start).Round(time.Millisecond))
	checkForeignRule(t, ctx, g, east)

	// Terminate the instance in the other region; launch its replacement there.
	var victim *fleet.Instance
	for _, inst := range g.Running() {
		if g.RegionOf(inst.ID) == west {
			victim = inst
		}
	}
	old := memberByName(t, st, victim.ID)
	if err := g.Terminate(ctx, victim.ID); err != nil {
		t.Fatal(err)
	}
	terminated := time.Now()
	repl, err := g.Launch(ctx, west)
	if err != nil {
		t.Fatal(err)
	}
	after := waitMultiConverged(t, ctx, g, 3)
	if after.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s: a new cluster formed", st.ClusterID, after.ClusterID)
	}
	if _, ok := memberIDs(after)[old.ID]; ok {
		t.Fatalf("stale member %s of terminated %s still listed: %s", old.ID, victim.ID, fleet.Summarize(after))
	}
	memberByName(t, after, repl.ID)
	t.Logf("replaced %s by %s in %s; converged %s after the termination", victim, repl, west,
		time.Since(terminated).Round(time.Millisecond))

	want := wantedIngress(g, privateAddress)
	ictx, cancel = context.WithTimeout(ctx, convergeTimeout)
	rules, err = g.WaitIngress(ictx, want)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if r.CIDR == victim.Address+"/32" {
			t.Errorf("rule %s of terminated %s not revoked", r, victim)
		}
	}
	if !slices.ContainsFunc(rules, func(r cluster.IngressRule) bool { return r.CIDR == repl.Address+"/32" && r.Region == east }) {
		t.Errorf("no rule for %s in %s: %v", repl, east, rules)
	}
	t.Logf("rules follow the replacement %s after the termination", time.Since(terminated).Round(time.Millisecond))
	checkForeignRule(t, ctx, g, east)
	waitClientName(t, ctx, g, after, privateAddress)
	t.Logf("records follow the replacement %s after the termination", time.Since(terminated).Round(time.Millisecond))

	for _, inst := range g.Running() {
		checkKeys(t, ctx, g, "multi", 50, inst.ID)
	}
}

// checkForeignRule checks that the operator's rule is still in place.
func checkForeignRule(t *testing.T, ctx context.Context, g *fleet.AWSMulti, region string) {
	t.Helper()
	rules, err := g.Ingress(ctx, region)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(rules, func(r cluster.IngressRule) bool {
		return r.CIDR == "192.0.2.99/32" && r.Description == "monitoring"
	}) {
		t.Errorf("the operator's rule in %s is gone: %v", region, rules)
	}
}

// waitClientName waits, within convergeTimeout, until Route53 holds the
// records of st's members, and checks that the cluster's name is an A
// record of every running instance's address as addr gives it: the name
// a client in any region connects to. On the faithful network it then
// resolves the name from an instance of each region and reads etcd's
// /health through it, as a client there would.
func waitClientName(t *testing.T, ctx context.Context, g *fleet.AWSMulti, st cluster.ClusterStatus, addr func(*fleet.Instance) string) {
	t.Helper()
	spec := g.DNSSpec()
	want := cluster.WantedRecords(spec, st.Members)
	var addrs []string
	for _, inst := range g.Running() {
		addrs = append(addrs, addr(inst))
	}
	slices.Sort(addrs)
	i := slices.IndexFunc(want, func(r cluster.DNSRecord) bool { return r.Type == cluster.RecordA && r.Name == spec.Domain() })
	if i < 0 || !slices.Equal(want[i].Values, addrs) {
		t.Fatalf("wanted records %v: want an A record %s of %v", recordLines(want), spec.Domain(), addrs)
	}
	wctx, cancel := context.WithTimeout(ctx, convergeTimeout)
	defer cancel()
	err := fleet.Poll(wctx, 200*time.Millisecond, func() (bool, string) {
		have, err := g.Records(wctx)
		if err != nil {
			return false, err.Error()
		}
		return cluster.EqualRecords(want, have), fmt.Sprintf("Route53 holds\n  %s\nwant\n  %s", recordLines(have), recordLines(want))
	})
	if err != nil {
		t.Fatal(err)
	}
	if !g.Faithful() {
		return
	}
	name := strings.TrimSuffix(spec.Domain(), ".")
	for region, inst := range oneInEachRegion(g) {
		got, err := g.LookupFrom(ctx, inst.ID, name)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, addrs) {
			t.Errorf("%s in %s resolves %s to %v, want %v", inst.ID, region, name, got, addrs)
		}
		status, body, err := g.GetFrom(ctx, inst.ID, fmt.Sprintf("http://%s:%d/health", name, cluster.DefaultPorts.Client))
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
			t.Errorf("%s in %s: GET /health of %s: %d %s", inst.ID, region, name, status, body)
		}
	}
}

// waitMultiConverged waits, within convergeTimeout, until the running
// instances of g are n healthy voters, and returns that view.
func waitMultiConverged(t *testing.T, ctx context.Context, g *fleet.AWSMulti, n int) cluster.ClusterStatus {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, convergeTimeout)
	defer cancel()
	st, err := g.WaitConverged(cctx, n)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
