package e2e

// The AWS end-to-end tier (SPEC §6): real appliances with --provider aws,
// moto as EC2, Auto Scaling and Route53, a fake IMDSv2 per instance
// (fleet.AWSGroup). They run with the other end-to-end tests and fail,
// never skip, when moto is not installed.
//
// moto gap: moto has no per-instance metadata service; the harness serves
// IMDSv2 for every instance (fleet.IMDS).

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// testZone is the Route53 hosted zone of the AWS tests that publish DNS.
const testZone = "e2e.example.org"

// newAWSGroup starts moto and an Auto Scaling group of size instances, each
// running its appliance. On failure the tails of every instance's log are
// printed and the logs saved; the group is closed at the end of t.
func newAWSGroup(t *testing.T, size int, extraArgs ...string) *fleet.AWSGroup {
	t.Helper()
	return newAWSGroupWith(t, fleet.AWSOptions{Size: size, Args: extraArgs})
}

// newAWSGroupWith is newAWSGroup with the fleet's options (a hosted zone,
// a store); fastFlags come before opts.Args.
func newAWSGroupWith(t *testing.T, opts fleet.AWSOptions) *fleet.AWSGroup {
	t.Helper()
	return startAWSGroup(t, opts, fleet.NewAWS)
}

// newFaultyAWSGroup is newAWSGroupWith with the harness's fault proxy
// between the appliances and moto.
func newFaultyAWSGroup(t *testing.T, opts fleet.AWSOptions) (*fleet.AWSGroup, *testcluster.FaultProxy) {
	t.Helper()
	var proxy *testcluster.FaultProxy
	g := startAWSGroup(t, opts, func(ctx context.Context, opts fleet.AWSOptions) (*fleet.AWSGroup, error) {
		g, p, err := testcluster.NewAWSWithFaults(ctx, opts)
		proxy = p
		return g, err
	})
	return g, proxy
}

// startAWSGroup starts the group of opts with start, in t's temp dir and
// with the test's binary, logger and fastFlags, and closes it at the end
// of t.
func startAWSGroup(t *testing.T, opts fleet.AWSOptions, start func(context.Context, fleet.AWSOptions) (*fleet.AWSGroup, error)) *fleet.AWSGroup {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: starts moto and real appliance processes")
	}
	dir := t.TempDir() // registered first, so removed after the group closes
	lw := &testLogWriter{t: t}
	ctx := testContext(t, 2*time.Minute)
	opts.Binary = binary
	opts.Dir = dir
	opts.Args = append(append([]string(nil), fastFlags...), opts.Args...)
	opts.Logger = slog.New(slog.NewTextHandler(lw, nil))
	g, err := start(ctx, opts)
	if err != nil {
		lw.close()
		t.Fatalf("the AWS end-to-end tests need moto_server (SPEC §6): %v", err)
	}
	closeAWSAtEnd(t, g, lw)
	return g
}

// awsHarness is an AWS group of the harness, single- or multi-region.
type awsHarness interface {
	Instances() []*fleet.Instance
	Moto() *fleet.Moto
	Close() error
}

// closeAWSAtEnd closes g and then lw at the end of t. On failure the tails
// of every instance's log are printed first, and the logs (moto's too)
// saved, as they are with E2E_KEEP_LOGS set.
func closeAWSAtEnd(t *testing.T, g awsHarness, lw *testLogWriter) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("instance logs (appliance lines; etcd's own are in the saved logs):\n%s", applianceLogTailsOf(g.Instances(), 60))
		}
		if t.Failed() || os.Getenv("E2E_KEEP_LOGS") != "" {
			files := []string{g.Moto().LogPath}
			for _, inst := range g.Instances() {
				files = append(files, inst.LogPath)
			}
			if dir, err := saveLogFiles(t, files); err == nil {
				t.Logf("full logs saved in %s", dir)
			}
		}
		if err := g.Close(); err != nil {
			t.Errorf("closing the group: %v", err)
		}
		lw.close()
	})
}

// saveLogFiles copies files out of the test's temp dir, which is removed
// after the test, for diagnosis and CI artifacts.
func saveLogFiles(t *testing.T, files []string) (string, error) {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	dir := filepath.Join(os.TempDir(), "etcd-appliance-e2e-failures", name+"-"+time.Now().Format("150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func waitAWSConverged(t *testing.T, ctx context.Context, g *fleet.AWSGroup, voters int) cluster.ClusterStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, convergeTimeout)
	defer cancel()
	st, err := g.WaitConverged(ctx, voters)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// inService returns the ids the group has in service, sorted.
func inService(t *testing.T, ctx context.Context, g *fleet.AWSGroup) []string {
	t.Helper()
	ids, err := g.InService(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func memberNames(st cluster.ClusterStatus) []string {
	var names []string
	for _, m := range st.Members {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names
}

// waitAWSRecords polls, within convergeTimeout, until the records that
// Route53 (moto) holds under the cluster's name are exactly those of st's
// members, which must be the converged view: started, healthy voters.
// Before it waits it checks the wanted layout against the instances
// themselves: the cluster's A record lists every member's instance address,
// each SRV record one target per member, <id>.<name>.<zone>, whose A record
// is that instance's address. With TLS the SRV records are the -ssl ones.
func waitAWSRecords(t *testing.T, ctx context.Context, g *fleet.AWSGroup, st cluster.ClusterStatus) []cluster.DNSRecord {
	t.Helper()
	spec := g.DNSSpec()
	want := cluster.WantedRecords(spec, st.Members)
	byKey := map[string]cluster.DNSRecord{}
	for _, r := range want {
		byKey[r.Type+" "+r.Name] = r
	}
	var addrs, servers, clients []string
	for _, m := range st.Members {
		inst := g.Instance(m.Name)
		if inst == nil {
			t.Fatalf("member %s (%s) is no instance of the group", m.ID, m.Name)
		}
		host := strings.ToLower(m.Name) + "." + spec.Domain()
		addrs = append(addrs, inst.Address)
		servers = append(servers, fmt.Sprintf("0 0 2380 %s", host))
		clients = append(clients, fmt.Sprintf("0 0 2379 %s", host))
		if a := byKey["A "+host]; !slices.Equal(a.Values, []string{inst.Address}) {
			t.Fatalf("wanted A record of %s is %v, want [%s]", host, a.Values, inst.Address)
		}
	}
	ssl := "" // with TLS, the -ssl services
	if spec.TLS {
		ssl = "-ssl"
	}
	for _, c := range []struct {
		key    string
		values []string
	}{
		{"A " + spec.Domain(), addrs},
		{"SRV _etcd-server" + ssl + "._tcp." + spec.Domain(), servers},
		{"SRV _etcd-client" + ssl + "._tcp." + spec.Domain(), clients},
	} {
		slices.Sort(c.values)
		if got := byKey[c.key].Values; !slices.Equal(got, c.values) {
			t.Fatalf("wanted %s is %v, want %v", c.key, got, c.values)
		}
	}
	if len(want) != 3+len(st.Members) {
		t.Fatalf("wanted records %v: want 3 + one A record per member (%d)", want, len(st.Members))
	}

	ctx, cancel := context.WithTimeout(ctx, convergeTimeout)
	defer cancel()
	var have []cluster.DNSRecord
	err := fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		var err error
		if have, err = g.Records(ctx); err != nil {
			return false, err.Error()
		}
		return cluster.EqualRecords(want, have), fmt.Sprintf("Route53 holds\n  %s\nwant\n  %s",
			recordLines(have), recordLines(want))
	})
	if err != nil {
		t.Fatal(err)
	}
	return have
}

func recordLines(rs []cluster.DNSRecord) string {
	lines := make([]string, 0, len(rs))
	for _, r := range rs {
		lines = append(lines, r.String())
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n  ")
}

func checkAWSKeysOnEach(t *testing.T, ctx context.Context, g *fleet.AWSGroup, prefix string, n int) {
	t.Helper()
	running, err := g.Running(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, inst := range running {
		checkKeys(t, ctx, g, prefix, n, inst.ID)
	}
}

// TestAWSFreshASG: an Auto Scaling group of 3 forms one cluster of 3
// healthy voters named after the EC2 instance ids, each on the address EC2
// gave its instance, publishes their SRV and A records in Route53, and
// serves data from every member.
func TestAWSFreshASG(t *testing.T) {
	start := time.Now()
	g := newAWSGroupWith(t, fleet.AWSOptions{Size: 3, HostedZone: testZone})
	ctx := testContext(t, 3*time.Minute)
	st := waitAWSConverged(t, ctx, g, 3)
	t.Logf("3 healthy voters %s after creating the group; cluster %s", time.Since(start).Round(time.Millisecond), st.ClusterID)

	ids := inService(t, ctx, g)
	if len(ids) != 3 || !slices.Equal(memberNames(st), ids) {
		t.Fatalf("members %v, want the in-service instances %v", memberNames(st), ids)
	}
	_, subnet, err := net.ParseCIDR(g.Subnet())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		inst := g.Instance(id)
		if inst == nil || !inst.Running() {
			t.Fatalf("in-service instance %s has no running appliance", id)
		}
		if !subnet.Contains(net.ParseIP(inst.Address)) {
			t.Errorf("%s runs on %s, outside the group's subnet %s", inst, inst.Address, g.Subnet())
		}
		m := memberByName(t, st, id)
		if m.PeerURL != "" && m.PeerURL != inst.PeerURL() {
			t.Errorf("%s: member peer URL %s, want %s", id, m.PeerURL, inst.PeerURL())
		}
		// Ready follows the member's own next look at its etcd, a moment
		// after the cluster's status shows it a healthy voter.
		err := fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
			code, _, err := g.Get(ctx, id, "/readyz")
			return err == nil && code == http.StatusOK, fmt.Sprintf("/readyz answered %d (err %v)", code, err)
		})
		if err != nil {
			t.Errorf("%s: %v", id, err)
		}
		if code, body, err := g.Get(ctx, id, "/metrics"); err != nil || code != http.StatusOK {
			t.Errorf("%s: /metrics answered %d (err %v)", id, code, err)
		} else if !strings.Contains(string(body), "etcd_appliance_aws_requests_total") {
			t.Errorf("%s: /metrics has no etcd_appliance_aws_requests_total", id)
		}
		if md := g.IMDS(id); md == nil || md.TokenlessRequests() != 0 {
			t.Errorf("%s: IMDS got token-less (IMDSv1) requests", id)
		}
	}
	waitAWSRecords(t, ctx, g, st)
	t.Logf("DNS published %s after creating the group", time.Since(start).Round(time.Millisecond))
	putKeys(t, ctx, g, "aws-fresh", 100)
	checkAWSKeysOnEach(t, ctx, g, "aws-fresh", 100)
}

// TestAWSReplaceThroughASG terminates the leader's instance through the Auto
// Scaling API without decrementing the desired capacity: the group launches
// a replacement (new id, new address), whose appliance removes the stale
// member and joins; 3 healthy voters are the in-service instances again,
// in the same cluster, with every key, and Route53 lists the new members.
func TestAWSReplaceThroughASG(t *testing.T) {
	g := newAWSGroupWith(t, fleet.AWSOptions{Size: 3, HostedZone: testZone})
	ctx := testContext(t, 3*time.Minute)
	st := waitAWSConverged(t, ctx, g, 3)
	waitAWSRecords(t, ctx, g, st)
	putKeys(t, ctx, g, "before", 100)

	old := leaderOf(t, st)
	victim := g.Instance(old.Name)
	if victim == nil {
		t.Fatalf("leader %s (%s) is no instance of the group", old.ID, old.Name)
	}
	before := inService(t, ctx, g)
	if err := g.TerminateInASG(ctx, victim.ID, false); err != nil {
		t.Fatal(err)
	}
	terminated := time.Now()

	repl := startReplacement(t, ctx, g, victim)
	ids := inService(t, ctx, g)
	if len(ids) != 3 || slices.Contains(ids, victim.ID) || slices.Contains(before, repl) {
		t.Fatalf("in service after terminating %s: %v (before %v), replacement %v", victim.ID, ids, before, repl)
	}
	after := waitAWSConverged(t, ctx, g, 3)
	newInst := g.Instance(repl)
	t.Logf("replaced %s by %s through the ASG; converged %s after the termination",
		victim, newInst, time.Since(terminated).Round(time.Millisecond))

	if after.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s: a new cluster formed", st.ClusterID, after.ClusterID)
	}
	if _, ok := memberIDs(after)[old.ID]; ok {
		t.Fatalf("stale member %s of terminated %s still listed: %s", old.ID, victim.ID, fleet.Summarize(after))
	}
	if !slices.Equal(memberNames(after), inService(t, ctx, g)) {
		t.Fatalf("members %v, want the in-service instances %v", memberNames(after), inService(t, ctx, g))
	}
	m := memberByName(t, after, newInst.ID)
	if m.PeerURL != "" && !strings.Contains(m.PeerURL, "//"+newInst.Address+":") {
		t.Errorf("new member %s advertises %s, want address %s", m.ID, m.PeerURL, newInst.Address)
	}
	waitAWSRecords(t, ctx, g, after)
	t.Logf("DNS lists the new members %s after the termination", time.Since(terminated).Round(time.Millisecond))
	checkAWSKeysOnEach(t, ctx, g, "before", 100)
	putKeys(t, ctx, g, "after", 20)
	checkAWSKeysOnEach(t, ctx, g, "after", 20)
}

// TestAWSScaleOutAndIn grows the group from 3 to 5 instances and shrinks it
// back to 3 through the Auto Scaling API. The 2 new instances join to 5
// healthy voters; on scale-in moto terminates 2 instances of its choosing
// (the oldest), and the leader removes their members. The cluster keeps its
// id and every key, and Route53 follows each step.
func TestAWSScaleOutAndIn(t *testing.T) {
	g := newAWSGroupWith(t, fleet.AWSOptions{Size: 3, HostedZone: testZone})
	ctx := testContext(t, 4*time.Minute)
	st := waitAWSConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "scale", 50)
	g.Follow(ctx)

	start := time.Now()
	if err := g.SetDesired(ctx, 5); err != nil {
		t.Fatal(err)
	}
	five := waitAWSConverged(t, ctx, g, 5)
	t.Logf("5 healthy voters %s after scaling out", time.Since(start).Round(time.Millisecond))
	if five.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s on scale-out", st.ClusterID, five.ClusterID)
	}
	waitAWSRecords(t, ctx, g, five)
	checkAWSKeysOnEach(t, ctx, g, "scale", 50)

	before := inService(t, ctx, g)
	start = time.Now()
	if err := g.SetDesired(ctx, 3); err != nil {
		t.Fatal(err)
	}
	three := waitAWSConverged(t, ctx, g, 3)
	t.Logf("3 healthy voters %s after scaling in", time.Since(start).Round(time.Millisecond))
	after := inService(t, ctx, g)
	var removed []string
	for _, id := range before {
		if !slices.Contains(after, id) {
			removed = append(removed, id)
		}
	}
	if len(removed) != 2 || len(after) != 3 {
		t.Fatalf("scale-in left %v in service (before %v): want 2 of them terminated", after, before)
	}
	if three.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s on scale-in", st.ClusterID, three.ClusterID)
	}
	if !slices.Equal(memberNames(three), after) {
		t.Fatalf("members %v, want the in-service instances %v (terminated %v)", memberNames(three), after, removed)
	}
	waitAWSRecords(t, ctx, g, three)
	checkAWSKeysOnEach(t, ctx, g, "scale", 50)
}

// startReplacement waits for the one instance moto launches in place of
// victim, which it does at once, and starts its appliance (Sync); it
// returns the replacement's id.
func startReplacement(t *testing.T, ctx context.Context, g *fleet.AWSGroup, victim *fleet.Instance) string {
	t.Helper()
	var repl []string
	err := fleet.Poll(testContext(t, 30*time.Second), 100*time.Millisecond, func() (bool, string) {
		started, _, err := g.Sync(ctx)
		if err != nil {
			return false, err.Error()
		}
		repl = append(repl, started...)
		return len(repl) > 0, fmt.Sprintf("no replacement of %s started", victim.ID)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(repl) != 1 {
		t.Fatalf("started %v, want one replacement of %s", repl, victim.ID)
	}
	return repl[0]
}
