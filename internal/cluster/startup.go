package cluster

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
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
	// AbandonOffer gives up the bootstrap offer this instance accepted,
	// which can never form its cluster (BootstrapOffer.Dead): the recorded
	// offer is removed and, with Wipe, the data etcd created on it is set
	// aside. The instance then plans again, and the group bootstraps anew.
	AbandonOffer StartupAction = "abandon-offer"
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
	// the caller to fill with a fresh random one) and BootstrapMember; for
	// AbandonOffer, the offer given up.
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
	plan := StartupPlan{Action: Join, Wipe: in.Local.Exists, Reason: reason}
	if m, ok := terminatedMember(c.Members, in.Group); ok {
		// etcd refuses every member add while a listed member is down, so
		// the joiner does at once, under the membership lock and the one
		// quorum rule, what housekeeping would do on its next cycle.
		plan.RemoveMember = m.ID
		plan.Reason += fmt.Sprintf("; member %s's instance %s is terminated: removing it first", m.ID, m.Name)
	}
	return plan
}

// terminatedMember is a started member whose instance the group lists as
// terminated: gone for good, so its removal needs no grace (§4.4). Learners
// go first, then the lowest id. Absent instances are left to housekeeping,
// which gives them --stale-grace, and terminating ones, which may still
// serve while they drain, to their own drain and the housekeeper's budget.
func terminatedMember(members []Member, group []Instance) (Member, bool) {
	var found *Member
	for i := range members {
		m := &members[i]
		if st, _ := stateOf(group, m.Name); m.Name == "" || st != InstanceTerminated {
			continue
		}
		if found == nil || (m.IsLearner && !found.IsLearner) || (m.IsLearner == found.IsLearner && m.ID < found.ID) {
			found = m
		}
	}
	if found == nil {
		return Member{}, false
	}
	return *found, true
}

func decideWithoutLiveCluster(in StartupInputs) StartupPlan {
	if plan, ok := decideOnDeadOffer(in); ok {
		return plan
	}
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
	if plan, ok := outOfServiceHolds(in); ok {
		return plan
	}
	if plan, ok := ignoredPeersHold(in, members); ok {
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

// neverLedRevision is the revision of the data of a cluster that never
// had a leader: etcd's store starts at 1 and only a leader applies writes.
const neverLedRevision = 1

// bootstrapTerm is the term of the entries raft writes when a member of a
// new cluster first starts (its configuration, one entry per member); the
// first leader is elected at a later term and appends an entry of its own.
const bootstrapTerm = 1

// neverLed reports whether local data provably never saw a leader: its
// recorded revision says no write was applied, and its raft log ends in
// the bootstrap entries. The revision alone does not prove it: it is
// recorded only once the appliance saw its member run, and a member stopped
// just after its cluster formed (it may even have been the leader, with
// writes acknowledged) has none recorded. A log that could not be read
// proves nothing either.
func (l LocalData) neverLed() bool {
	return l.Revision <= neverLedRevision && l.Log.Known() && l.Log.Term <= bootstrapTerm
}

// decideOnDeadOffer gives up the offer this instance accepted once the
// offer is dead: without a quorum of its members its cluster never gets a
// leader, and while it is recorded the instance would start on it forever
// and hold every other plan of the group. ok is false while the offer may
// still form its cluster, or nothing can be said (the group is unknown,
// this instance is not in it).
//
// Only an offer whose cluster never had a leader is recorded (it is removed
// once a leader is seen), so its data holds no writes: it is set aside
// (never deleted). Data that may have had a leader (see neverLed) is
// kept, only the offer goes, and disaster recovery (§4.6) takes it from
// there.
func decideOnDeadOffer(in StartupInputs) (StartupPlan, bool) {
	o := in.Local.Offer
	if o == nil || !in.GroupKnown || !inGroup(in.Group, in.Self.ID) {
		return StartupPlan{}, false
	}
	gone, dead := o.Dead(in.Group)
	var why string
	switch names, view := slices.Sorted(slices.Values(o.Names())), GroupView(in.Group); {
	case dead:
		why = fmt.Sprintf("the bootstrap offer %s accepted before is dead: members %v of %v are gone from the group, fewer than a quorum remain",
			o.Token, gone, o.Names())
	case !slices.Equal(names, view):
		// The group changed since the offer: its other members refuse an
		// offer that is not their group, so a cluster it did not form yet
		// never will, and one it formed needs it no more (an offer matters
		// only until the first leader). Published, it would hold every
		// creation and recovery.
		why = fmt.Sprintf("the bootstrap offer %s accepted before lists %v, no longer the group %v", o.Token, names, view)
	default:
		return StartupPlan{}, false
	}
	if in.Local.Exists && !in.Local.neverLed() {
		return StartupPlan{Action: AbandonOffer, Offer: o,
			Reason: fmt.Sprintf("%s; the local data (revision %d, raft log at %d/%d) may have had a leader: keeping the data, dropping the offer",
				why, in.Local.Revision, in.Local.Log.Term, in.Local.Log.Index)}, true
	}
	return StartupPlan{Action: AbandonOffer, Offer: o, Wipe: in.Local.Exists,
		Reason: why + "; its cluster never had a leader: setting its data aside and planning again"}, true
}

// outOfServiceHolds waits while a listed instance out of service (stopped,
// stopping, Standby: not terminated) does not answer, or answers with data:
// it may hold, or still run, the cluster, and a cluster created beside it
// would split the clients or lose its writes. Such instances are not
// members of a new cluster, but a new cluster is created only past them.
func outOfServiceHolds(in StartupInputs) (StartupPlan, bool) {
	for _, inst := range in.Group {
		if inst.State.InGroup() || inst.State == InstanceTerminated {
			continue
		}
		a, ok := in.Peers[inst.ID]
		if !ok || !a.Reachable || a.State.InstanceID != inst.ID {
			return wait("no live cluster and instance %s (%s) is %s but listed: it may hold the cluster's data, and a cluster is created only when every listed instance answers",
				inst.ID, inst.Address, inst.State), true
		}
		if a.State.EtcdRunning || a.State.HasData {
			return wait("no live cluster, but instance %s (%s), %s, holds data: waiting for it", inst.ID, inst.Address, inst.State), true
		}
	}
	return StartupPlan{}, false
}

// ignoredPeersHold waits, saying which and why, while group instances
// answer but not as members of this instance's cluster: they run with
// another --tls or CA (PeerAnswer.Ignored). Every instance of a cluster
// must run with the same --tls; until they do, no cluster is created or
// joined across the difference. The wait is the one a silent peer causes,
// and it ends by itself once the configuration agrees: an instance
// restarted with the right --tls, or the disagreeing one replaced. Its
// reason names the remedy, for `status` and the operator.
func ignoredPeersHold(in StartupInputs, members []Instance) (StartupPlan, bool) {
	byWhy := map[IgnoredAnswer][]string{}
	for _, inst := range members {
		if a, ok := in.Peers[inst.ID]; ok && !a.Reachable && a.Ignored != "" {
			byWhy[a.Ignored] = append(byWhy[a.Ignored], inst.ID)
		}
	}
	if len(byWhy) == 0 {
		return StartupPlan{}, false
	}
	var parts []string
	for _, why := range slices.Sorted(maps.Keys(byWhy)) {
		if ids := byWhy[why]; len(ids) == 1 {
			parts = append(parts, fmt.Sprintf("peer %s %s", ids[0], why))
		} else {
			parts = append(parts, fmt.Sprintf("peers %s each %s", strings.Join(ids, ", "), why))
		}
	}
	return wait("no live cluster this instance can trust: %s; every instance of a cluster must run with the same --tls and CA: "+
		"waiting until they do (docs/operations.md, TLS)", strings.Join(parts, "; ")), true
}

// decideOnOffers accepts the one live bootstrap offer that lists this
// instance, once it checked the offer against what it computes itself: it
// comes from the seeder of the agreed group, lists exactly that group, and
// each member at its own address (§4.8). Dead offers are ignored: they never
// form a cluster, and the group bootstraps anew once their holders gave
// them up.
func decideOnOffers(in StartupInputs, members []Instance) (StartupPlan, bool) {
	var offers []*BootstrapOffer
	// from holds, per offer, the instances that publish it: the seeder and
	// those that accepted it.
	var from [][]string
	for _, inst := range members {
		a, ok := in.Peers[inst.ID]
		if !ok || !a.Reachable || a.State.InstanceID != inst.ID || a.State.Offer == nil {
			continue
		}
		if _, dead := a.State.Offer.Dead(in.Group); dead {
			continue
		}
		i := slices.IndexFunc(offers, func(o *BootstrapOffer) bool { return o.Token == a.State.Offer.Token })
		if i < 0 {
			offers = append(offers, a.State.Offer)
			from = append(from, nil)
			i = len(offers) - 1
		}
		from[i] = append(from[i], inst.ID)
	}
	switch {
	case len(offers) == 0:
		return StartupPlan{}, false
	case len(offers) > 1:
		var all []string
		for _, f := range from {
			all = append(all, f[0])
		}
		return wait("conflicting bootstrap offers from %v: accepting none", all), true
	case !offers[0].Lists(in.Self):
		return wait("a cluster is being created by %s without this instance; joining once it is live", from[0][0]), true
	}
	offer, publishers := offers[0], from[0]
	view := GroupView(in.Group)
	seeder := creationSeeder(view)
	if mismatch := offerMismatch(in.Group, offer, view, seeder, publishers); mismatch != "" {
		return wait("not accepting the bootstrap offer %s published by %v: %s", offer.Token, publishers, mismatch), true
	}
	return StartupPlan{Action: BootstrapMember, Offer: offer, Seeder: seeder,
		Reason: fmt.Sprintf("%s, the seeder of the group, offers to create the cluster with this instance among %d members", seeder, len(offer.Members))}, true
}

// creationSeeder is the seeder that may have created an offer for the
// group view: a seeder offers only when no instance has data, so it chose
// itself by Seeder over answers at revision 0. The revisions published
// since (members that started etcd on the offer) must not move the choice.
func creationSeeder(view []string) string {
	var answers []PeerState
	for _, id := range view {
		answers = append(answers, PeerState{InstanceID: id})
	}
	return Seeder(answers)
}

// offerMismatch says why an offer is not the one this instance would
// accept, empty when it is: it must be published by the seeder, list
// exactly the group view, and each member's peer URL must be on the
// address the group lists for it.
func offerMismatch(group []Instance, o *BootstrapOffer, view []string, seeder string, publishers []string) string {
	if names := slices.Sorted(slices.Values(o.Names())); !slices.Equal(names, view) {
		return fmt.Sprintf("its members %v are not the group %v", names, view)
	}
	if !slices.Contains(publishers, seeder) {
		return fmt.Sprintf("the seeder of the group is %s, which does not publish it", seeder)
	}
	for _, m := range o.Members {
		for _, inst := range groupMembers(group) {
			if inst.ID == m.Name && hostOf(m.PeerURL) != inst.Address {
				return fmt.Sprintf("member %s's peer URL %q is not on its address %q", m.Name, m.PeerURL, inst.Address)
			}
		}
	}
	return ""
}

// Seeder picks the one instance allowed to create a cluster: the newest data
// (NewerData), ties broken by the lowest instance id.
func Seeder(answers []PeerState) string {
	if len(answers) == 0 {
		return ""
	}
	best := answers[0]
	for _, a := range answers[1:] {
		if NewerData(a, best) {
			best = a
		}
	}
	return best.InstanceID
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
	st, listed := stateOf(all, id)
	return listed && st.InGroup()
}

// stateOf is the state the group lists instance id in; listed is false
// when it does not list it.
func stateOf(group []Instance, id string) (st InstanceState, listed bool) {
	for _, inst := range group {
		if inst.ID == id {
			return inst.State, true
		}
	}
	return "", false
}

// Quorum is the number of voters needed for a majority of n voters.
func Quorum(n int) int { return n/2 + 1 }
