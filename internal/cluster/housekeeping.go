package cluster

import (
	"fmt"
	"sort"
	"time"
)

// HousekeepingInputs is what the housekeeper's cycle decides on (§4.4).
type HousekeepingInputs struct {
	Now time.Time
	// Self is the instance id of the housekeeper running the cycle.
	Self string
	// GroupKnown is false when the group listing failed.
	GroupKnown bool
	// Group is every instance the provider listed, terminated ones included.
	Group   []Instance
	Members []Member
	// Healthy tells, per member, whether it answered a status request.
	Healthy map[ID]bool
	// FirstSeen and AbsentSince are the memory of earlier cycles, as returned
	// by the previous plan; LastCycle is when that plan was made (zero: not
	// told). A memory older than twice StaleGrace is forgotten: the clocks
	// measure an absence seen cycle after cycle, and a gap that long (a lost
	// quorum, a paused housekeeper) saw nothing of what happened meanwhile.
	FirstSeen   map[ID]time.Time
	AbsentSince map[ID]time.Time
	LastCycle   time.Time
	// Protected members are never removed (upgrade lock, §4.7).
	Protected map[ID]bool
	// Desired is the group's desired capacity, 0 when unknown: the drain
	// budget counts against it (CheckDrain).
	Desired int

	StaleGrace     time.Duration
	LearnerTimeout time.Duration
}

// Removal is one member to remove, with why.
type Removal struct {
	Member Member `json:"member"`
	Reason string `json:"reason"`
}

// HousekeepingPlan is the decision of DecideHousekeeping.
type HousekeepingPlan struct {
	// Remove is at most one member to remove this cycle.
	Remove *Removal `json:"remove,omitempty"`
	// Promote lists started learners that are healthy; etcd accepts the
	// promotion once they are in sync.
	Promote []ID `json:"promote,omitempty"`
	// Held lists removals that were due but refused, with the rule that refused them.
	Held []Hold `json:"held,omitempty"`
	// FirstSeen and AbsentSince are fed back into the next cycle's inputs.
	FirstSeen   map[ID]time.Time `json:"-"`
	AbsentSince map[ID]time.Time `json:"-"`
}

type candidate struct {
	member    Member
	reason    string
	rank      int // lower is removed first
	confirmed bool
}

// DecideHousekeeping is the housekeeping of §4.4 as a pure function.
func DecideHousekeeping(in HousekeepingInputs) HousekeepingPlan {
	plan := HousekeepingPlan{FirstSeen: map[ID]time.Time{}, AbsentSince: map[ID]time.Time{}}
	if !in.LastCycle.IsZero() && in.Now.Sub(in.LastCycle) > 2*in.StaleGrace {
		in.FirstSeen, in.AbsentSince = nil, nil
	}
	for _, m := range in.Members {
		if t, ok := in.FirstSeen[m.ID]; ok {
			plan.FirstSeen[m.ID] = t
		} else {
			plan.FirstSeen[m.ID] = in.Now
		}
		if m.IsLearner && m.Name != "" && in.Healthy[m.ID] && !leftGroup(in, m) {
			plan.Promote = append(plan.Promote, m.ID)
		}
	}

	if !in.GroupKnown {
		// Keep the absence clocks as they were: an unknown group says nothing.
		for id, t := range in.AbsentSince {
			if _, ok := plan.FirstSeen[id]; ok {
				plan.AbsentSince[id] = t
			}
		}
		plan.Held = append(plan.Held, Hold{Rule: RuleGroupUnknown, Why: "group listing failed: no removal on an unknown group"})
		return plan
	}
	byID := map[string]Instance{}
	for _, inst := range in.Group {
		byID[inst.ID] = inst
	}
	if self, ok := byID[in.Self]; !ok || !self.State.InGroup() {
		plan.Held = append(plan.Held, Hold{Rule: RuleSelfNotListed,
			Why: fmt.Sprintf("the group listing does not contain this instance %s: no removal", in.Self)})
		return plan
	}

	var candidates []candidate
	for _, m := range in.Members {
		if c, ok := staleCandidate(in, m, byID, &plan); ok {
			candidates = append(candidates, c)
		}
	}
	sort.Slice(candidates, func(i, j int) bool {
		a, b := candidates[i], candidates[j]
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		if a.confirmed != b.confirmed {
			return a.confirmed
		}
		return a.member.ID < b.member.ID
	})
	for _, c := range candidates {
		if h := refuseRemoval(in, c.member); h != nil {
			h.Why = fmt.Sprintf("member %s (%s) is stale (%s) but %s", c.member.ID, c.member.Name, c.reason, h.Why)
			plan.Held = append(plan.Held, *h)
			continue
		}
		plan.Remove = &Removal{Member: c.member, Reason: c.reason}
		break
	}
	return plan
}

// leftGroup reports whether a known group listing says that m's instance is
// no longer part of the group. Such a learner is not promoted: a voter about
// to disappear costs the cluster its fault tolerance, and its removal, planned
// for a learner, would skip the voters' quorum check.
func leftGroup(in HousekeepingInputs, m Member) bool {
	if !in.GroupKnown {
		return false
	}
	left := true
	for _, inst := range in.Group {
		if inst.ID == m.Name {
			left = !inst.State.InGroup()
		}
	}
	return left
}

// staleCandidate says whether m is stale and updates the absence clock.
func staleCandidate(in HousekeepingInputs, m Member, byID map[string]Instance, plan *HousekeepingPlan) (candidate, bool) {
	if m.Name == "" {
		// An added member that never started: it is the joiner's, until the
		// learner timeout says the joiner gave up. (Members of a bootstrap
		// have names from the start and are judged by their instance.)
		age := in.Now.Sub(plan.FirstSeen[m.ID])
		if age >= in.LearnerTimeout {
			return candidate{member: m, rank: 0, confirmed: true,
				reason: fmt.Sprintf("added %s ago and never started (learner timeout %s)", age.Round(time.Second), in.LearnerTimeout)}, true
		}
		return candidate{}, false
	}
	rank := 2
	if m.IsLearner {
		rank = 1
	}
	inst, listed := byID[m.Name]
	if listed && inst.State.InGroup() {
		return candidate{}, false
	}
	if listed && inst.State.Gone() {
		return candidate{member: m, rank: rank, confirmed: true, reason: fmt.Sprintf("instance %s is %s", m.Name, inst.State)}, true
	}
	since, ok := in.AbsentSince[m.ID]
	if !ok {
		since = in.Now
	}
	plan.AbsentSince[m.ID] = since
	absent := in.Now.Sub(since)
	if absent < in.StaleGrace {
		return candidate{}, false
	}
	return candidate{member: m, rank: rank,
		reason: fmt.Sprintf("instance %s absent from the group for %s (grace %s)", m.Name, absent.Round(time.Second), in.StaleGrace)}, true
}

// refuseRemoval returns why housekeeping must not remove m, nil when it
// may: the quorum rule that every removal obeys (CheckRemoval), the drain
// budget for a member that still serves (CheckDrain), and two rules of its
// own.
func refuseRemoval(in HousekeepingInputs, m Member) *Hold {
	if in.Protected[m.ID] {
		return &Hold{Rule: RuleProtected, Member: m.ID, Name: m.Name, Why: "it holds the upgrade lock"}
	}
	if m.Name == in.Self {
		return &Hold{Rule: RuleSelf, Member: m.ID, Name: m.Name, Why: "it is this housekeeper itself"}
	}
	if h := CheckRemoval(in.Members, in.Healthy, m.ID); h != nil {
		return h
	}
	return CheckDrain(in.Members, in.Healthy, in.Group, in.Desired, m.ID)
}
