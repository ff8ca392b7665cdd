package cluster

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Housekeeping fixtures: the leader is i-a (member 0xa); member 0xN is named
// i-N's letter, e.g. 0xb is i-b. Times are fixed; the clock is never read.

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const (
	staleGrace     = 30 * time.Second
	learnerTimeout = 2 * time.Minute
)

func memberName(id ID) string { return "i-" + id.String() }

func voter(id ID) Member {
	return Member{ID: id, Name: memberName(id), PeerURLs: []string{"http://" + memberName(id) + ":2380"}}
}

func learner(id ID) Member {
	m := voter(id)
	m.IsLearner = true
	return m
}

func unstarted(id ID) Member {
	return Member{ID: id, PeerURLs: []string{"http://" + memberName(id) + ":2380"}, IsLearner: true}
}

func voters(ids ...ID) []Member {
	var out []Member
	for _, id := range ids {
		out = append(out, voter(id))
	}
	return out
}

// running lists the instances of the members ids as running.
func running(ids ...ID) []Instance {
	var out []Instance
	for _, id := range ids {
		out = append(out, Instance{ID: memberName(id), State: InstanceRunning})
	}
	return out
}

func withState(id ID, s InstanceState) Instance { return Instance{ID: memberName(id), State: s} }

func healthy(ids ...ID) map[ID]bool {
	out := map[ID]bool{}
	for _, id := range ids {
		out[id] = true
	}
	return out
}

func join[T any](parts ...[]T) []T {
	var out []T
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// hk is the housekeeping input of leader i-a at t0 with the default graces.
func hk(group []Instance, members []Member, h map[ID]bool) HousekeepingInputs {
	return HousekeepingInputs{
		Now: t0, Self: memberName(0xa), GroupKnown: true, Group: group, Members: members, Healthy: h,
		StaleGrace: staleGrace, LearnerTimeout: learnerTimeout,
	}
}

func TestDecideHousekeeping(t *testing.T) {
	tests := []struct {
		name string
		in   HousekeepingInputs
		// wantRemove is the member removed, 0 for none.
		wantRemove ID
		// removeReasonHas is a substring of the removal's reason.
		removeReasonHas string
		wantPromote     []ID
		// wantHeld are substrings, one per Held entry, in order.
		wantHeld []string
	}{
		{
			name: "every member's instance runs: nothing to do",
			in:   hk(running(0xa, 0xb, 0xc), voters(0xa, 0xb, 0xc), healthy(0xa, 0xb, 0xc)),
		},

		// Only if the group listing succeeded and contains this instance.
		{
			name: "group listing failed: no removal even of a terminated member",
			in: func() HousekeepingInputs {
				in := hk([]Instance{withState(0xa, InstanceRunning), withState(0xb, InstanceTerminated)},
					voters(0xa, 0xb, 0xc), healthy(0xa, 0xc))
				in.GroupKnown = false
				return in
			}(),
			wantHeld: []string{"group listing failed"},
		},
		{
			name: "group listing failed: no removal of a timed-out unstarted member",
			in: func() HousekeepingInputs {
				in := hk(nil, append(voters(0xa, 0xb, 0xc), unstarted(0xd)), healthy(0xa, 0xb, 0xc))
				in.GroupKnown = false
				in.FirstSeen = map[ID]time.Time{0xd: t0.Add(-time.Hour)}
				return in
			}(),
			wantHeld: []string{"group listing failed"},
		},
		{
			name: "leader not in the group listing: no removal",
			in: hk([]Instance{withState(0xb, InstanceTerminated), withState(0xc, InstanceRunning)},
				voters(0xa, 0xb, 0xc), healthy(0xa, 0xc)),
			wantHeld: []string{"does not contain this instance i-a"},
		},
		{
			name: "leader's own instance is stopping: no removal",
			in: hk([]Instance{withState(0xa, InstanceStopping), withState(0xb, InstanceTerminated), withState(0xc, InstanceRunning)},
				voters(0xa, 0xb, 0xc), healthy(0xa, 0xc)),
			wantHeld: []string{"does not contain this instance"},
		},
		{
			name:     "group listing known but empty: no removal",
			in:       hk(nil, voters(0xa, 0xb, 0xc), healthy(0xa, 0xb, 0xc)),
			wantHeld: []string{"does not contain this instance"},
		},

		// Confirmed terminated: at once; absent: after the grace.
		{
			name: "confirmed terminated member is removed at once",
			in: hk(join(running(0xa, 0xc), []Instance{withState(0xb, InstanceTerminated)}),
				voters(0xa, 0xb, 0xc), healthy(0xa, 0xc)),
			wantRemove: 0xb, removeReasonHas: "terminated",
		},
		{
			name:       "absent member seen for the first time is kept",
			in:         hk(running(0xa, 0xc), voters(0xa, 0xb, 0xc), healthy(0xa, 0xc)),
			wantRemove: 0,
		},
		{
			name: "absent member inside the grace is kept",
			in: func() HousekeepingInputs {
				in := hk(running(0xa, 0xc), voters(0xa, 0xb, 0xc), healthy(0xa, 0xc))
				in.AbsentSince = map[ID]time.Time{0xb: t0.Add(-staleGrace + time.Second)}
				return in
			}(),
		},
		{
			name: "absent member at the end of the grace is removed",
			in: func() HousekeepingInputs {
				in := hk(running(0xa, 0xc), voters(0xa, 0xb, 0xc), healthy(0xa, 0xc))
				in.AbsentSince = map[ID]time.Time{0xb: t0.Add(-staleGrace)}
				return in
			}(),
			wantRemove: 0xb, removeReasonHas: "absent",
		},
		{
			name: "stopped instance is absent, not terminated: kept inside the grace",
			in: hk(join(running(0xa, 0xc), []Instance{withState(0xb, InstanceStopped)}),
				voters(0xa, 0xb, 0xc), healthy(0xa, 0xc)),
		},
		{
			name: "pending instance is in the group: its member is not stale",
			in: func() HousekeepingInputs {
				in := hk(join(running(0xa, 0xc), []Instance{withState(0xb, InstancePending)}),
					voters(0xa, 0xb, 0xc), healthy(0xa, 0xc))
				in.AbsentSince = map[ID]time.Time{0xb: t0.Add(-time.Hour)}
				return in
			}(),
		},

		// At most one removal per cycle, and the order.
		{
			name: "two stale voters: one removal, the lowest id",
			in: hk(join(running(0xa, 0xd, 0xe), []Instance{withState(0xc, InstanceTerminated), withState(0xb, InstanceTerminated)}),
				voters(0xa, 0xb, 0xc, 0xd, 0xe), healthy(0xa, 0xd, 0xe)),
			wantRemove: 0xb,
		},
		{
			name: "confirmed terminated before merely absent",
			in: func() HousekeepingInputs {
				in := hk(join(running(0xa, 0xd, 0xe), []Instance{withState(0xc, InstanceTerminated)}),
					voters(0xa, 0xb, 0xc, 0xd, 0xe), healthy(0xa, 0xd, 0xe))
				in.AbsentSince = map[ID]time.Time{0xb: t0.Add(-time.Hour)}
				return in
			}(),
			wantRemove: 0xc,
		},
		{
			name: "stale learner before a stale voter",
			in: func() HousekeepingInputs {
				in := hk(join(running(0xa, 0xd, 0xe), []Instance{withState(0xb, InstanceTerminated)}),
					join(voters(0xa, 0xb, 0xd, 0xe), []Member{learner(0xc)}), healthy(0xa, 0xd, 0xe))
				in.AbsentSince = map[ID]time.Time{0xc: t0.Add(-time.Hour)}
				return in
			}(),
			wantRemove: 0xc,
		},
		{
			name: "unstarted member past the learner timeout before a stale learner",
			in: func() HousekeepingInputs {
				in := hk(join(running(0xa, 0xb, 0xc), []Instance{withState(0xd, InstanceTerminated)}),
					join(voters(0xa, 0xb, 0xc), []Member{learner(0xd), unstarted(0xf)}), healthy(0xa, 0xb, 0xc))
				in.FirstSeen = map[ID]time.Time{0xf: t0.Add(-learnerTimeout)}
				return in
			}(),
			wantRemove: 0xf, removeReasonHas: "never started",
		},

		// Never below the quorum of the remaining voters.
		{
			name: "3 voters: stale A down, B healthy, C unhealthy: held",
			in: hk(join(running(0xa, 0xc), []Instance{withState(0xb, InstanceTerminated)}),
				voters(0xa, 0xb, 0xc), healthy(0xa)),
			wantHeld: []string{"only 1 of the 2 remaining voters are healthy, below their quorum of 2"},
		},
		{
			name: "3 voters: stale one down, two healthy: removed",
			in: hk(join(running(0xa, 0xc), []Instance{withState(0xb, InstanceTerminated)}),
				voters(0xa, 0xb, 0xc), healthy(0xa, 0xc)),
			wantRemove: 0xb,
		},
		{
			name: "2 voters: stale one down, leader healthy: removed",
			in: hk(join(running(0xa), []Instance{withState(0xb, InstanceTerminated)}),
				voters(0xa, 0xb), healthy(0xa)),
			wantRemove: 0xb,
		},
		{
			name: "5 voters: one terminated, two unhealthy: held (2 of 4 < 3)",
			in: hk(join(running(0xa, 0xc, 0xd, 0xe), []Instance{withState(0xb, InstanceTerminated)}),
				voters(0xa, 0xb, 0xc, 0xd, 0xe), healthy(0xa, 0xe)),
			wantHeld: []string{"only 2 of the 4 remaining voters are healthy, below their quorum of 3"},
		},
		{
			name: "5 voters: one terminated, one unhealthy: removed (3 of 4)",
			in: hk(join(running(0xa, 0xc, 0xd, 0xe), []Instance{withState(0xb, InstanceTerminated)}),
				voters(0xa, 0xb, 0xc, 0xd, 0xe), healthy(0xa, 0xd, 0xe)),
			wantRemove: 0xb,
		},
		{
			// Its removal would keep a quorum (3 of 4), but would take a
			// serving voter away while another is down: the drain budget
			// holds it until the cluster is back at full strength.
			name: "5 voters: stale member still healthy, one other unhealthy: held by the drain budget",
			in: func() HousekeepingInputs {
				in := hk(running(0xa, 0xc, 0xd, 0xe), voters(0xa, 0xb, 0xc, 0xd, 0xe), healthy(0xa, 0xb, 0xd, 0xe))
				in.AbsentSince = map[ID]time.Time{0xb: t0.Add(-time.Hour)}
				return in
			}(),
			wantHeld: []string{"voter c (i-c) is not healthy"},
		},
		{
			name: "5 voters: stale member still healthy, all others healthy: removed",
			in: func() HousekeepingInputs {
				in := hk(running(0xa, 0xc, 0xd, 0xe), voters(0xa, 0xb, 0xc, 0xd, 0xe), healthy(0xa, 0xb, 0xc, 0xd, 0xe))
				in.AbsentSince = map[ID]time.Time{0xb: t0.Add(-time.Hour)}
				return in
			}(),
			wantRemove: 0xb,
		},
		{
			name: "3 voters: two terminating, both serving: the lower id goes first",
			in: hk(join(running(0xa), []Instance{withState(0xc, InstanceTerminated), withState(0xb, InstanceTerminated)}),
				voters(0xa, 0xb, 0xc), healthy(0xa, 0xb, 0xc)),
			wantRemove: 0xb,
		},
		{
			name: "3 voters: one terminating and serving, its replacement not a member yet: held",
			in: hk(join(running(0xa, 0xc, 0xd), []Instance{withState(0xb, InstanceTerminated)}),
				voters(0xa, 0xb, 0xc), healthy(0xa, 0xb, 0xc)),
			wantHeld: []string{"instance i-d of the group is not a member yet"},
		},
		{
			name: "3 voters: one terminating and serving, its replacement a learner: held until promoted",
			in: hk(join(running(0xa, 0xc, 0xd), []Instance{withState(0xb, InstanceTerminated)}),
				append(voters(0xa, 0xb, 0xc), learner(0xd)), healthy(0xa, 0xb, 0xc, 0xd)),
			wantHeld:    []string{"member d (i-d) is a learner, not promoted yet"},
			wantPromote: []ID{0xd},
		},
		{
			name: "3 voters: one terminating and serving, its replacement a voter: removed (4 to 3)",
			in: hk(join(running(0xa, 0xc, 0xd), []Instance{withState(0xb, InstanceTerminated)}),
				voters(0xa, 0xb, 0xc, 0xd), healthy(0xa, 0xb, 0xc, 0xd)),
			wantRemove: 0xb,
		},
		{
			name: "5 voters: stale member still healthy, two others unhealthy: held, its removal would lose quorum",
			in: func() HousekeepingInputs {
				in := hk(running(0xa, 0xc, 0xd, 0xe), voters(0xa, 0xb, 0xc, 0xd, 0xe), healthy(0xa, 0xb, 0xe))
				in.AbsentSince = map[ID]time.Time{0xb: t0.Add(-time.Hour)}
				return in
			}(),
			wantHeld: []string{"only 2 of the 4 remaining voters are healthy"},
		},
		{
			name: "5 voters: two terminated, three healthy: one removal",
			in: hk(join(running(0xa, 0xd, 0xe), []Instance{withState(0xb, InstanceTerminated), withState(0xc, InstanceTerminated)}),
				voters(0xa, 0xb, 0xc, 0xd, 0xe), healthy(0xa, 0xd, 0xe)),
			wantRemove: 0xb,
		},
		{
			name: "5 voters: two terminated, one more unhealthy: both held",
			in: hk(join(running(0xa, 0xd, 0xe), []Instance{withState(0xb, InstanceTerminated), withState(0xc, InstanceTerminated)}),
				voters(0xa, 0xb, 0xc, 0xd, 0xe), healthy(0xa, 0xe)),
			wantHeld: []string{"member b (i-b)", "member c (i-c)"},
		},
		{
			name: "unstarted voter past the timeout is held when its removal leaves no quorum",
			in: func() HousekeepingInputs {
				u := unstarted(0xf)
				u.IsLearner = false
				in := hk(running(0xa, 0xb), append(voters(0xa, 0xb), u), healthy(0xa))
				in.FirstSeen = map[ID]time.Time{0xf: t0.Add(-time.Hour)}
				return in
			}(),
			wantHeld: []string{"never started"},
		},
		{
			name: "stale learner is removed whatever the voters' health",
			in: hk(join(running(0xa, 0xb, 0xc), []Instance{withState(0xd, InstanceTerminated)}),
				append(voters(0xa, 0xb, 0xc), learner(0xd)), healthy(0xa)),
			wantRemove: 0xd,
		},
		{
			name: "never the last voter",
			// Inconsistent on purpose: the leader's own member is missing from
			// the list, so the stale member is the only voter.
			in: hk(join(running(0xa), []Instance{withState(0xb, InstanceTerminated)}),
				voters(0xb), healthy(0xa)),
			wantHeld: []string{"last voter"},
		},

		// Protected members.
		{
			name: "protected member is held",
			in: func() HousekeepingInputs {
				in := hk(join(running(0xa, 0xc), []Instance{withState(0xb, InstanceTerminated)}),
					voters(0xa, 0xb, 0xc), healthy(0xa, 0xc))
				in.Protected = map[ID]bool{0xb: true}
				return in
			}(),
			wantHeld: []string{"upgrade lock"},
		},
		{
			name: "protected member is held and the next stale member is removed",
			in: func() HousekeepingInputs {
				in := hk(join(running(0xa, 0xd, 0xe), []Instance{withState(0xb, InstanceTerminated), withState(0xc, InstanceTerminated)}),
					voters(0xa, 0xb, 0xc, 0xd, 0xe), healthy(0xa, 0xd, 0xe))
				in.Protected = map[ID]bool{0xb: true}
				return in
			}(),
			wantRemove: 0xc,
			wantHeld:   []string{"member b (i-b) is stale (instance i-b is terminated) but it holds the upgrade lock"},
		},

		// Learner timeout for members that never started.
		{
			name: "unstarted member seen for the first time is kept",
			in:   hk(running(0xa, 0xb, 0xc), append(voters(0xa, 0xb, 0xc), unstarted(0xd)), healthy(0xa, 0xb, 0xc)),
		},
		{
			name: "unstarted member inside the learner timeout is kept",
			in: func() HousekeepingInputs {
				in := hk(running(0xa, 0xb, 0xc), append(voters(0xa, 0xb, 0xc), unstarted(0xd)), healthy(0xa, 0xb, 0xc))
				in.FirstSeen = map[ID]time.Time{0xd: t0.Add(-learnerTimeout + time.Second)}
				return in
			}(),
		},
		{
			name: "unstarted member at the learner timeout is removed",
			in: func() HousekeepingInputs {
				in := hk(running(0xa, 0xb, 0xc), append(voters(0xa, 0xb, 0xc), unstarted(0xd)), healthy(0xa, 0xb, 0xc))
				in.FirstSeen = map[ID]time.Time{0xd: t0.Add(-learnerTimeout)}
				return in
			}(),
			wantRemove: 0xd, removeReasonHas: "learner timeout",
		},

		// Promotion.
		{
			name: "healthy started learners are promoted; unhealthy and unstarted ones are not",
			in: hk(running(0xa, 0xb, 0xc, 0xd, 0xe),
				[]Member{voter(0xa), learner(0xb), learner(0xc), unstarted(0xd), learner(0xe)},
				healthy(0xa, 0xb, 0xd, 0xe)),
			wantPromote: []ID{0xb, 0xe},
		},
		{
			// The regression: promoting d and then removing it as a learner
			// would leave {a, b} with b down, below quorum.
			name: "healthy learner whose instance is terminated is removed, not promoted",
			in: hk(join(running(0xa, 0xb), []Instance{withState(0xd, InstanceTerminated)}),
				append(voters(0xa, 0xb), learner(0xd)), healthy(0xa, 0xd)),
			wantRemove: 0xd, removeReasonHas: "terminated",
			wantPromote: nil,
		},
		{
			name:        "healthy learner absent from the group listing is not promoted",
			in:          hk(running(0xa, 0xb, 0xc), append(voters(0xa, 0xb, 0xc), learner(0xd)), healthy(0xa, 0xb, 0xc, 0xd)),
			wantPromote: nil,
		},
		{
			name: "healthy learner whose instance is stopping is not promoted",
			in: hk(join(running(0xa, 0xb, 0xc), []Instance{withState(0xd, InstanceStopping)}),
				append(voters(0xa, 0xb, 0xc), learner(0xd)), healthy(0xa, 0xb, 0xc, 0xd)),
			wantPromote: nil,
		},
		{
			name: "healthy learner of a pending instance is promoted",
			in: hk(join(running(0xa, 0xb, 0xc), []Instance{withState(0xd, InstancePending)}),
				append(voters(0xa, 0xb, 0xc), learner(0xd)), healthy(0xa, 0xb, 0xc, 0xd)),
			wantPromote: []ID{0xd},
		},
		{
			name:        "voters are never in the promotion list",
			in:          hk(running(0xa, 0xb, 0xc), voters(0xa, 0xb, 0xc), healthy(0xa, 0xb, 0xc)),
			wantPromote: nil,
		},
		{
			name: "learners are promoted while the group listing fails",
			in: func() HousekeepingInputs {
				in := hk(nil, []Member{voter(0xa), learner(0xb)}, healthy(0xa, 0xb))
				in.GroupKnown = false
				return in
			}(),
			wantPromote: []ID{0xb},
			wantHeld:    []string{"group listing failed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DecideHousekeeping(tt.in)
			switch {
			case tt.wantRemove == 0 && got.Remove != nil:
				t.Errorf("removes %s (%s), want no removal", got.Remove.Member.ID, got.Remove.Reason)
			case tt.wantRemove != 0 && got.Remove == nil:
				t.Errorf("no removal (held %q), want %s removed", got.Held, tt.wantRemove)
			case tt.wantRemove != 0 && got.Remove.Member.ID != tt.wantRemove:
				t.Errorf("removes %s (%s), want %s", got.Remove.Member.ID, got.Remove.Reason, tt.wantRemove)
			case got.Remove != nil:
				if got.Remove.Reason == "" {
					t.Errorf("removal of %s has no reason", got.Remove.Member.ID)
				}
				if !strings.Contains(got.Remove.Reason, tt.removeReasonHas) {
					t.Errorf("removal reason %q does not mention %q", got.Remove.Reason, tt.removeReasonHas)
				}
			}
			if !reflect.DeepEqual(got.Promote, tt.wantPromote) {
				t.Errorf("Promote = %v, want %v", got.Promote, tt.wantPromote)
			}
			if len(got.Held) != len(tt.wantHeld) {
				t.Fatalf("Held = %q, want %d entries like %q", got.Held, len(tt.wantHeld), tt.wantHeld)
			}
			for i, want := range tt.wantHeld {
				if !strings.Contains(got.Held[i].String(), want) {
					t.Errorf("Held[%d] = %q, want it to mention %q", i, got.Held[i], want)
				}
			}
		})
	}
}

// cycle runs housekeeping at now with the memory of the previous plan.
func cycle(in HousekeepingInputs, now time.Time, prev HousekeepingPlan) HousekeepingPlan {
	in.Now = now
	in.FirstSeen, in.AbsentSince = prev.FirstSeen, prev.AbsentSince
	return DecideHousekeeping(in)
}

func TestHousekeepingStaleGraceAcrossCycles(t *testing.T) {
	in := hk(running(0xa, 0xc), voters(0xa, 0xb, 0xc), healthy(0xa, 0xc))
	var plan HousekeepingPlan
	for _, step := range []struct {
		after      time.Duration
		wantRemove bool
	}{{0, false}, {5 * time.Second, false}, {staleGrace - time.Second, false}, {staleGrace, true}} {
		plan = cycle(in, t0.Add(step.after), plan)
		if got := plan.Remove != nil; got != step.wantRemove {
			t.Fatalf("at +%s: removal %v, want %v (plan %+v)", step.after, got, step.wantRemove, plan)
		}
		if since := plan.AbsentSince[0xb]; !since.Equal(t0) {
			t.Fatalf("at +%s: b absent since %s, want %s (the first cycle that missed it)", step.after, since, t0)
		}
		if _, ok := plan.AbsentSince[0xa]; ok {
			t.Fatalf("at +%s: the leader has an absence clock", step.after)
		}
	}
	if plan.Remove.Member.ID != 0xb {
		t.Errorf("removed %s, want b", plan.Remove.Member.ID)
	}
}

func TestHousekeepingAbsenceClockClearedOnReturn(t *testing.T) {
	absent := hk(running(0xa, 0xc), voters(0xa, 0xb, 0xc), healthy(0xa, 0xc))
	back := hk(running(0xa, 0xb, 0xc), voters(0xa, 0xb, 0xc), healthy(0xa, 0xb, 0xc))

	plan := cycle(absent, t0, HousekeepingPlan{})
	plan = cycle(absent, t0.Add(20*time.Second), plan)
	plan = cycle(back, t0.Add(25*time.Second), plan)
	if _, ok := plan.AbsentSince[0xb]; ok {
		t.Fatalf("b returned to the group but its absence clock %s is kept", plan.AbsentSince[0xb])
	}
	// Gone again: the grace starts over, it does not add up with the earlier absence.
	plan = cycle(absent, t0.Add(40*time.Second), plan)
	if plan.Remove != nil || !plan.AbsentSince[0xb].Equal(t0.Add(40*time.Second)) {
		t.Fatalf("b gone again at +40s: remove %v, absent since %s; want none, since +40s", plan.Remove, plan.AbsentSince[0xb])
	}
	plan = cycle(absent, t0.Add(40*time.Second+staleGrace-time.Second), plan)
	if plan.Remove != nil {
		t.Fatalf("b removed %s after it left again, before the grace %s", staleGrace-time.Second, staleGrace)
	}
	plan = cycle(absent, t0.Add(40*time.Second+staleGrace), plan)
	if plan.Remove == nil || plan.Remove.Member.ID != 0xb {
		t.Fatalf("b not removed a full grace after it left again: %+v", plan)
	}
}

func TestHousekeepingGroupUnknownPreservesClocks(t *testing.T) {
	absent := hk(running(0xa, 0xd, 0xe), voters(0xa, 0xb, 0xc, 0xd, 0xe), healthy(0xa, 0xd, 0xe))
	unknown := absent
	unknown.GroupKnown, unknown.Group = false, nil

	plan := cycle(absent, t0, HousekeepingPlan{})
	if !plan.AbsentSince[0xb].Equal(t0) || !plan.AbsentSince[0xc].Equal(t0) {
		t.Fatalf("absence clocks %v, want b and c since t0", plan.AbsentSince)
	}
	plan = cycle(unknown, t0.Add(time.Hour), plan)
	if plan.Remove != nil {
		t.Fatalf("removal on an unknown group: %+v", plan.Remove)
	}
	if !plan.AbsentSince[0xb].Equal(t0) || !plan.AbsentSince[0xc].Equal(t0) {
		t.Fatalf("unknown group changed the absence clocks: %v", plan.AbsentSince)
	}

	// A member that left the member list meanwhile loses its clock.
	unknown.Members = voters(0xa, 0xb, 0xd, 0xe)
	plan = cycle(unknown, t0.Add(time.Hour+time.Second), plan)
	if _, ok := plan.AbsentSince[0xc]; ok {
		t.Errorf("c is no member any more but keeps its absence clock")
	}
	if _, ok := plan.FirstSeen[0xc]; ok {
		t.Errorf("c is no member any more but keeps its first-seen time")
	}

	// Back to a known group: b was absent all along and is due now.
	absent.Members = unknown.Members
	plan = cycle(absent, t0.Add(time.Hour+2*time.Second), plan)
	if plan.Remove == nil || plan.Remove.Member.ID != 0xb {
		t.Fatalf("after the group is known again, want b removed, got %+v", plan)
	}
}

func TestHousekeepingLearnerTimeoutAcrossCycles(t *testing.T) {
	in := hk(running(0xa, 0xb, 0xc), append(voters(0xa, 0xb, 0xc), unstarted(0xd)), healthy(0xa, 0xb, 0xc))
	plan := cycle(in, t0, HousekeepingPlan{})
	if !plan.FirstSeen[0xd].Equal(t0) {
		t.Fatalf("first seen %s, want %s", plan.FirstSeen[0xd], t0)
	}
	plan = cycle(in, t0.Add(learnerTimeout-time.Second), plan)
	if plan.Remove != nil {
		t.Fatalf("unstarted member removed before the learner timeout: %+v", plan.Remove)
	}
	if !plan.FirstSeen[0xd].Equal(t0) {
		t.Fatalf("first seen moved to %s", plan.FirstSeen[0xd])
	}
	plan = cycle(in, t0.Add(learnerTimeout), plan)
	if plan.Remove == nil || plan.Remove.Member.ID != 0xd {
		t.Fatalf("unstarted member not removed at the learner timeout: %+v", plan)
	}

	// A member that started in time is never a learner-timeout candidate.
	started := in
	started.Members = append(voters(0xa, 0xb, 0xc), learner(0xd))
	started.Group = running(0xa, 0xb, 0xc, 0xd)
	plan = cycle(started, t0.Add(time.Hour), plan)
	if plan.Remove != nil {
		t.Fatalf("started learner removed: %+v", plan.Remove)
	}
}

// TestHousekeepingRemovesOnePerCycle applies each cycle's removal and checks
// the stale members go one by one.
func TestHousekeepingRemovesOnePerCycle(t *testing.T) {
	in := hk(join(running(0xa, 0xd, 0xe), []Instance{withState(0xb, InstanceTerminated), withState(0xc, InstanceTerminated)}),
		voters(0xa, 0xb, 0xc, 0xd, 0xe), healthy(0xa, 0xd, 0xe))
	var plan HousekeepingPlan
	var removed []ID
	for i := 0; i < 4; i++ {
		plan = cycle(in, t0.Add(time.Duration(i)*5*time.Second), plan)
		if plan.Remove == nil {
			continue
		}
		removed = append(removed, plan.Remove.Member.ID)
		var rest []Member
		for _, m := range in.Members {
			if m.ID != plan.Remove.Member.ID {
				rest = append(rest, m)
			}
		}
		in.Members = rest
	}
	if want := []ID{0xb, 0xc}; !reflect.DeepEqual(removed, want) {
		t.Errorf("removed %v over four cycles, want %v", removed, want)
	}
}

// TestHousekeepingSafetyInvariants tries every mix of up to five voters and a
// learner in every instance state and health, and checks the plan against the
// rules of §4.4 computed independently.
func TestHousekeepingSafetyInvariants(t *testing.T) {
	type fate struct {
		state   InstanceState // "" means not listed
		absent  time.Duration // how long the absence clock has run
		healthy bool
	}
	var fates []fate
	for _, h := range []bool{true, false} {
		fates = append(fates,
			fate{state: InstanceRunning, healthy: h},
			fate{state: InstanceTerminated, healthy: h},
			fate{state: "", absent: time.Hour, healthy: h},
			fate{state: "", absent: time.Second, healthy: h},
		)
	}
	ids := []ID{0xb, 0xc, 0xd, 0xe}
	cases := 0
	var walk func(n int, chosen []fate)
	walk = func(n int, chosen []fate) {
		if len(chosen) < n {
			for _, f := range fates {
				walk(n, append(chosen, f))
			}
			return
		}
		for _, protect := range []bool{false, true} {
			cases++
			in := hk(running(0xa), []Member{voter(0xa)}, healthy(0xa))
			in.AbsentSince = map[ID]time.Time{}
			for i, f := range chosen {
				id := ids[i]
				m := voter(id)
				if i == n-1 && n > 1 {
					m = learner(id) // the last one is a learner, when there are several
				}
				in.Members = append(in.Members, m)
				if f.state != "" {
					in.Group = append(in.Group, withState(id, f.state))
				} else {
					in.AbsentSince[id] = t0.Add(-f.absent)
				}
				in.Healthy[id] = f.healthy
			}
			if protect && n > 0 {
				in.Protected = map[ID]bool{ids[0]: true}
			}
			checkHousekeepingInvariants(t, in, DecideHousekeeping(in))
		}
	}
	for n := 0; n <= len(ids); n++ {
		walk(n, nil)
	}
	if cases < 1000 {
		t.Fatalf("only %d cases ran", cases)
	}
}

func checkHousekeepingInvariants(t *testing.T, in HousekeepingInputs, plan HousekeepingPlan) {
	t.Helper()
	describe := func() string {
		var b strings.Builder
		for _, m := range in.Members {
			fmt.Fprintf(&b, "%s(learner=%v healthy=%v) ", m.ID, m.IsLearner, in.Healthy[m.ID])
		}
		fmt.Fprintf(&b, "group=%v protected=%v", in.Group, in.Protected)
		return b.String()
	}
	instState := map[string]InstanceState{}
	for _, inst := range in.Group {
		instState[inst.ID] = inst.State
	}
	// Which removals the rules allow, and whether any is due.
	allowed := func(m Member) bool {
		if in.Protected[m.ID] || m.Name == in.Self {
			return false
		}
		if m.IsLearner {
			return true
		}
		remaining, healthyLeft := 0, 0
		for _, v := range in.Members {
			if !v.IsLearner && v.ID != m.ID {
				remaining++
				if in.Healthy[v.ID] {
					healthyLeft++
				}
			}
		}
		if remaining == 0 || healthyLeft < Quorum(remaining) {
			return false
		}
		if !in.Healthy[m.ID] {
			return true
		}
		// The drain budget: a voter that serves goes only while every
		// other member is a healthy voter, every instance in service a
		// member, and no other serving voter on its way out comes first.
		names := map[string]bool{}
		for _, v := range in.Members {
			names[v.Name] = true
			if v.ID == m.ID {
				continue
			}
			if v.IsLearner || !in.Healthy[v.ID] || (instState[v.Name] == InstanceTerminated && v.Name < m.Name) {
				return false
			}
		}
		for _, inst := range in.Group {
			if inst.State.InGroup() && inst.ID != m.Name && !names[inst.ID] {
				return false
			}
		}
		return true
	}
	due := func(m Member) bool {
		st, listed := instState[m.Name]
		if listed && st.InGroup() {
			return false
		}
		if listed && st == InstanceTerminated {
			return true
		}
		since, ok := in.AbsentSince[m.ID]
		return ok && in.Now.Sub(since) >= in.StaleGrace
	}
	for _, id := range plan.Promote {
		if plan.Remove != nil && plan.Remove.Member.ID == id {
			t.Errorf("%s: %s is both promoted and removed", describe(), id)
		}
		for _, m := range in.Members {
			if m.ID == id && (!m.IsLearner || m.Name == "" || !in.Healthy[id] || !instState[m.Name].InGroup()) {
				t.Errorf("%s: promotes %s, which is not a healthy started learner of the group", describe(), id)
			}
		}
	}
	anyAllowed := false
	for _, m := range in.Members {
		if due(m) && allowed(m) {
			anyAllowed = true
		}
	}
	if plan.Remove == nil {
		if anyAllowed {
			t.Errorf("%s: no removal although one is due and allowed (held %q)", describe(), plan.Held)
		}
		return
	}
	m := plan.Remove.Member
	if !due(m) {
		t.Errorf("%s: removes %s which is not stale", describe(), m.ID)
	}
	if !allowed(m) {
		t.Errorf("%s: removes %s against a safety rule", describe(), m.ID)
	}
	if !m.IsLearner {
		for _, other := range in.Members {
			if other.IsLearner && due(other) && allowed(other) {
				t.Errorf("%s: removes voter %s before stale learner %s", describe(), m.ID, other.ID)
			}
		}
	}
}

func TestRefuseRemoval(t *testing.T) {
	tests := []struct {
		name    string
		in      HousekeepingInputs
		member  Member
		wantHas string // "" means allowed
	}{
		{"never the housekeeper itself", hk(nil, voters(0xa, 0xb, 0xc), healthy(0xa, 0xb, 0xc)), voter(0xa), "housekeeper itself"},
		{"never a protected member", func() HousekeepingInputs {
			in := hk(nil, voters(0xa, 0xb, 0xc), healthy(0xa, 0xb, 0xc))
			in.Protected = map[ID]bool{0xb: true}
			return in
		}(), voter(0xb), "upgrade lock"},
		{"never the last voter", hk(nil, voters(0xb), healthy()), voter(0xb), "last voter"},
		{"a learner never counts against quorum", hk(nil, append(voters(0xa, 0xb, 0xc), learner(0xd)), healthy(0xa)), learner(0xd), ""},
		{"a voter whose removal keeps quorum", hk(nil, voters(0xa, 0xb, 0xc), healthy(0xa, 0xc)), voter(0xb), ""},
		{"a voter whose removal loses quorum", hk(nil, voters(0xa, 0xb, 0xc), healthy(0xa, 0xb)), voter(0xb), "below their quorum"},
		{"learners are not counted as remaining voters", hk(nil, append(voters(0xa, 0xb), learner(0xc), learner(0xd)), healthy(0xa, 0xc, 0xd)), voter(0xb), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			if h := refuseRemoval(tt.in, tt.member); h != nil {
				got = h.String()
			}
			if tt.wantHas == "" && got != "" {
				t.Errorf("refused: %q, want allowed", got)
			}
			if tt.wantHas != "" && !strings.Contains(got, tt.wantHas) {
				t.Errorf("refuseRemoval = %q, want it to mention %q", got, tt.wantHas)
			}
		})
	}
}

func TestDecideHousekeepingKeepsFirstSeen(t *testing.T) {
	in := hk(running(0xa, 0xb), voters(0xa, 0xb), healthy(0xa, 0xb))
	in.FirstSeen = map[ID]time.Time{0xa: t0.Add(-time.Hour), goneMember: t0.Add(-time.Hour)}
	plan := DecideHousekeeping(in)
	want := map[ID]time.Time{0xa: t0.Add(-time.Hour), 0xb: t0}
	if !reflect.DeepEqual(plan.FirstSeen, want) {
		t.Errorf("FirstSeen = %v, want %v (kept for members, new ones now, gone ones dropped)", plan.FirstSeen, want)
	}
}

// goneMember is the id of a member that no longer exists.
const goneMember ID = 0xdead

func TestDecideHousekeepingDoesNotMutateInputs(t *testing.T) {
	in := hk(join(running(0xa, 0xc), []Instance{withState(0xb, InstanceTerminated)}),
		append(voters(0xa, 0xb, 0xc), unstarted(0xd)), healthy(0xa, 0xc))
	in.AbsentSince = map[ID]time.Time{0xc: t0.Add(-time.Hour), goneMember: t0}
	in.FirstSeen = map[ID]time.Time{goneMember: t0}
	absent := map[ID]time.Time{0xc: t0.Add(-time.Hour), goneMember: t0}
	first := map[ID]time.Time{goneMember: t0}
	members := append([]Member(nil), in.Members...)

	DecideHousekeeping(in)
	if !reflect.DeepEqual(in.AbsentSince, absent) || !reflect.DeepEqual(in.FirstSeen, first) || !reflect.DeepEqual(in.Members, members) {
		t.Errorf("inputs changed: absent %v first %v members %v", in.AbsentSince, in.FirstSeen, in.Members)
	}
}

// TestHousekeepingForgetsAnOldMemory: clocks last refreshed longer ago than
// twice the grace (no cycle decided meanwhile) measure nothing; a member
// absent at both ends of the gap starts its grace over.
func TestHousekeepingForgetsAnOldMemory(t *testing.T) {
	absent := hk(running(0xa, 0xc), voters(0xa, 0xb, 0xc), healthy(0xa, 0xc))
	plan := cycle(absent, t0, HousekeepingPlan{})

	later := absent
	later.LastCycle = t0
	now := t0.Add(2*staleGrace + time.Second)
	plan = cycle(later, now, plan)
	if plan.Remove != nil || !plan.AbsentSince[0xb].Equal(now) {
		t.Fatalf("after a gap of %s: remove %v, b absent since %s; want none, since now", now.Sub(t0), plan.Remove, plan.AbsentSince[0xb])
	}

	// Within the bound the memory holds.
	plan = cycle(absent, t0, HousekeepingPlan{})
	now = t0.Add(2 * staleGrace)
	plan = cycle(later, now, plan)
	if plan.Remove == nil || plan.Remove.Member.ID != 0xb {
		t.Fatalf("a memory refreshed %s ago was forgotten: %+v", now.Sub(t0), plan)
	}
}
