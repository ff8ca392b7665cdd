package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// TestFreshGroup starts groups of 3 and 5 instances at once: they must form
// one cluster of healthy voters that serves data from every member.
func TestFreshGroup(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d", n), func(t *testing.T) {
			g := newGroup(t)
			ctx := testContext(t, 3*time.Minute)
			insts, st := startConverged(t, ctx, g, n)

			for _, inst := range insts {
				m := memberByName(t, st, inst.ID)
				assertInstanceReady(t, ctx, g, inst, st.ClusterID, m.ID)
				if code, _, err := g.Get(ctx, inst.ID, "/metrics"); err != nil || code != http.StatusOK {
					t.Errorf("%s: /metrics answered %d (err %v)", inst.ID, code, err)
				}
				if pid, err := inst.EtcdPID(); err != nil || pid == 0 {
					t.Errorf("%s: no live etcd pid in %s (err %v)", inst.ID, filepath.Join(inst.DataDir, "etcd.pid"), err)
				}
				if m.PeerURL != "" && m.PeerURL != inst.PeerURL() {
					t.Errorf("%s: member peer URL %s, want %s", inst.ID, m.PeerURL, inst.PeerURL())
				}
			}
			putKeys(t, ctx, g, "fresh", 100)
			checkKeysOnEach(t, ctx, g, "fresh", 100)
		})
	}
}

// TestEtcdChildKilled kills the etcd child with SIGKILL: the appliance
// restarts it on its data, as the same member.
func TestEtcdChildKilled(t *testing.T) {
	g := newGroup(t)
	ctx := testContext(t, 3*time.Minute)
	insts, st := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "before", 100)

	victim := insts[1]
	appliancePID := victim.PID()
	oldPID, err := g.KillEtcd(victim.ID)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	err = fleet.Poll(ctx, 50*time.Millisecond, func() (bool, string) {
		pid, _ := victim.EtcdPID()
		return pid != 0 && pid != oldPID, fmt.Sprintf("no new etcd pid for %s after killing pid %d", victim.ID, oldPID)
	})
	if err != nil {
		t.Fatal(err)
	}
	after := waitConverged(t, ctx, g, 3)
	t.Logf("etcd of %s killed; cluster converged again after %s", victim.ID, time.Since(killed).Round(time.Millisecond))

	if after.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s", st.ClusterID, after.ClusterID)
	}
	assertSameMembers(t, st, after)
	if victim.PID() != appliancePID {
		t.Errorf("the appliance of %s changed pid from %d to %d: only etcd was killed", victim.ID, appliancePID, victim.PID())
	}
	checkKeysOnEach(t, ctx, g, "before", 100)
	putKeys(t, ctx, g, "after", 20)
	checkKeysOnEach(t, ctx, g, "after", 20)
}

// TestApplianceKilledAndRestarted kills an appliance with SIGKILL (its etcd
// must die with it), lets the others take writes, then starts it again: it
// comes back as the same member with its data, and catches up.
func TestApplianceKilledAndRestarted(t *testing.T) {
	g := newGroup(t)
	ctx := testContext(t, 3*time.Minute)
	insts, st := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "before", 100)

	victim := insts[0]
	if err := g.Kill(victim.ID); err != nil {
		t.Fatal(err)
	}
	// Let the survivors see the member down, so the restart has to catch up
	// and is not a blip the cluster never noticed.
	survivor := insts[1]
	err := fleet.Poll(testContext(t, 30*time.Second), 100*time.Millisecond, func() (bool, string) {
		st, err := g.StatusOf(ctx, survivor.ID)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range st.Members {
			if m.Name == victim.ID && !m.Healthy {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%s does not see %s down: %s", survivor.ID, victim.ID, fleet.Summarize(st))
	})
	if err != nil {
		t.Fatal(err)
	}
	putKeys(t, ctx, g, "during", 50) // two of three voters keep quorum
	if st, err := g.Status(ctx); err != nil || len(st.Members) != 3 {
		t.Fatalf("while %s is down the cluster must keep its member: %s (err %v)", victim.ID, fleet.Summarize(st), err)
	}

	restarted := time.Now()
	if err := g.Start(ctx, victim.ID); err != nil {
		t.Fatal(err)
	}
	after := waitConverged(t, ctx, g, 3)
	t.Logf("%s restarted; converged after %s", victim.ID, time.Since(restarted).Round(time.Millisecond))
	if after.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s", st.ClusterID, after.ClusterID)
	}
	assertSameMembers(t, st, after)
	checkKeysOnEach(t, ctx, g, "before", 100)
	checkKeysOnEach(t, ctx, g, "during", 50)
}

// TestReplaceWithNewAddress terminates the leader's instance and launches a
// replacement on a new address: the stale member goes, the new instance
// joins as a learner and is promoted, three voters again.
func TestReplaceWithNewAddress(t *testing.T) {
	testReplace(t, false)
}

// TestReplaceReusingAddress is the replacement where the new instance gets
// the terminated instance's address, as EC2 reuses private IPs.
func TestReplaceReusingAddress(t *testing.T) {
	testReplace(t, true)
}

func testReplace(t *testing.T, reuseAddress bool) {
	g := newGroup(t)
	ctx := testContext(t, 3*time.Minute)
	_, st := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "before", 100)

	old := leaderOf(t, st)
	victim := g.Instance(old.Name)
	w := watchMembers(t, ctx, g)
	if err := g.Terminate(ctx, victim.ID); err != nil {
		t.Fatal(err)
	}
	var (
		repl *fleet.Instance
		err  error
	)
	launched := time.Now()
	if reuseAddress {
		repl, err = g.LaunchAt(ctx, victim.Address)
	} else {
		repl, err = g.Launch(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	after := waitConverged(t, ctx, g, 3)
	t.Logf("replaced %s by %s (%s); converged %s after the launch", victim, repl, map[bool]string{true: "same address", false: "new address"}[reuseAddress],
		time.Since(launched).Round(time.Millisecond))
	w.assertJoinedAsLearners(t, 1)

	if after.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s: a new cluster formed", st.ClusterID, after.ClusterID)
	}
	if _, ok := memberIDs(after)[old.ID]; ok {
		t.Fatalf("stale member %s of terminated %s still listed: %s", old.ID, victim.ID, fleet.Summarize(after))
	}
	m := memberByName(t, after, repl.ID)
	if m.PeerURL != "" && !strings.Contains(m.PeerURL, "//"+repl.Address+":") {
		t.Errorf("new member %s advertises %s, want address %s", m.ID, m.PeerURL, repl.Address)
	}
	checkKeysOnEach(t, ctx, g, "before", 100)
	putKeys(t, ctx, g, "after", 20)
	checkKeysOnEach(t, ctx, g, "after", 20)
}

// TestWipedDataDirRejoins kills a member's appliance, wipes its data dir and
// starts it again: it removes its old member and joins with a new one.
func TestWipedDataDirRejoins(t *testing.T) {
	g := newGroup(t)
	ctx := testContext(t, 3*time.Minute)
	insts, st := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "before", 100)

	victim := insts[2]
	old := memberByName(t, st, victim.ID)
	if err := g.Kill(victim.ID); err != nil {
		t.Fatal(err)
	}
	if err := g.WipeData(victim.ID); err != nil {
		t.Fatal(err)
	}
	w := watchMembers(t, ctx, g)
	started := time.Now()
	if err := g.Start(ctx, victim.ID); err != nil {
		t.Fatal(err)
	}
	after := waitConverged(t, ctx, g, 3)
	t.Logf("%s rejoined with a wiped data dir; converged after %s", victim.ID, time.Since(started).Round(time.Millisecond))
	w.assertJoinedAsLearners(t, 1)

	if after.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s", st.ClusterID, after.ClusterID)
	}
	m := memberByName(t, after, victim.ID)
	if m.ID == old.ID {
		t.Fatalf("%s came back as its old member %s on an empty data dir, want a new member", victim.ID, old.ID)
	}
	if _, ok := memberIDs(after)[old.ID]; ok {
		t.Fatalf("old member %s still listed: %s", old.ID, fleet.Summarize(after))
	}
	checkKeysOnEach(t, ctx, g, "before", 100)
}

// TestWholeGroupRestart stops every appliance with SIGTERM (they must exit 0
// and stop their etcd) and starts them all again: the same cluster and
// members come back with their data, no new cluster.
func TestWholeGroupRestart(t *testing.T) {
	g := newGroup(t)
	ctx := testContext(t, 3*time.Minute)
	insts, st := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "before", 100)

	if err := g.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, inst := range insts {
		if inst.Running() {
			t.Fatalf("%s still runs after SIGTERM", inst)
		}
		if _, err := os.Stat(filepath.Join(inst.DataDir, "etcd", "member")); err != nil {
			t.Fatalf("%s: etcd data gone after a graceful stop: %v", inst, err)
		}
	}

	started := time.Now()
	if err := g.Start(ctx, ids(insts)...); err != nil {
		t.Fatal(err)
	}
	after := waitConverged(t, ctx, g, 3)
	t.Logf("whole group restarted; converged after %s", time.Since(started).Round(time.Millisecond))
	if after.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s: a new cluster formed", st.ClusterID, after.ClusterID)
	}
	assertSameMembers(t, st, after)
	checkKeysOnEach(t, ctx, g, "before", 100)
}

// TestNoSecondClusterWhileAPeerIsUnreachable lists three instances but runs
// only two, the seeder among them: no cluster may form while the third does
// not answer. Once it runs, the three form one cluster.
func TestNoSecondClusterWhileAPeerIsUnreachable(t *testing.T) {
	g := newGroup(t)
	ctx := testContext(t, 3*time.Minute)
	insts, err := g.Add(3)
	if err != nil {
		t.Fatal(err)
	}
	// The seeder is the lowest id when nobody has data: keep it running and
	// hold back the highest.
	slices.SortFunc(insts, func(a, b *fleet.Instance) int { return strings.Compare(a.ID, b.ID) })
	up, absent := insts[:2], insts[2]
	if err := g.Start(ctx, ids(up)...); err != nil {
		t.Fatal(err)
	}

	hold := 5 * time.Second
	deadline := time.Now().Add(hold)
	polls := 0
	err = fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		for _, inst := range up {
			peer, err := g.Peer(ctx, inst.ID)
			if err != nil {
				t.Fatalf("%s does not answer /v1/peer: %v", inst, err)
			}
			if peer.EtcdRunning || peer.ClusterID != 0 || peer.MemberID != 0 || peer.HasData {
				t.Fatalf("%s created or joined a cluster while %s was unreachable: %+v", inst, absent, peer)
			}
			if pid, _ := inst.EtcdPID(); pid != 0 {
				t.Fatalf("%s runs etcd (pid %d) while %s is unreachable", inst, pid, absent)
			}
			if _, err := os.Stat(filepath.Join(inst.DataDir, "etcd", "member")); err == nil {
				t.Fatalf("%s has etcd data while %s is unreachable", inst, absent)
			}
		}
		polls++
		return time.Now().After(deadline), "holding"
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("no cluster formed for %s (%d polls) with %s unreachable", hold, polls, absent)

	started := time.Now()
	if err := g.Start(ctx, absent.ID); err != nil {
		t.Fatal(err)
	}
	st := waitConverged(t, ctx, g, 3)
	t.Logf("converged %s after the third instance started", time.Since(started).Round(time.Millisecond))
	// An instance publishes its member's cluster once its supervision has
	// looked at the running etcd, a moment after the status shows it.
	err = fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		for _, inst := range insts {
			peer, err := g.Peer(ctx, inst.ID)
			if err != nil {
				return false, err.Error()
			}
			if peer.ClusterID == 0 {
				return false, inst.ID + " publishes no cluster yet"
			}
			if peer.ClusterID != st.ClusterID {
				t.Fatalf("%s is in cluster %s, %s reports %s: more than one cluster", inst, peer.ClusterID, st.Reporter, st.ClusterID)
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	putKeys(t, ctx, g, "one", 50)
	checkKeysOnEach(t, ctx, g, "one", 50)
}

// TestStaleMemberKeptWhileQuorumAtRisk makes member C stale (its instance
// leaves the group, but its etcd still runs and is healthy) while voter B is
// down. Removing C would leave voters {A, B} with one healthy, below their
// quorum of two, so the leader A must keep C. Once B is back, C goes.
func TestStaleMemberKeptWhileQuorumAtRisk(t *testing.T) {
	g := newGroup(t)
	ctx := testContext(t, 3*time.Minute)
	_, st := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "before", 100)

	leader := leaderOf(t, st)
	var others []cluster.MemberStatus
	for _, m := range st.Members {
		if !m.Leader {
			others = append(others, m)
		}
	}
	a, b, c := g.Instance(leader.Name), g.Instance(others[0].Name), g.Instance(others[1].Name)
	staleID := others[1].ID
	t.Logf("leader A=%s, down B=%s, stale but healthy C=%s (member %s)", a, b, c, staleID)

	if err := g.Kill(b.ID); err != nil {
		t.Fatal(err)
	}
	// "stopped" takes C out of the group (absent, removable after the
	// grace) while its processes keep running, like an instance that left
	// the group's listing with etcd still up.
	if err := g.SetState(c.ID, cluster.InstanceStopped); err != nil {
		t.Fatal(err)
	}
	client, err := g.Client(ctx, a.ID, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	hold := staleGrace + 6*time.Second // the grace, then a dozen housekeeping cycles
	deadline := time.Now().Add(hold)
	leaderChanged := false
	err = fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := client.MemberList(rctx)
		if err != nil {
			t.Fatalf("listing members while C is stale and B down: %v", err)
		}
		found := false
		for _, m := range resp.Members {
			if cluster.ID(m.ID) == staleID {
				found = true
			}
		}
		if !found {
			t.Fatalf("stale member %s (C=%s) was removed while B=%s was down: voters {A, B} have 1 healthy, below their quorum of 2", staleID, c.ID, b.ID)
		}
		if st, err := g.StatusOf(rctx, a.ID); err == nil && st.Leader != 0 && st.Leader != leader.ID {
			leaderChanged = true
		}
		return time.Now().After(deadline), "holding"
	})
	if err != nil {
		t.Fatal(err)
	}
	if leaderChanged {
		t.Logf("note: leadership moved away from A=%s during the hold", a)
	}
	st2, err := g.StatusOf(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if mc := memberByName(t, st2, c.ID); mc.InGroup {
		t.Errorf("A reports C=%s in the group after its state became stopped: %s", c.ID, fleet.Summarize(st2))
	}
	putKeys(t, ctx, g, "during", 50) // A and C still have quorum

	// With B back, removing C leaves two healthy voters of two: allowed.
	if err := g.Start(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	err = fleet.Poll(testContext(t, convergeTimeout), 100*time.Millisecond, func() (bool, string) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := client.MemberList(rctx)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range resp.Members {
			if cluster.ID(m.ID) == staleID {
				return false, fmt.Sprintf("stale member %s still listed with B back", staleID)
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ctx, g, 2)
	checkKeysOnEach(t, ctx, g, "before", 100)
	checkKeysOnEach(t, ctx, g, "during", 50)
}

// TestConcurrentJoins launches two instances at once into a cluster of
// three: both join, one at a time, as learners, and five voters result.
func TestConcurrentJoins(t *testing.T) {
	g := newGroup(t)
	ctx := testContext(t, 3*time.Minute)
	_, st := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "before", 100)

	w := watchMembers(t, ctx, g)
	launched := time.Now()
	if _, err := g.LaunchN(ctx, 2); err != nil {
		t.Fatal(err)
	}
	after := waitConverged(t, ctx, g, 5)
	t.Logf("two joiners converged to 5 voters %s after the launch", time.Since(launched).Round(time.Millisecond))
	w.assertJoinedAsLearners(t, 2)
	if after.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s", st.ClusterID, after.ClusterID)
	}
	checkKeysOnEach(t, ctx, g, "before", 100)
}

// assertInstanceReady waits a little for an instance's own view to catch up
// with the cluster's (the appliance looks at its etcd every 250 ms): its
// /v1/peer must publish the member it is, and /readyz must answer 200.
func assertInstanceReady(t *testing.T, ctx context.Context, g *fleet.Group, inst *fleet.Instance, clusterID, memberID cluster.ID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := fleet.Poll(ctx, 50*time.Millisecond, func() (bool, string) {
		peer, err := g.Peer(ctx, inst.ID)
		if err != nil {
			return false, err.Error()
		}
		if !peer.EtcdRunning || peer.ClusterID != clusterID || peer.MemberID != memberID || peer.InstanceID != inst.ID {
			return false, fmt.Sprintf("%s publishes %+v, want etcd running as member %s of cluster %s", inst.ID, peer, memberID, clusterID)
		}
		if ready, err := g.Ready(ctx, inst.ID); err != nil || !ready {
			return false, fmt.Sprintf("%s: /readyz is not 200 on a healthy voter (err %v)", inst.ID, err)
		}
		return true, ""
	})
	if err != nil {
		t.Error(err)
	}
}

func ids(insts []*fleet.Instance) []string {
	out := make([]string, len(insts))
	for k, inst := range insts {
		out[k] = inst.ID
	}
	return out
}
