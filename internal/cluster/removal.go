package cluster

import (
	"fmt"
	"time"
)

// Rule names a safety rule that held back a change. Holds compare by rule
// and member, never by their text, which carries growing durations.
type Rule string

const (
	// RuleGroupUnknown: no membership change on a group listing that failed.
	RuleGroupUnknown Rule = "group-unknown"
	// RuleSelfNotListed: the group listing does not show the deciding
	// instance, so it may be the one that is going away.
	RuleSelfNotListed Rule = "self-not-listed"
	// RuleProtected: the member holds the upgrade lock (§4.7).
	RuleProtected Rule = "upgrade-lock"
	// RuleSelf: housekeeping never removes the leader that runs it.
	RuleSelf Rule = "self"
	// RuleLastVoter: the cluster's last voter is never removed.
	RuleLastVoter Rule = "last-voter"
	// RuleQuorum: the voters left after the removal must have a healthy quorum.
	RuleQuorum Rule = "quorum"
	// RuleFullStrength: a healthy voter is taken out (drained, or removed
	// as stale while it still serves) only when the rest of the cluster is
	// at full strength: one disruption at a time, whatever the group's pace.
	RuleFullStrength Rule = "full-strength"
)

// Hold is a change a safety rule refused: which rule, for which member, and why.
type Hold struct {
	Rule Rule `json:"rule"`
	// Member is the member the change was about (0: the whole cycle).
	Member ID     `json:"member,omitempty"`
	Name   string `json:"name,omitempty"`
	// Why is the rule's explanation, for people.
	Why string `json:"why"`
}

// HoldKey identifies a hold across cycles: the same rule for the same member.
type HoldKey struct {
	Rule   Rule
	Member ID
}

// Key is the hold's identity across cycles.
func (h Hold) Key() HoldKey { return HoldKey{Rule: h.Rule, Member: h.Member} }

func (h Hold) String() string { return h.Why }

// Error makes a hold an error for the apply steps that refuse on it.
func (h *Hold) Error() string { return fmt.Sprintf("refused by the %s rule: %s", h.Rule, h.Why) }

// CheckRemoval is the one quorum rule of every removal (§4.3): stale
// removal, the learner timeout, a rejoin's or a replacement's removal of an
// old member, leaving on shutdown and the lifecycle drain all ask it. It
// returns why removing member id from ms would break the rule, nil when the
// removal is safe.
//
// A learner never counts toward the quorum, so removing one is always safe.
// A voter may go only when it is not the last one and the voters left after
// it, healthy ones counted against all of them, still make a quorum. A voter
// that never started counts as a voter that is not healthy: etcd counts it
// in the quorum, so the cluster could not commit without it. healthy must
// therefore be false for a member that never started (it answers nothing).
func CheckRemoval(ms []Member, healthy map[ID]bool, id ID) *Hold {
	target, ok := memberByID(ms, id)
	if !ok || target.IsLearner {
		return nil
	}
	var remaining, up int
	for _, v := range ms {
		if v.IsLearner || v.ID == id {
			continue
		}
		remaining++
		if healthy[v.ID] {
			up++
		}
	}
	if remaining == 0 {
		return &Hold{Rule: RuleLastVoter, Member: id, Name: target.Name, Why: "it is the last voter"}
	}
	if up < Quorum(remaining) {
		return &Hold{Rule: RuleQuorum, Member: id, Name: target.Name,
			Why: fmt.Sprintf("only %d of the %d remaining voters are healthy, below their quorum of %d", up, remaining, Quorum(remaining))}
	}
	return nil
}

// CheckDrain is the drain budget (§4.5): it returns why the voter id, which
// still serves, must not be taken out of the cluster yet, nil when it may.
// Removing a voter that serves costs the cluster a working member, so it
// waits until every other member is a started, healthy voter, every
// instance that the group has in service is a member (a replacement joins
// before the next member goes), and no other serving voter whose instance
// is leaving the group comes before it (the lower instance id goes first,
// so that two instances the group terminates at once leave one after the
// other). When the group knows its desired capacity, the serving voters
// that stay (all but the target) must number at least desired-1: a member that left before its replacement was even
// listed is a disruption the listing alone does not show. A learner, or a
// member that does not serve, costs nothing to remove: CheckRemoval alone
// judges those.
func CheckDrain(ms []Member, healthy map[ID]bool, group []Instance, desired int, id ID) *Hold {
	target, ok := memberByID(ms, id)
	if !ok || target.IsLearner || !healthy[id] {
		return nil
	}
	hold := func(format string, args ...any) *Hold {
		return &Hold{Rule: RuleFullStrength, Member: id, Name: target.Name, Why: fmt.Sprintf(format, args...)}
	}
	names := map[string]bool{}
	for _, m := range ms {
		names[m.Name] = true
		if m.ID == id {
			continue
		}
		switch {
		case m.Name == "":
			return hold("member %s has not started yet", m.ID)
		case m.IsLearner:
			return hold("member %s (%s) is a learner, not promoted yet", m.ID, m.Name)
		case !healthy[m.ID]:
			return hold("voter %s (%s) is not healthy", m.ID, m.Name)
		case leavingGroup(group, m.Name) && m.Name < target.Name:
			return hold("voter %s (%s) leaves the group too and goes first", m.ID, m.Name)
		}
	}
	for _, inst := range group {
		if inst.State.InGroup() && inst.ID != target.Name && !names[inst.ID] {
			return hold("instance %s of the group is not a member yet", inst.ID)
		}
	}
	// Serving voters leaving behind the target stay until their turn (the
	// ones ahead of it held it above): two terminated at once do not wait
	// for each other's replacement.
	staying := 0
	for _, m := range ms {
		if m.ID != id && !m.IsLearner && healthy[m.ID] {
			staying++
		}
	}
	if desired > 0 && staying < desired-1 {
		return hold("only %d serving voters would stay, for a group of %d: its replacements are not voters yet", staying, desired)
	}
	return nil
}

// leavingGroup reports whether the group lists instance id as terminated
// or terminating: on its way out for good.
func leavingGroup(group []Instance, id string) bool {
	st, listed := stateOf(group, id)
	return listed && st.Gone()
}

func memberByID(ms []Member, id ID) (Member, bool) {
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// LeavePlan is how an instance leaves the cluster: on shutdown with
// --leave-on-shutdown=always, or when its group terminates it (§4.5).
type LeavePlan struct {
	// Member is this instance's member (0: it is not a member).
	Member ID `json:"member"`
	// TransferTo is a healthy voter to hand leadership to first, when this
	// member leads (0: none needed or none healthy).
	TransferTo ID `json:"transfer_to,omitempty"`
	// Refused says which rule forbids leaving now; nil: leave.
	Refused *Hold `json:"refused,omitempty"`
}

// DecideLeave plans the leave of instance self from the members ms, with
// the health of each and the member that leads.
func DecideLeave(ms []Member, healthy map[ID]bool, leader ID, self string) LeavePlan {
	var plan LeavePlan
	for _, m := range ms {
		if m.Name == self {
			plan.Member = m.ID
		}
	}
	if plan.Member == 0 {
		return plan
	}
	if h := CheckRemoval(ms, healthy, plan.Member); h != nil {
		plan.Refused = h
		return plan
	}
	if leader != plan.Member {
		return plan
	}
	for _, m := range ms {
		if m.ID != plan.Member && !m.IsLearner && healthy[m.ID] {
			plan.TransferTo = m.ID
			break
		}
	}
	return plan
}

// Holds remembers the holds of earlier cycles, by key, with when each was
// first seen, so that a loop reports each situation once.
type Holds map[HoldKey]time.Time

// Update replaces the remembered holds by the current ones (a hold that is
// no longer reported is forgotten) and returns the ones that are new.
func (h *Holds) Update(now time.Time, current []Hold) (fresh []Hold) {
	next := Holds{}
	for _, c := range current {
		since, seen := (*h)[c.Key()]
		if !seen {
			since = now
			fresh = append(fresh, c)
		}
		next[c.Key()] = since
	}
	*h = next
	return fresh
}
