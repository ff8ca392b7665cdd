package cluster

import (
	"time"
)

// BackupSchedule is when the leader snapshots the cluster (§4.6).
type BackupSchedule struct {
	// Interval is --backup-interval; Retry how soon a failed snapshot is
	// tried again (at most Interval); VerifyEvery how often a snapshot is
	// restored into a throwaway etcd to prove it loads.
	Interval, Retry, VerifyEvery time.Duration
}

// Next is when the snapshot after one that ended at now is due.
func (s BackupSchedule) Next(now time.Time, failed bool) time.Time {
	if failed {
		return now.Add(min(s.Retry, s.Interval))
	}
	return now.Add(s.Interval)
}

// VerifyDue reports whether the snapshot just stored is to be verified.
func (s BackupSchedule) VerifyDue(now, lastVerified time.Time) bool {
	return now.Sub(lastVerified) >= s.VerifyEvery
}

// SnapshotNeeded reports whether the cluster at revision (0: unknown)
// may hold anything the newest stored snapshot (at stored, 0: none) lacks.
// A cluster with no keys of its users (userKeys 0; -1: not counted) has
// nothing to keep while the store holds nothing either: the appliance's
// own keys (locks, the housekeeper election) move the revision, not the
// data. Once the store holds a snapshot, an emptied cluster is snapshotted
// like any change, or a restore would bring deleted keys back.
func SnapshotNeeded(revision, stored, userKeys int64) bool {
	if stored == 0 && userKeys == 0 {
		return false
	}
	return revision <= 0 || revision > stored
}

// NewestGoodSnapshot picks the snapshot to restore among those the store
// lists: the highest revision that is not known bad, whatever the clocks
// that named them said (the newest time breaks ties). known is the highest
// revision any of them reached, bad or not: what a restore may lose.
func NewestGoodSnapshot(snaps []SnapshotRef, bad map[string]bool) (best *SnapshotRef, known int64) {
	for i := range snaps {
		s := &snaps[i]
		known = max(known, s.Revision)
		if bad[s.Key] {
			continue
		}
		if best == nil || s.Revision > best.Revision || (s.Revision == best.Revision && s.Time.After(best.Time)) {
			best = s
		}
	}
	if best != nil {
		ref := *best
		best = &ref
	}
	return best, known
}

// TrackLoss advances the clock of a lost quorum: since is when this
// instance first saw the quorum lost for good (zero: it did not), and the
// result is the clock for the next cycle. A live cluster, or a quorum that
// could still come back, stops the clock. started is true on the cycle that
// starts it.
func TrackLoss(since, now time.Time, in StartupInputs) (next time.Time, loss Loss, started bool) {
	loss, ok := QuorumLost(in)
	if !ok || !loss.Lost() || in.Cluster != nil {
		return time.Time{}, loss, false
	}
	if since.IsZero() {
		return now, loss, true
	}
	return since, loss, false
}

// SteadyListEvery is how often the leader lists the group while nothing
// changes (Steady). With AWS a listing is one DescribeAutoScalingGroups call,
// so a steady cluster makes 120 of them an hour (SPEC §7: ≤ 360 in all).
const SteadyListEvery = 30 * time.Second

// Steady reports whether nothing is changing in the cluster: every member
// is a started, healthy voter and the last group listing (listed, nil when
// none succeeded yet) has its instance running. Housekeeping can then do
// with a listing SteadyListEvery old; anything else lists the group every
// cycle.
func Steady(members []Member, healthy map[ID]bool, listed []Instance) bool {
	if listed == nil || len(members) == 0 {
		return false
	}
	running := map[string]bool{}
	for _, inst := range listed {
		if inst.State == InstanceRunning {
			running[inst.ID] = true
		}
	}
	for _, m := range members {
		if m.IsLearner || !m.Started() || !healthy[m.ID] || !running[m.Name] {
			return false
		}
	}
	return true
}

// OtherInstance returns an instance of the group other than self, "" when
// self is the last one: the last member of a cluster that terminates with
// its whole group withdraws the cluster's DNS records (§4.4).
func OtherInstance(group []Instance, self string) string {
	for _, inst := range group {
		if inst.ID != self && inst.State.InGroup() {
			return inst.ID
		}
	}
	return ""
}
