package cluster

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// SnapshotRef is a snapshot in the store, as the startup plan needs it.
type SnapshotRef struct {
	Key       string    `json:"key"`
	ClusterID ID        `json:"cluster_id"`
	Revision  int64     `json:"revision"`
	Time      time.Time `json:"time"`
	// Log is the raft position of cluster ClusterID that the snapshot's
	// data was applied up to (its consistent index and term), zero when
	// unknown.
	Log LogPosition `json:"raft_log,omitzero"`
}

// LogPosition is the term and index of the last entry of a raft log.
type LogPosition struct {
	Term  uint64 `json:"term"`
	Index uint64 `json:"index"`
}

// Known reports whether the position was read.
func (p LogPosition) Known() bool { return p.Index > 0 }

// Compare orders positions as raft's election restriction does: the later
// last term wins, then the longer log. Within one cluster, a log at a
// position not below another's holds every entry committed in it.
func (p LogPosition) Compare(q LogPosition) int {
	if p.Term != q.Term {
		return cmp.Compare(p.Term, q.Term)
	}
	return cmp.Compare(p.Index, q.Index)
}

// NewerData reports whether a's data is newer than b's. Within one cluster
// the raft logs decide when both positions are known: a survivor whose
// etcd does not serve publishes the revision its marker recorded, up to
// seconds old, while its WAL's position is exactly what a recovery on it
// keeps. Otherwise the revision decides; ties go to the lower instance id,
// so every instance picks the same one.
func NewerData(a, b PeerState) bool {
	if a.ClusterID == b.ClusterID && a.Log.Known() && b.Log.Known() {
		if c := a.Log.Compare(b.Log); c != 0 {
			return c > 0
		}
	}
	if a.Revision != b.Revision {
		return a.Revision > b.Revision
	}
	return a.InstanceID < b.InstanceID
}

// SnapshotNewer reports whether the snapshot s holds data newer than the
// survivor's: by raft log position when both are of the same cluster and
// known (the survivor's revision may be the marker's, seconds old), else
// by revision. A survivor whose log reached the snapshot's position holds
// everything the snapshot does.
func SnapshotNewer(s SnapshotRef, survivor PeerState) bool {
	if s.ClusterID == survivor.ClusterID && s.Log.Known() && survivor.Log.Known() {
		return s.Log.Compare(survivor.Log) > 0
	}
	return s.Revision > survivor.Revision
}

// RecoveryInputs are the inputs of the startup plan that only disaster
// recovery (§4.6) reads. Their zero value is "no store, no loss seen".
type RecoveryInputs struct {
	// Snapshot is the newest good snapshot of the cluster in the store,
	// nil when the store holds none or none is configured.
	Snapshot *SnapshotRef `json:",omitempty"`
	// StoreSnapshots is how many snapshots of the cluster the store lists,
	// usable or not: a store that holds snapshots but none usable is not
	// an empty one, and no empty cluster is created over it.
	StoreSnapshots int `json:",omitempty"`
	// StoreErr says why the store could not be listed; while it can't,
	// nothing is created or recovered: the store may hold newer data than
	// anyone else.
	StoreErr string `json:",omitempty"`
	// Now is the time of the decision; LostSince when this instance first
	// saw the cluster's quorum lost for good (QuorumLost), zero when it
	// does not see it lost.
	Now       time.Time `json:",omitzero"`
	LostSince time.Time `json:",omitzero"`
	// DRGrace is how long the quorum must stay lost before recovery.
	DRGrace time.Duration `json:",omitempty"`
	// KnownRevision is the newest revision the cluster is known to have
	// reached (recorded in the store by its leader), 0 when unknown; it
	// measures what a recovery loses.
	KnownRevision int64 `json:",omitempty"`
}

// Loss is what the instances of the group tell about the cluster whose
// data they hold, when no live cluster answers.
type Loss struct {
	// ClusterID is the cluster of the data the instances hold.
	ClusterID ID
	// Voters are its voters' names (instance ids), as its members last
	// listed them; Gone those whose instances are terminated or absent
	// from the group: they can never come back.
	Voters, Gone []string
}

// Lost reports whether the quorum of the cluster is lost for good: fewer of
// its voters can come back than a quorum. A stopped instance can come back,
// so only terminated and absent instances count as gone, and those that
// answer without the cluster's data (their data is lost or of another
// cluster: their member can never vote again).
func (l Loss) Lost() bool {
	return len(l.Voters) > 0 && len(l.Voters)-len(l.Gone) < Quorum(len(l.Voters))
}

// QuorumLost looks at the data the group's instances hold, as they answered
// on /v1/peer, when no live cluster answers. ok is false when nothing can
// be said: the group is unknown, nobody holds data of a cluster that lists
// voters, or instances hold data of different clusters. The voters are
// those of the newest data (highest revision): an older member's list may
// predate a membership change.
func QuorumLost(in StartupInputs) (loss Loss, ok bool) {
	if !in.GroupKnown {
		return Loss{}, false
	}
	var newest *PeerState
	for _, a := range in.Peers {
		s := a.State
		if !a.Reachable || !s.HasData || s.ClusterID == 0 || len(s.Voters) == 0 {
			continue
		}
		if newest != nil && newest.ClusterID != s.ClusterID {
			return Loss{}, false
		}
		if newest == nil || NewerData(s, *newest) {
			newest = &s
		}
	}
	if newest == nil {
		return Loss{}, false
	}
	loss.ClusterID = newest.ClusterID
	loss.Voters = slices.Sorted(slices.Values(newest.Voters))
	for _, v := range loss.Voters {
		a, answered := in.Peers[v]
		dataLost := answered && a.Reachable && (!a.State.HasData || (a.State.ClusterID != 0 && a.State.ClusterID != loss.ClusterID))
		if instanceGone(in.Group, v) || dataLost {
			loss.Gone = append(loss.Gone, v)
		}
	}
	return loss, true
}

// instanceGone reports whether the instance is terminated or not listed.
func instanceGone(group []Instance, id string) bool {
	// A terminating instance may still serve while its hook holds it: it
	// is gone only once terminated (or no longer listed).
	st, listed := stateOf(group, id)
	return !listed || st == InstanceTerminated
}

// unanswerableVoter returns a voter of the lost cluster that is not gone
// but whose instance is outside the group (stopped or stopping: listed, not
// terminated), with its state. Such a voter cannot answer, yet it can come
// back holding commits that no survivor has: nobody recovers without its
// answer. ok is false when every voter that is not gone is in the group.
func unanswerableVoter(group []Instance, loss Loss) (id string, state InstanceState, ok bool) {
	for _, v := range loss.Voters {
		if slices.Contains(loss.Gone, v) {
			continue
		}
		for _, inst := range group {
			if inst.ID == v && !inst.State.InGroup() {
				return v, inst.State, true
			}
		}
	}
	return "", "", false
}

// decideRecovery is the disaster recovery of §4.6, for an instance that
// sees no live cluster while the group holds data of a cluster whose quorum
// is lost for good. ok is false when recovery is not the subject, and the
// ordinary plans apply.
//
// Once the quorum has been lost for DRGrace, and every instance of the
// group answers with one agreed view, the instance with the newest data
// recovers: a survivor makes its data a new one-member cluster, or, when the
// store's newest good snapshot is newer than every survivor's data, the
// seeder restores it. Everyone else waits and then joins the recovered
// cluster through the ordinary plans. Nobody recovers while a quorum could
// still come back, while an instance does not answer, while a voter that is
// not gone can't answer (its instance is stopped: it may hold commits no
// survivor has), or while the store can't be read.
func decideRecovery(in StartupInputs) (StartupPlan, bool) {
	loss, ok := QuorumLost(in)
	if !ok || !loss.Lost() || !inGroup(in.Group, in.Self.ID) {
		return StartupPlan{}, false
	}
	r := in.Recovery
	lostFor := time.Duration(0)
	if !r.LostSince.IsZero() {
		lostFor = r.Now.Sub(r.LostSince)
	}
	if r.LostSince.IsZero() || lostFor < r.DRGrace {
		// Until the grace is over, the ordinary plans run: a survivor starts
		// on its data and waits for peers.
		return StartupPlan{}, false
	}
	if v, state, ok := unanswerableVoter(in.Group, loss); ok {
		return wait("quorum of cluster %s lost (voters %v of %v gone), but voter %s's instance is %s: it can come back with data newer than any answer; waiting for it to run and answer, or to be terminated",
			loss.ClusterID, loss.Gone, loss.Voters, v, state), true
	}
	answers, plan, ok := agreedAnswers(in)
	if !ok {
		return plan, true
	}
	if r.StoreErr != "" {
		return wait("quorum of cluster %s lost (voters %v gone), but the store can't be read (%s): it may hold newer data than any survivor",
			loss.ClusterID, loss.Gone, r.StoreErr), true
	}
	var best *PeerState
	newest := r.KnownRevision
	for i := range answers {
		a := &answers[i]
		newest = max(newest, a.Revision)
		// Only a voter's data can make the new cluster: etcd forcing a
		// learner into a one-member cluster removes every voter and
		// panics, on every restart after.
		if !a.HasData || a.ClusterID != loss.ClusterID || !slices.Contains(loss.Voters, a.InstanceID) {
			continue
		}
		if best == nil || NewerData(*a, *best) {
			best = a
		}
	}
	why := fmt.Sprintf("quorum of cluster %s lost for %s (voters %v of %v gone)", loss.ClusterID, lostFor.Round(time.Second), loss.Gone, loss.Voters)
	if r.Snapshot != nil {
		newest = max(newest, r.Snapshot.Revision)
	}
	if r.Snapshot != nil && (best == nil || SnapshotNewer(*r.Snapshot, *best)) {
		restorer := Seeder(answers)
		if restorer != in.Self.ID {
			return StartupPlan{Action: Wait, Seeder: restorer,
				Reason: fmt.Sprintf("%s; %s restores snapshot %s (revision %d)", why, restorer, r.Snapshot.Key, r.Snapshot.Revision)}, true
		}
		return StartupPlan{Action: Restore, Seeder: restorer, Snapshot: r.Snapshot, Wipe: in.Local.Exists,
			LostRevisions: newest - r.Snapshot.Revision,
			Reason:        fmt.Sprintf("%s; the store's snapshot %s (revision %d) is the newest data", why, r.Snapshot.Key, r.Snapshot.Revision)}, true
	}
	if best == nil {
		return wait("%s; no surviving voter holds its data and the store has no snapshot: restore one by hand", why), true
	}
	if best.InstanceID != in.Self.ID {
		return StartupPlan{Action: Wait, Seeder: best.InstanceID,
			Reason: fmt.Sprintf("%s; %s recovers from its data (revision %d)", why, best.InstanceID, best.Revision)}, true
	}
	if in.Local.Unusable != "" {
		return wait("%s; this instance holds the newest data, but etcd cannot run on it (%s): keeping it for a manual restore", why, in.Local.Unusable), true
	}
	return StartupPlan{Action: Recover, Seeder: in.Self.ID, LostRevisions: max(0, newest-best.Revision),
		Reason: fmt.Sprintf("%s; this instance holds the newest data (revision %d): starting a new one-member cluster on it", why, best.Revision)}, true
}

// agreedAnswers returns the answers of every instance of the group, when
// all answered with the same view of the group, none is starting etcd and
// none offers to create a cluster: the unanimous answers that a creation
// or recovery needs. Otherwise it returns the plan to wait.
func agreedAnswers(in StartupInputs) ([]PeerState, StartupPlan, bool) {
	view := GroupView(in.Group)
	var answers []PeerState
	for _, inst := range groupMembers(in.Group) {
		a, ok := in.Peers[inst.ID]
		if !ok || !a.Reachable || a.State.InstanceID != inst.ID {
			return nil, wait("peer %s (%s) did not answer: never create or recover a cluster on a partial view", inst.ID, inst.Address), false
		}
		answers = append(answers, a.State)
	}
	for _, a := range answers {
		switch {
		case !slices.Equal(a.GroupView, view):
			return nil, wait("peer %s sees the group as %v, this instance as %v: a cluster is created or recovered only on one agreed group",
				a.InstanceID, a.GroupView, view), false
		case a.Phase == PhaseStarting:
			return nil, wait("peer %s is starting etcd: waiting for it", a.InstanceID), false
		case a.Offer != nil:
			return nil, wait("peer %s takes part in a bootstrap offer: waiting for it", a.InstanceID), false
		}
	}
	return answers, StartupPlan{}, true
}

// RestoreMargin is how far past the newest revision known a restored
// cluster's revisions start: writes that reached only the lost members
// were never reported to anyone, and their revisions must stay below the
// restored ones too.
const RestoreMargin = 1_000_000_000

// RestoreBump is what a restore adds to the revisions of the data it
// restores (at restored), marking the ones below compacted: the restored
// cluster starts RestoreMargin past both its own revision and known, the
// newest revision known anywhere (NewestKnownRevision). Clients that
// watched the lost cluster then get "compacted" and list again, and no
// data of an abandoned history (a newer snapshot, a set-aside survivor)
// outranks the restored cluster in a later recovery.
func RestoreBump(restored, known int64) int64 {
	return max(restored, known) - restored + RestoreMargin
}

// NewestKnownRevision is the newest revision the inputs know of, whatever
// its cluster: the store's snapshots (usable or not), this instance's data
// and every answering instance's. A restore bumps past it (RestoreBump).
func NewestKnownRevision(in StartupInputs) int64 {
	known := max(in.Recovery.KnownRevision, in.Local.Revision)
	if s := in.Recovery.Snapshot; s != nil {
		known = max(known, s.Revision)
	}
	for _, a := range in.Peers {
		if a.Reachable {
			known = max(known, a.State.Revision)
		}
	}
	return known
}
