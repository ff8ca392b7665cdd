package e2e

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// envFaithfulRTT sets the inter-region round trip of the faithful tests
// that take one (a Go duration); make chaos runs them at 80 ms and 200 ms,
// make test at none.
const envFaithfulRTT = "FAITHFUL_RTT"

func faithfulRTT(t *testing.T) time.Duration {
	t.Helper()
	s := os.Getenv(envFaithfulRTT)
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		t.Fatalf("%s=%q: want a duration such as 80ms", envFaithfulRTT, s)
	}
	return d
}

// regionLossWindow is how long a region stays cut off: several times
// --stale-grace of the fast flags and the appliance's 5 s before a
// leaderless member looks for a recovery, so that a wrong removal or a
// recovery by the cut-off minority would happen within it.
const regionLossWindow = 12 * time.Second

// TestChaosMultiRegionRegionLoss: 2+2+1 members in three regions; a
// region of two is cut off the Internet (its members reach each other,
// nobody else reaches them) under a writer. The other three keep the
// quorum: writes go on; nobody removes the cut-off members, whose
// instances still run; the cut-off minority does not recover a cluster of
// its own. Once the region is back, 5 healthy voters of the same cluster
// hold every acknowledged write.
func TestChaosMultiRegionRegionLoss(t *testing.T) {
	rtt := faithfulRTT(t)
	if os.Geteuid() != 0 && !testing.Short() {
		t.Fatal("the faithful network needs root (network namespaces): run the e2e tests as root, as .ci/run does")
	}
	g := newAWSMultiWith(t, fleet.AWSMultiOptions{
		Regions: []string{"us-east-1", "eu-west-1", "ap-southeast-2"}, Sizes: []int{2, 2, 1},
		Faithful: true, InterRegionRTT: rtt,
	})
	ctx := testContext(t, 5*time.Minute)
	st := waitMultiConverged(t, ctx, g, 5)
	checkPublicMembers(t, g, st)
	waitClientName(t, ctx, g, st, func(inst *fleet.Instance) string { return g.PublicIP(inst.ID) })

	// Lose the leader's region when it holds two members: the survivors
	// then elect a leader as well.
	lost := g.Regions()[0]
	for _, m := range st.Members {
		if m.Leader && g.RegionOf(m.Name) != g.Regions()[2] {
			lost = g.RegionOf(m.Name)
		}
	}
	var cutOff []string
	for _, inst := range g.Running() {
		if g.RegionOf(inst.ID) == lost {
			cutOff = append(cutOff, inst.ID)
		}
	}
	// The writer is a client of the members outside the lost region: one
	// with every member's endpoint would also pay its deadline on each call
	// that lands on a cut-off member (etcd's client does not skip a member
	// without a leader), which measures the client, not the quorum.
	var outside []string
	for _, inst := range g.Running() {
		if g.RegionOf(inst.ID) != lost {
			outside = append(outside, inst.ID)
		}
	}
	survivor := outside[0]
	c, err := g.Client(ctx, outside...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := startWriter(ctx, c, "loss")
	waitAcked(t, ctx, w, 20)

	if err := g.IsolateRegion(lost); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	atCut := w.acknowledged()
	// Watch the survivors' view for the whole window: the five members
	// stay, and the three outside the region are healthy voters again.
	healthyAt := time.Duration(0)
	for time.Since(cut) < regionLossWindow {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		view, err := g.StatusOf(sctx, survivor)
		cancel()
		if err == nil {
			if len(view.Members) != 5 {
				t.Fatalf("%s after %s cut off: the survivors' member list is %s, want the 5 members (no removal of running instances)",
					time.Since(cut).Round(time.Millisecond), lost, fleet.Summarize(view))
			}
			healthy := 0
			for _, m := range view.Members {
				if m.Healthy && m.Role == cluster.RoleVoter && !slices.Contains(cutOff, m.Name) {
					healthy++
				}
			}
			if healthy == 3 && healthyAt == 0 {
				healthyAt = time.Since(cut)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(250 * time.Millisecond): // the sampling period
		}
	}
	if healthyAt == 0 {
		t.Errorf("the 3 members outside %s were never seen as healthy voters in %s", lost, regionLossWindow)
	}
	during := w.acknowledged() - atCut
	if during < 20 {
		t.Errorf("only %d writes acknowledged in the %s that %s was cut off: the quorum outside it should serve", during, regionLossWindow, lost)
	}
	g.HealRegion(lost)
	healed := time.Now()
	after := waitMultiConverged(t, ctx, g, 5)
	acked, gap, err := w.stop()
	if err != nil {
		t.Fatal(err)
	}
	if after.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s: the cut-off region recovered a cluster of its own", st.ClusterID, after.ClusterID)
	}
	for id, name := range memberIDs(st) {
		if _, ok := memberIDs(after)[id]; !ok {
			t.Errorf("member %s (%s) is gone after the region came back: %s", id, name, fleet.Summarize(after))
		}
	}
	for _, inst := range g.Running() {
		checkWritten(t, ctx, g, inst.ID, "loss", acked)
	}
	t.Logf("%s (%v) cut off at %s RTT: 3 healthy voters outside it %s after the cut, %d writes acknowledged during the %s, "+
		"longest write gap %s; 5 healthy voters %s after it came back; %d writes in all",
		lost, cutOff, rtt, healthyAt.Round(time.Millisecond), during, regionLossWindow, gap.Round(time.Millisecond),
		time.Since(healed).Round(time.Millisecond), acked)
}

// waitAcked waits until the writer has n writes acknowledged.
func waitAcked(t *testing.T, ctx context.Context, w *writer, n int) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, convergeTimeout)
	defer cancel()
	err := fleet.Poll(wctx, 50*time.Millisecond, func() (bool, string) {
		return w.acknowledged() >= n, "writes acknowledged: too few"
	})
	if err != nil {
		t.Fatal(err)
	}
}
