package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// repairDeadline bounds the repair with the leader's appliance hung: the
// housekeeper lease (15 s) expires, another appliance takes the role, removes
// the stale member, and the replacement joins and is promoted.
const repairDeadline = 60 * time.Second

// TestHousekeeperTakesOverFromAHungLeader is issue 9, item 10: the etcd
// leader's appliance hangs (SIGSTOP; its etcd keeps leading), an instance
// stops and is replaced. Another appliance must take the housekeeper
// role when the hung one's lease expires, remove the stale member and let
// the replacement join, while the leader's appliance is still hung. Thawed,
// that appliance must notice it lost the role and remove nothing.
func TestHousekeeperTakesOverFromAHungLeader(t *testing.T) {
	g := newGroup(t)
	ctx := testContext(t, 4*time.Minute)
	insts, st := startConverged(t, ctx, g, 3)
	leader := g.Instance(leaderOf(t, st).Name)
	var others []*fleet.Instance
	for _, inst := range insts {
		if inst.ID != leader.ID {
			others = append(others, inst)
		}
	}
	victim, survivor := others[0], others[1]
	// The usual case: the etcd leader's appliance campaigned first.
	waitHousekeeper(t, ctx, g, leader)

	if err := g.Freeze(leader.ID); err != nil {
		t.Fatal(err)
	}
	frozen := true
	t.Cleanup(func() {
		if frozen {
			_ = g.Thaw(leader.ID)
		}
	})
	stale := memberByName(t, st, victim.ID)
	// The victim's instance stops (it is not terminated): a joiner removes
	// only the members of terminated instances, so here the membership is
	// repaired by the housekeeper alone, after --stale-grace.
	terminated := time.Now()
	if err := g.SetState(victim.ID, cluster.InstanceStopped); err != nil {
		t.Fatal(err)
	}
	if err := g.Kill(victim.ID); err != nil {
		t.Fatal(err)
	}
	repl, err := g.Launch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{leader.ID, survivor.ID, repl.ID}
	var repaired cluster.ClusterStatus
	err = fleet.Poll(testContext(t, repairDeadline), 200*time.Millisecond, func() (bool, string) {
		st, err := g.StatusOf(ctx, survivor.ID)
		if err != nil {
			return false, err.Error()
		}
		repaired = st
		return healthyVoters(st, want)
	})
	if err != nil {
		t.Fatalf("with the leader's appliance hung, the membership was not repaired within %s: %v", repairDeadline, err)
	}
	repair := time.Since(terminated)
	t.Logf("leader %s's appliance hung: stale member %s removed and %s a healthy voter %s after the termination",
		leader.ID, stale.ID, repl.ID, repair.Round(time.Millisecond))
	if !stopped(leader.PID()) {
		t.Fatalf("the appliance of %s (pid %d) is not stopped: the repair proves nothing", leader.ID, leader.PID())
	}
	if got := memberByName(t, repaired, leader.ID); !got.Leader {
		t.Logf("etcd leadership moved off %s during the repair (not required)", leader.ID)
	}
	if !logContains(t, survivor.LogPath, 0, "stale member removed") {
		t.Errorf("%s did not log the removal of the stale member", survivor.ID)
	}

	// Thawed, the hung appliance finds its session expired and stands down.
	from := logSize(t, leader.LogPath)
	if err := g.Thaw(leader.ID); err != nil {
		t.Fatal(err)
	}
	frozen = false
	err = fleet.Poll(testContext(t, 30*time.Second), 100*time.Millisecond, func() (bool, string) {
		return logContains(t, leader.LogPath, from, "housekeeper role lost"),
			fmt.Sprintf("%s did not log that it lost the housekeeper role after the thaw", leader.ID)
	})
	if err != nil {
		t.Fatal(err)
	}
	after := waitConverged(t, ctx, g, 3)
	assertSameMembers(t, repaired, after)
	if logContains(t, leader.LogPath, from, "stale member removed") {
		t.Errorf("%s removed a member after the thaw:\n%s", leader.ID, applianceLogTailsOf([]*fleet.Instance{leader}, 40))
	}
}

// waitHousekeeper waits until inst's appliance reports the housekeeper role
// on /metrics.
func waitHousekeeper(t *testing.T, ctx context.Context, g *fleet.Group, inst *fleet.Instance) {
	t.Helper()
	err := fleet.Poll(testContext(t, 20*time.Second), 100*time.Millisecond, func() (bool, string) {
		_, body, err := g.Get(ctx, inst.ID, "/metrics")
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(string(body), "\netcd_appliance_housekeeper 1\n"),
			fmt.Sprintf("%s does not report etcd_appliance_housekeeper 1", inst.ID)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// healthyVoters reports whether st lists exactly the members named want,
// each a started, healthy voter.
func healthyVoters(st cluster.ClusterStatus, want []string) (bool, string) {
	if st.Error != "" {
		return false, st.Error
	}
	var names []string
	for _, m := range st.Members {
		if m.Role != cluster.RoleVoter || !m.Healthy {
			return false, fmt.Sprintf("member %s (%s) is not a healthy voter: %s", m.ID, m.Name, fleet.Summarize(st))
		}
		names = append(names, m.Name)
	}
	slices.Sort(names)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(names, want) {
		return false, fmt.Sprintf("members %v, want %v: %s", names, want, fleet.Summarize(st))
	}
	return true, ""
}

// stopped reports whether the process pid is stopped by a signal.
func stopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'T'
}

// logSize is the size of the log at path.
func logSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// logContains reports whether the appliance's lines of the log at path,
// from byte offset from on, mention s.
func logContains(t *testing.T, path string, from int64, s string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if from > int64(len(b)) {
		return false
	}
	for _, l := range strings.Split(string(b[from:]), "\n") {
		if !etcdsOwnLine(l) && strings.Contains(l, s) {
			return true
		}
	}
	return false
}
