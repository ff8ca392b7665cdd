package cluster

import (
	"fmt"
	"slices"
	"sort"
)

// StartupAction is what an instance does to get its etcd running (§4.2).
type StartupAction string

const (
	// StartMember starts etcd on intact local data of a live cluster's member.
	StartMember StartupAction = "start-member"
	// Rejoin removes the instance's old member, wipes the local data and joins again.
	Rejoin StartupAction = "rejoin"
	// ReplaceStale removes a stale member that holds this instance's peer URL, then joins.
	ReplaceStale StartupAction = "replace-stale"
	// Join adds the instance as a learner and starts etcd with state existing.
	Join StartupAction = "join"
	// ResumeJoin starts etcd for a member that was added for this instance but never started.
	ResumeJoin StartupAction = "resume-join"
	// StartOnData starts etcd on local data while no live cluster answers (whole-group reboot).
	StartOnData StartupAction = "start-on-data"
	// Bootstrap creates a new cluster: the seeder offers the agreed group as
	// the initial members and starts etcd with state new.
	Bootstrap StartupAction = "bootstrap"
	// BootstrapMember starts etcd with state new as a member of an offer.
	BootstrapMember StartupAction = "bootstrap-member"
	// Recover starts a new one-member cluster on the local data, which is
	// the newest after the quorum was lost for good (§4.6).
	Recover StartupAction = "recover"
	// Restore restores the plan's snapshot into a new one-member cluster:
	// the store's newest good snapshot, on a new group or after the quorum
	// was lost for good with no newer data left (§4.6).
	Restore StartupAction = "restore"
	// Wait does nothing and looks again later.
	Wait StartupAction = "wait"
)

// StartupInputs is everything the startup plan depends on.
type StartupInputs struct {
	Self Instance
	// SelfPeerURL is this instance's etcd peer URL.
	SelfPeerURL string
	// GroupKnown is false when listing the group failed: an unknown group is
	// never read as an empty one.
	GroupKnown bool
	Group      []Instance
	// Peers holds the answers of group instances to GET /v1/peer, by instance
	// id; a missing entry is an unreachable peer. The own answer is included.
	Peers map[string]PeerAnswer
	// Cluster is the member list from a live member, nil when none answered.
	Cluster *ClusterView
	Local   LocalData
	// Recovery are the inputs of disaster recovery and of restoring a new
	// group from the store.
	Recovery RecoveryInputs
}

// StartupPlan is the decision of DecideStartup.
type StartupPlan struct {
	Action StartupAction `json:"action"`
	Reason string        `json:"reason"`
	// RemoveMember is removed from the cluster before joining (0: none).
	RemoveMember ID `json:"remove_member,omitempty"`
	// Wipe moves the local data aside before etcd starts.
	Wipe bool `json:"wipe,omitempty"`
	// Seeder is the instance allowed to create the cluster, when one was chosen.
	Seeder string `json:"seeder,omitempty"`
	// Offer is the initial membership for Bootstrap (its token is left for
	// the caller to fill with a fresh random one) and BootstrapMember.
	Offer *BootstrapOffer `json:"offer,omitempty"`
	// Snapshot is the snapshot that Restore restores.
	Snapshot *SnapshotRef `json:"snapshot,omitempty"`
	// LostRevisions is how many revisions a Recover or Restore loses: the
	// newest revision known to the group and the store, minus the one
	// recovered. Writes that reached only the lost instances are unknown.
	LostRevisions int64 `json:"lost_revisions,omitempty"`
}

func wait(format string, args ...any) StartupPlan {
	return StartupPlan{Action: Wait, Reason: fmt.Sprintf(format, args...)}
}

// DecideStartup is the startup plan of §4.2 as a pure function.
func DecideStartup(in StartupInputs) StartupPlan {
	if in.Cluster != nil {
		return decideWithLiveCluster(in)
	}
	return decideWithoutLiveCluster(in)
}

func decideWithLiveCluster(in StartupInputs) StartupPlan {
	c := in.Cluster
	m, listed := c.MemberByName(in.Self.ID)
	if listed && in.Local.Exists && in.Local.Unusable == "" && in.Local.Known &&
		in.Local.ClusterID == c.ClusterID && in.Local.MemberID == m.ID {
		// A restart needs nothing but the cluster: not even the group listing.
		return StartupPlan{Action: StartMember, Reason: fmt.Sprintf("member %s of live cluster %s with intact data", m.ID, c.ClusterID)}
	}
	// Every other plan changes the membership, which an instance does only
	// while the group listing shows it as part of the group.
	if !in.GroupKnown {
		return wait("the group listing failed; no membership change on an unknown group")
	}
	if !inGroup(in.Group, in.Self.ID) {
		return wait("this instance %s is not in the group listing", in.Self.ID)
	}
	if listed && !m.Started() && m.HasPeerURL(in.SelfPeerURL) && !in.Local.Exists {
		return StartupPlan{Action: ResumeJoin,
			Reason: fmt.Sprintf("member %s was created for this instance and never started", m.ID)}
	}
	if listed {
		switch {
		case !in.Local.Exists:
			return StartupPlan{Action: Rejoin, RemoveMember: m.ID,
				Reason: fmt.Sprintf("listed as member %s of cluster %s but the data dir is empty", m.ID, c.ClusterID)}
		case in.Local.Unusable != "":
			return StartupPlan{Action: Rejoin, RemoveMember: m.ID, Wipe: true,
				Reason: fmt.Sprintf("listed as member %s of cluster %s but etcd cannot run on the local data (%s)", m.ID, c.ClusterID, in.Local.Unusable)}
		case !in.Local.Known:
			return StartupPlan{Action: Rejoin, RemoveMember: m.ID, Wipe: true,
				Reason: fmt.Sprintf("listed as member %s of cluster %s but the data dir's owner was never recorded", m.ID, c.ClusterID)}
		default:
			return StartupPlan{Action: Rejoin, RemoveMember: m.ID, Wipe: true,
				Reason: fmt.Sprintf("listed as member %s of cluster %s but the data belongs to member %s of cluster %s",
					m.ID, c.ClusterID, in.Local.MemberID, in.Local.ClusterID)}
		}
	}

	for _, m := range c.Members {
		if !m.HasPeerURL(in.SelfPeerURL) {
			continue
		}
		if !m.Started() {
			return StartupPlan{Action: ResumeJoin, Wipe: in.Local.Exists,
				Reason: fmt.Sprintf("member %s was added for this address and never started", m.ID)}
		}
		return StartupPlan{Action: ReplaceStale, RemoveMember: m.ID, Wipe: in.Local.Exists,
			Reason: fmt.Sprintf("stale member %s (%s) holds this instance's address %s", m.ID, m.Name, in.Self.Address)}
	}
	reason := fmt.Sprintf("not a member of live cluster %s", c.ClusterID)
	if in.Local.Exists {
		reason += fmt.Sprintf("; local data of cluster %s is set aside", in.Local.ClusterID)
	}
	return StartupPlan{Action: Join, Wipe: in.Local.Exists, Reason: reason}
}

func decideWithoutLiveCluster(in StartupInputs) StartupPlan {
	if in.Local.Offer != nil && !in.Local.Known {
		// Accepted before; etcd may or may not have created its data. Start
		// again with the same offer: the same token and members give the
		// same cluster and member ids, whatever happened before.
		return StartupPlan{Action: BootstrapMember, Offer: in.Local.Offer,
			Reason: "no live cluster and this instance accepted a bootstrap offer before: start it again with the same offer"}
	}
	if plan, ok := decideRecovery(in); ok {
		return plan
	}
	if in.Local.Exists && in.Local.Unusable != "" {
		// Without a live cluster to copy from, these bytes may be the newest
		// data there is: never wipe them, and don't restart etcd on them blindly.
		return wait("etcd cannot run on the local data (%s) and no live cluster answers to rejoin: keeping the data for recovery", in.Local.Unusable)
	}
	if in.Local.Exists {
		return StartupPlan{Action: StartOnData,
			Reason: "no live cluster answers and this instance has data: start on it and wait for peers"}
	}

	if !in.GroupKnown {
		return wait("no live cluster and the group listing failed")
	}
	if !inGroup(in.Group, in.Self.ID) {
		return wait("this instance %s is not in the group listing yet", in.Self.ID)
	}
	members := groupMembers(in.Group)
	if plan, ok := decideOnOffers(in, members); ok {
		return plan
	}
	view := GroupView(in.Group)
	var answers []PeerState
	for _, inst := range members {
		a, ok := in.Peers[inst.ID]
		if !ok || !a.Reachable || a.State.InstanceID != inst.ID {
			return wait("no live cluster and peer %s (%s) did not answer: never create a cluster on a partial view", inst.ID, inst.Address)
		}
		answers = append(answers, a.State)
	}
	for _, a := range answers {
		if a.EtcdRunning || a.HasData || a.Phase == PhaseStarting {
			return wait("no live cluster yet, but peer %s has data or is starting etcd: waiting for it", a.InstanceID)
		}
	}
	for _, a := range answers {
		if !slices.Equal(a.GroupView, view) {
			return wait("peer %s sees the group as %v, this instance as %v: a cluster is created only on one agreed group",
				a.InstanceID, a.GroupView, view)
		}
	}
	if in.Recovery.StoreErr != "" {
		return wait("no cluster exists, but the store can't be read (%s): it may hold the cluster's data", in.Recovery.StoreErr)
	}
	seeder := Seeder(answers)
	if in.Recovery.Snapshot == nil && in.Recovery.StoreSnapshots > 0 {
		return wait("no cluster exists and the store holds %d snapshots of it, none usable: never create an empty cluster over them; restore one by hand",
			in.Recovery.StoreSnapshots)
	}
	if snap := in.Recovery.Snapshot; snap != nil {
		if seeder != in.Self.ID {
			return StartupPlan{Action: Wait, Seeder: seeder,
				Reason: fmt.Sprintf("no cluster exists; %s is the seeder and restores snapshot %s (revision %d)", seeder, snap.Key, snap.Revision)}
		}
		return StartupPlan{Action: Restore, Seeder: seeder, Snapshot: snap,
			LostRevisions: max(0, in.Recovery.KnownRevision-snap.Revision),
			Reason: fmt.Sprintf("all %d group instances answered, none has data, this instance is the seeder, and the store's newest good snapshot is %s (revision %d)",
				len(members), snap.Key, snap.Revision)}
	}
	if seeder != in.Self.ID {
		return StartupPlan{Action: Wait, Seeder: seeder,
			Reason: fmt.Sprintf("no cluster exists; %s is the seeder and creates it", seeder)}
	}
	offer := &BootstrapOffer{}
	for _, a := range answers {
		if hostOf(a.PeerURL) != a.Address || a.Address == "" {
			return wait("peer %s publishes peer URL %q that is not on its address %q", a.InstanceID, a.PeerURL, a.Address)
		}
		offer.Members = append(offer.Members, NamedPeer{Name: a.InstanceID, PeerURL: a.PeerURL})
	}
	return StartupPlan{Action: Bootstrap, Seeder: seeder, Offer: offer,
		Reason: fmt.Sprintf("all %d group instances answered, none has data, and this instance is the seeder", len(members))}
}

// decideOnOffers accepts the one bootstrap offer that lists this instance.
func decideOnOffers(in StartupInputs, members []Instance) (StartupPlan, bool) {
	var offers []*BootstrapOffer
	var from []string
	for _, inst := range members {
		a, ok := in.Peers[inst.ID]
		if !ok || !a.Reachable || a.State.InstanceID != inst.ID || a.State.Offer == nil {
			continue
		}
		if !slices.ContainsFunc(offers, func(o *BootstrapOffer) bool { return o.Token == a.State.Offer.Token }) {
			offers = append(offers, a.State.Offer)
			from = append(from, inst.ID)
		}
	}
	switch {
	case len(offers) == 0:
		return StartupPlan{}, false
	case len(offers) > 1:
		return wait("conflicting bootstrap offers from %v: accepting none", from), true
	case !offers[0].Lists(in.Self):
		return wait("a cluster is being created by %s without this instance; joining once it is live", from[0]), true
	default:
		return StartupPlan{Action: BootstrapMember, Offer: offers[0],
			Reason: fmt.Sprintf("%s offers to create the cluster with this instance among %d members", from[0], len(offers[0].Members))}, true
	}
}

// Seeder picks the one instance allowed to create a cluster: the highest data
// revision, ties broken by the lowest instance id.
func Seeder(answers []PeerState) string {
	if len(answers) == 0 {
		return ""
	}
	sorted := append([]PeerState(nil), answers...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Revision != sorted[j].Revision {
			return sorted[i].Revision > sorted[j].Revision
		}
		return sorted[i].InstanceID < sorted[j].InstanceID
	})
	return sorted[0].InstanceID
}

// groupMembers returns the instances that count as the group, ordered by id.
func groupMembers(all []Instance) []Instance {
	var out []Instance
	for _, inst := range all {
		if inst.State.InGroup() {
			out = append(out, inst)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func inGroup(all []Instance, id string) bool {
	for _, inst := range all {
		if inst.ID == id && inst.State.InGroup() {
			return true
		}
	}
	return false
}

// Quorum is the number of voters needed for a majority of n voters.
func Quorum(n int) int { return n/2 + 1 }
