package cluster

import "fmt"

// CheckSwap is the budget of an in-place swap of member id's etcd (§4.7):
// it returns why the swap must wait, nil when it may go. A swap stops a
// serving voter for the seconds its new etcd takes to start, so, like a
// drain, it waits until every other member is a started, healthy voter: the
// cluster then keeps its quorum however the swap goes. Unlike a drain, the
// group does not matter (no instance leaves), and the one member of a
// one-member cluster may swap: it has no redundancy to keep.
func CheckSwap(ms []Member, healthy map[ID]bool, id ID) *Hold {
	target, ok := memberByID(ms, id)
	if !ok {
		return &Hold{Rule: RuleFullStrength, Member: id, Why: "this member is not in the member list"}
	}
	for _, m := range ms {
		if m.ID == id {
			continue
		}
		var why string
		switch {
		case m.Name == "":
			why = fmt.Sprintf("member %s has not started yet", m.ID)
		case m.IsLearner:
			why = fmt.Sprintf("member %s (%s) is a learner, not promoted yet", m.ID, m.Name)
		case !healthy[m.ID]:
			why = fmt.Sprintf("voter %s (%s) is not healthy", m.ID, m.Name)
		default:
			continue
		}
		return &Hold{Rule: RuleFullStrength, Member: id, Name: target.Name, Why: why}
	}
	return nil
}

// NeedsRestorePoint reports whether a member about to run etcd next, in a
// cluster at clusterVersion whose members run the versions running, is the
// first of a newer minor: the last moment every member still runs the old
// minor, when a snapshot is a restore point the old release can load (§4.7).
// Versions that can't be read need none: the version gate refuses those.
func NeedsRestorePoint(clusterVersion, next string, running []string) bool {
	cv, err := ParseVersion(clusterVersion)
	if err != nil {
		return false
	}
	nv, err := ParseVersion(next)
	if err != nil {
		return false
	}
	if ahead, ok := nv.minorsAhead(cv); !ok || ahead < 1 {
		return false
	}
	for _, r := range running {
		if v, err := ParseVersion(r); err == nil && v.Major == nv.Major && v.Minor >= nv.Minor {
			return false
		}
	}
	return true
}
