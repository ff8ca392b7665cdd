package cluster_test

import (
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/cluster/clustertest"
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// TestEveryRemovalPathRefusesTheUnsafeTable runs the one table of unsafe
// removals against each pure removal path: the rule itself, housekeeping's
// stale removal, its learner timeout and leaving. (The join's removal of an
// old member is an apply step, tested against the same table in
// internal/appliance.)
func TestEveryRemovalPathRefusesTheUnsafeTable(t *testing.T) {
	for _, tt := range clustertest.UnsafeRemovals() {
		t.Run(tt.Name, func(t *testing.T) {
			target := member(t, tt.Members, tt.Target)
			t.Run("CheckRemoval", func(t *testing.T) {
				h := cluster.CheckRemoval(tt.Members, tt.Healthy, tt.Target)
				if h == nil || h.Rule != tt.Rule || h.Member != tt.Target {
					t.Fatalf("CheckRemoval = %+v, want the %s rule on %s", h, tt.Rule, tt.Target)
				}
			})
			t.Run("stale removal", func(t *testing.T) {
				in := keeperInputs(tt)
				in.Group = append(in.Group, cluster.Instance{ID: target.Name, State: cluster.InstanceTerminated})
				assertHeld(t, cluster.DecideHousekeeping(in), tt)
			})
			t.Run("learner timeout", func(t *testing.T) {
				// A voter added by hand that never started has no name; the
				// learner timeout makes it a candidate.
				in := keeperInputs(tt)
				for i, m := range in.Members {
					if m.ID == tt.Target {
						in.Members[i].Name, in.Members[i].ClientURLs = "", nil
					}
				}
				in.FirstSeen = map[cluster.ID]time.Time{tt.Target: now.Add(-time.Hour)}
				healthy := map[cluster.ID]bool{}
				for id, ok := range tt.Healthy {
					healthy[id] = ok && id != tt.Target
				}
				in.Healthy = healthy
				assertHeld(t, cluster.DecideHousekeeping(in), tt)
			})
			t.Run("leave", func(t *testing.T) {
				plan := cluster.DecideLeave(tt.Members, tt.Healthy, tt.Target, target.Name)
				if plan.Member != tt.Target || plan.Refused == nil || plan.Refused.Rule != tt.Rule {
					t.Fatalf("DecideLeave = %+v, want member %s refused by the %s rule", plan, tt.Target, tt.Rule)
				}
				if plan.TransferTo != 0 {
					t.Errorf("a refused leave moves leadership to %s", plan.TransferTo)
				}
			})
		})
	}
}

// keeperInputs is housekeeping by an instance that is no member, with
// every member's instance but the target's running.
func keeperInputs(tt clustertest.UnsafeRemoval) cluster.HousekeepingInputs {
	group := []cluster.Instance{{ID: "i-keeper", State: cluster.InstanceRunning}}
	for _, m := range tt.Members {
		if m.ID != tt.Target {
			group = append(group, cluster.Instance{ID: m.Name, State: cluster.InstanceRunning})
		}
	}
	return cluster.HousekeepingInputs{Now: now, Self: "i-keeper", GroupKnown: true, Group: group,
		Members: append([]cluster.Member(nil), tt.Members...), Healthy: tt.Healthy,
		StaleGrace: 30 * time.Second, LearnerTimeout: 2 * time.Minute}
}

func assertHeld(t *testing.T, plan cluster.HousekeepingPlan, tt clustertest.UnsafeRemoval) {
	t.Helper()
	if plan.Remove != nil {
		t.Fatalf("removes %s (%s), want it held by the %s rule", plan.Remove.Member.ID, plan.Remove.Reason, tt.Rule)
	}
	for _, h := range plan.Held {
		if h.Rule == tt.Rule && h.Member == tt.Target {
			return
		}
	}
	t.Fatalf("held %+v, want the %s rule on %s", plan.Held, tt.Rule, tt.Target)
}

func member(t *testing.T, ms []cluster.Member, id cluster.ID) cluster.Member {
	t.Helper()
	for _, m := range ms {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("no member %s in the fixture", id)
	return cluster.Member{}
}

func TestDecideLeave(t *testing.T) {
	a, b, c := clustertest.Member(0xa, false), clustertest.Member(0xb, false), clustertest.Member(0xc, false)
	e, l := clustertest.Member(0xe, false), clustertest.Member(0xd, true)
	all := map[cluster.ID]bool{0xa: true, 0xb: true, 0xc: true, 0xd: true}
	tests := []struct {
		name    string
		members []cluster.Member
		healthy map[cluster.ID]bool
		leader  cluster.ID
		self    string
		want    cluster.LeavePlan
	}{
		{"not a member", []cluster.Member{b, c}, all, 0xb, "i-a", cluster.LeavePlan{}},
		{"a follower leaves", []cluster.Member{a, b, c}, all, 0xb, "i-a", cluster.LeavePlan{Member: 0xa}},
		{"the leader hands over first", []cluster.Member{a, b, c}, all, 0xa, "i-a", cluster.LeavePlan{Member: 0xa, TransferTo: 0xb}},
		{"never to an unhealthy voter or a learner", []cluster.Member{a, l, b, c, e}, map[cluster.ID]bool{0xa: true, 0xd: true, 0xc: true, 0xe: true},
			0xa, "i-a", cluster.LeavePlan{Member: 0xa, TransferTo: 0xc}},
		{"a learner always may", []cluster.Member{a, l}, map[cluster.ID]bool{0xd: true}, 0xa, "i-d", cluster.LeavePlan{Member: 0xd}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cluster.DecideLeave(tt.members, tt.healthy, tt.leader, tt.self)
			if got.Member != tt.want.Member || got.TransferTo != tt.want.TransferTo || (got.Refused != nil) != (tt.want.Refused != nil) {
				t.Errorf("DecideLeave = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestHoldsReportEachSituationOnce(t *testing.T) {
	var holds cluster.Holds
	h1 := cluster.Hold{Rule: cluster.RuleQuorum, Member: 0xb, Why: "absent for 31s"}
	if fresh := holds.Update(now, []cluster.Hold{h1}); len(fresh) != 1 {
		t.Fatalf("first report: fresh %v, want the hold", fresh)
	}
	h1.Why = "absent for 36s"
	if fresh := holds.Update(now.Add(5*time.Second), []cluster.Hold{h1}); len(fresh) != 0 {
		t.Errorf("same rule and member with another text: fresh %v, want none", fresh)
	}
	if holds[h1.Key()] != now {
		t.Errorf("since = %v, want the first report %v", holds[h1.Key()], now)
	}
	holds.Update(now.Add(10*time.Second), nil)
	if fresh := holds.Update(now.Add(15*time.Second), []cluster.Hold{h1}); len(fresh) != 1 {
		t.Errorf("a hold that went away and came back: fresh %v, want it reported again", fresh)
	}
}
