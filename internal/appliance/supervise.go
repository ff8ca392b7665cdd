package appliance

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// The supervision's cadence.
const (
	// watchInterval is how often the running member is looked at while
	// anything changes; steadyWatchInterval while it is steady (it
	// answers, has a leader, is a voter without alarms, stands in line for
	// the housekeeper role, and nothing changed for settleAfter). Every
	// look is a status request: 20 a minute while steady, SPEC §7's idle
	// budget being 60 for all the requests of an appliance. A steady
	// member learns of a change at once when it is an event (its etcd
	// exits; a key of the appliance changes: the membership lock a join,
	// a leave or a removal takes), within steadyWatchInterval otherwise
	// (its leader lost or changed, an alarm); which is shorter than
	// recoveryCheckAfter, so a loss is looked at as soon as before.
	watchInterval       = 250 * time.Millisecond
	steadyWatchInterval = 3 * time.Second
	settleAfter         = 10 * time.Second
	// Housekeeping runs every --reconcile-interval on top of the looks,
	// and every steadyHousekeepingEvery while the member is steady and
	// the last cycle found the cluster steady (cluster.Steady): such a
	// cycle adds to the one before only the members' health, the group
	// listing being as old as cluster.SteadyListEvery anyway.
	steadyHousekeepingEvery = 15 * time.Second
	// For settlingFor after a change, while the last cycle found the
	// cluster unsettled (a member not yet a healthy voter, one to remove),
	// housekeeping runs every settlingHousekeepingEvery: a just-promoted
	// member enters the records and rules as soon as it is healthy rather
	// than at the next --reconcile-interval. At most settlingFor /
	// settlingHousekeepingEvery more cycles (and group listings) a change.
	settlingFor               = 20 * time.Second
	settlingHousekeepingEvery = time.Second
	// A member without a leader for orphanAfter looks, every
	// orphanCheckEvery, whether a live cluster exists without it.
	orphanAfter      = 30 * time.Second
	orphanCheckEvery = 5 * time.Second
	// A member without a leader for recoveryCheckAfter looks, every
	// recoveryCheckEvery (between recoveryCheckMin and recoveryCheckMax),
	// whether the group decided that it recovers the cluster (§4.6): the
	// quorum is lost for good and its data is the newest.
	recoveryCheckAfter = 5 * time.Second
	recoveryCheckMin   = 2 * time.Second
	recoveryCheckMax   = 10 * time.Second
	// markerEvery bounds how often the marker's revision is refreshed.
	markerEvery = 10 * time.Second
)

// supervisor watches the running etcd member: it publishes its state,
// records its identity, campaigns for the housekeeper role and, while it
// holds it, hands the cycles to the housekeeper and the snapshotter. Its
// memory is that of one run of etcd.
type supervisor struct {
	*node
	starter     *starter
	housekeeper *housekeeper
	snapshots   *snapshotter
	// role is the run's candidacy for the housekeeper role.
	role *candidacy
	// facts gathers the cluster-level facts while etcd runs.
	facts *clusterWatch

	// The run's memory: when the marker was last written, when a leader
	// was last seen, when the leaderless checks last ran.
	lastMarker, lastLeader time.Time
	// lastPeerMove is when the member, moving its peers between
	// plaintext and TLS, last looked whether its turn came; peerMoveWhy
	// the reason it last gave for waiting.
	lastPeerMove time.Time
	peerMoveWhy  string
	// peerMismatchSince is since when the membership lists this member's
	// peer URL in another scheme than etcd serves (realignPeers).
	peerMismatchSince        time.Time
	lastRecovery, lastOrphan time.Time
	lastHousekeeping         time.Time
	// lastMembers is the membership at the last housekeeping cycle;
	// printedAt and printedIndex when, and at which raft index, it was
	// last read.
	lastMembers  string
	printedAt    time.Time
	printedIndex uint64
	// steady is the last look's judgement (isSteady); changedAt when it
	// last saw something change; seenLeader and seenTerm the leader it
	// saw and its term.
	steady     bool
	changedAt  time.Time
	seenLeader cluster.ID
	seenTerm   uint64
	// markerView is the membership the marker last recorded, read at the
	// raft index markerIndex; nil: not read this run.
	markerView  *recordedMembership
	markerIndex uint64
	// The leaderless checks' cadence.
	recoveryEvery, orphanEvery   time.Duration
	recoveryAfter, orphanedAfter time.Duration
}

// run watches the running etcd until it exits or ctx is done, and returns
// the etcd that ran last: proc, or the one a CA rotation restarted it as.
func (s *supervisor) run(ctx context.Context, proc etcdProcess) etcdProcess {
	defer func() {
		s.setReady(false)
		s.metrics.leader.Set(0)
		s.metrics.cluster.setState(stateStarting)
		s.setPeer(func(p *cluster.PeerState) { p.EtcdRunning, p.HasLeader = false, false })
	}()
	for {
		var again bool
		if proc, again = s.watch(ctx, proc); !again {
			return proc
		}
		s.log.Info("watching etcd again with a new client (restarted in turn, or a new trust bundle)")
	}
}

// watch is run's watch with one client of the local etcd, made with the
// trust bundle of the moment: it returns again when the bundle changed
// (a CA rotation), for a new client that trusts what members will serve.
func (s *supervisor) watch(ctx context.Context, proc etcdProcess) (_ etcdProcess, again bool) {
	c, err := s.dial([]string{s.clientURL()})
	if err != nil {
		s.log.Error("cannot watch the local etcd", "err", err)
		<-proc.Done()
		return proc, false
	}
	// Closed in the background: the client's lease keep-alives (the
	// housekeeper candidacy) wind down slowly against an etcd that is gone,
	// and a restart or a recovery must not wait for them.
	closeClient := sync.OnceValue(c.Close)
	defer func() { go closeClient() }()
	s.role = newCandidacy(s.node, c)
	defer s.role.end()
	// release lets go of the local etcd before a CA rotation restarts it:
	// etcd's graceful stop waits for the client's open streams (the
	// candidacy's lease keep-alive, the watch) up to its request timeout.
	release := func() {
		s.role.end()
		_ = closeClient()
	}
	// A snapshot in flight ends with the supervision, before its client
	// closes: it must not thin or verify for a member that stopped.
	snapCtx, stopSnap := context.WithCancel(ctx)
	defer func() {
		stopSnap()
		s.snapshots.wait()
	}()
	// The cluster facts are gathered beside the looks, whose cadence a
	// slow store listing or an unanswered probe must not hold up.
	factsCtx, stopFacts := context.WithCancel(ctx)
	factsDone := make(chan struct{})
	go func() {
		defer close(factsDone)
		s.facts.run(factsCtx, c)
	}()
	defer func() {
		stopFacts()
		<-factsDone
	}()
	// etcd runs: the plan that started it is applied. A member started on
	// its data serves nothing until it has a quorum, which after a loss it
	// never gets; "starting" would hold every recovery.
	s.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhaseRunning })
	s.lastMarker, s.lastLeader = time.Time{}, s.now()
	s.lastRecovery, s.lastOrphan = time.Time{}, time.Time{}
	s.steady, s.changedAt, s.seenLeader, s.seenTerm = false, s.now(), 0, 0
	s.markerView = nil
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	changes := c.Changes(watchCtx)
	// etcd's exit ends the supervision at once, whatever the cadence: the
	// restart never waits for a look.
	next := time.NewTimer(watchInterval)
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return proc, false
		case <-proc.Done():
			return proc, false
		case _, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			s.changedAt = s.now()
		case <-s.trustChanged():
			return proc, true
		case <-next.C:
		}
		if stop := s.look(ctx, snapCtx, c, proc); stop {
			return proc, false
		}
		if restarted, released := s.rollOutTrust(ctx, proc, release); released {
			// Watched again with a new client: this one is closed.
			return restarted, isRunning(restarted)
		}
		if restarted, released := s.movePeers(ctx, proc, release); released {
			return restarted, isRunning(restarted)
		}
		next.Reset(lookEvery(s.steady))
	}
}

// housekeepingEvery is the pause between housekeeping cycles: longer while
// the member and the last cycle's view of the cluster are steady, shorter
// for a while after a change (sinceChange ago) that the last cycle found
// unsettled.
func housekeepingEvery(reconcile time.Duration, memberSteady, clusterSteady bool, sinceChange time.Duration) time.Duration {
	switch {
	case memberSteady && clusterSteady:
		return max(reconcile, steadyHousekeepingEvery)
	case !clusterSteady && sinceChange < settlingFor:
		return min(reconcile, settlingHousekeepingEvery)
	}
	return reconcile
}

// lookEvery is the pause before the next look.
func lookEvery(steady bool) time.Duration {
	if steady {
		return steadyWatchInterval
	}
	return watchInterval
}

// steadiness is what a look judges steadiness on.
type steadiness struct {
	Now, ChangedAt time.Time
	// Answered: the local etcd answered the status request, Status.
	Answered bool
	Status   etcdStatus
	// InLine: the candidacy holds the housekeeper role or waits in line
	// for it (a learner never campaigns).
	InLine bool
}

// isSteady reports whether the member is steady: nothing about it changes
// and nothing changed for settleAfter, so that it can be looked at every
// steadyWatchInterval. It reads no clock and does no I/O.
func isSteady(in steadiness) bool {
	return in.Answered && in.Status.Leader != 0 && !in.Status.IsLearner && len(in.Status.Errors) == 0 &&
		in.InLine && in.Now.Sub(in.ChangedAt) >= settleAfter
}

// look is one look at the running member; it reports whether etcd was
// stopped for the appliance to plan again.
func (s *supervisor) look(ctx, snapCtx context.Context, c etcdAPI, proc etcdProcess) bool {
	st, err := c.Status(ctx, s.clientURL())
	if err != nil {
		s.steady = false
		s.changedAt = s.now()
		s.setReady(false)
		s.setPeer(func(p *cluster.PeerState) { p.HasLeader = false })
		s.log.Debug("local etcd not answering", "err", err)
		stop := s.leaderless(ctx, proc, s.peerState().ClusterID)
		s.metrics.cluster.setState(s.leaderlessState())
		return stop
	}
	st.Leader = leaderOfLocal(ctx, c, st, s.peerClientURLs())
	if st.Leader != s.seenLeader || st.RaftTerm != s.seenTerm {
		s.changedAt, s.seenLeader, s.seenTerm = s.now(), st.Leader, st.RaftTerm
	}
	// Judged before the housekeeping of this look, which runs at the
	// cadence of the last one's judgement.
	defer func() {
		s.steady = isSteady(steadiness{Now: s.now(), ChangedAt: s.changedAt, Answered: true, Status: st,
			InLine: s.role.inLine() || st.IsLearner})
	}()
	s.publish(st)
	s.refreshMarker(ctx, c, st)
	if s.realignPeers(proc) {
		return true
	}
	if st.Leader == 0 {
		s.metrics.leader.Set(0)
		stop := s.leaderless(ctx, proc, st.ClusterID)
		s.metrics.cluster.setState(s.leaderlessState())
		return stop
	}
	s.metrics.cluster.setState(stateServing)
	s.lastLeader = s.now()
	// A loss is over once there is a leader: the next one gets its full grace.
	s.starter.recovery.leaderSeen()
	if s.peerState().Offer != nil {
		// The cluster of the offer had a leader: it exists, and members
		// that did not start yet join it as a live cluster.
		if err := s.data.removeOffer(); err != nil {
			s.log.Warn("removing bootstrap offer", "err", err)
		} else {
			s.setPeer(func(p *cluster.PeerState) { p.Offer = nil })
		}
	}
	if st.Leads() {
		s.metrics.leader.Set(1)
	} else {
		s.metrics.leader.Set(0)
	}
	s.keepHouse(ctx, snapCtx, c, st)
	return false
}

// keepHouse runs housekeeping and snapshots while this appliance holds the
// housekeeper role: not where etcd leads, since etcd keeps leading while
// its appliance hangs, and then nothing would repair the membership.
func (s *supervisor) keepHouse(ctx, snapCtx context.Context, c etcdAPI, st etcdStatus) {
	held := s.role.held != nil
	t, taken := s.role.look(ctx, st, s.steady)
	if t == nil {
		if held {
			s.changedAt = s.now()
		}
		return
	}
	if taken {
		s.changedAt = s.now()
		s.housekeeper.reset()
		s.lastHousekeeping = time.Time{}
	}
	s.snapshots.ifDue(snapCtx, c, st.Revision)
	// A cycle every --reconcile-interval (steadyHousekeepingEvery while
	// all is steady, settlingHousekeepingEvery while a change settles),
	// and at once when the membership changed (a member added, promoted,
	// removed): the records and rules follow a replacement without waiting
	// for the tick.
	every := housekeepingEvery(s.cfg.ReconcileInterval, s.steady, s.housekeeper.steady, s.now().Sub(s.changedAt))
	if s.now().Sub(s.lastHousekeeping) < every {
		if !s.membershipChanged(ctx, c, st) {
			return
		}
		s.changedAt = s.now()
	}
	s.lastHousekeeping = s.now()
	if err := s.housekeeper.cycle(ctx, c, t); errors.Is(err, errRoleLost) {
		s.role.lost(err)
		s.changedAt = s.now()
	} else if err != nil {
		s.log.Debug("housekeeping skipped: the role could not be checked", "err", err)
	} else if s.housekeeper.changed || s.housekeeper.members == nil {
		// As the cycle left it (it promoted or removed, or read nothing).
		s.lastMembers = membershipPrint(ctx, c)
	} else {
		// Read after this look's status: at its raft index, or later.
		s.lastMembers = membershipPrintOf(s.housekeeper.members)
		s.printedAt, s.printedIndex = s.now(), st.RaftIndex
	}
}

// publish makes the member's status the instance's published state.
func (s *supervisor) publish(st etcdStatus) {
	s.setReady(len(st.Errors) == 0 && !st.IsLearner)
	s.setUnusable("")
	s.setPeer(func(p *cluster.PeerState) {
		p.Phase = cluster.PhaseRunning
		p.HasData = true
		p.ClusterID, p.MemberID = st.ClusterID, st.MemberID
		p.Revision = st.Revision
		p.EtcdVersion = st.Version
		p.HasLeader = st.Leader != 0
	})
}

// refreshMarker records the member's identity, revision and voters every
// markerEvery.
func (s *supervisor) refreshMarker(ctx context.Context, c etcdAPI, st etcdStatus) {
	now := s.now()
	if now.Sub(s.lastMarker) < markerEvery {
		return
	}
	m := marker{ClusterID: st.ClusterID, MemberID: st.MemberID, Name: s.self.ID, Revision: st.Revision, UpdatedAt: now}
	// The membership changes only with a raft entry: while the index
	// stands still, the one read before is still the member's.
	if s.markerView == nil || st.RaftIndex != s.markerIndex {
		view, ok := s.localMembership(ctx, c)
		if ok {
			s.markerView, s.markerIndex = &view, st.RaftIndex
		}
		m.Voters, m.Endpoints, m.PeerURL = view.voters, view.endpoints, view.peerURL
	} else {
		m.Voters, m.Endpoints, m.PeerURL = s.markerView.voters, s.markerView.endpoints, s.markerView.peerURL
	}
	s.setPeer(func(p *cluster.PeerState) { p.Voters = m.Voters })
	if err := s.data.writeMarker(m); err != nil {
		s.log.Warn("recording member identity", "err", err)
		return
	}
	if s.lastMarker.IsZero() {
		s.log.Info("member running", "member", m.MemberID, "cluster", m.ClusterID, "revision", m.Revision)
	}
	s.lastMarker = now
}

// recordedMembership is what the marker records of the membership.
type recordedMembership struct {
	voters, endpoints []string
	// peerURL is this member's own peer URL as recorded: the membership's
	// when etcd serves peers in its scheme. listedPeerURL is the
	// membership's, as the member last listed it.
	peerURL, listedPeerURL string
}

// localMembership lists the voters of the local member's cluster as the
// member itself knows them (a serializable read: it works without quorum),
// started or not: members of a bootstrap are named before they start; and
// the client URLs of its members. On failure it returns what was recorded
// before, and false.
func (s *supervisor) localMembership(ctx context.Context, c etcdAPI) (recordedMembership, bool) {
	recorded, _, _ := s.data.readMarker()
	view, err := c.LocalMembers(ctx)
	if err != nil {
		return recordedMembership{voters: recorded.Voters, endpoints: recorded.Endpoints, peerURL: recorded.PeerURL}, false
	}
	out := recordedMembership{voters: cluster.VoterNames(view.Members), endpoints: clientURLs(view.Members), peerURL: recorded.PeerURL}
	if i := slices.IndexFunc(view.Members, func(m cluster.Member) bool { return m.Name == s.self.ID }); i >= 0 &&
		len(view.Members[i].PeerURLs) > 0 {
		out.listedPeerURL = view.Members[i].PeerURLs[0]
		// Another scheme than etcd serves is either not applied here
		// yet (a switch just made) or a switch half done: realignPeers
		// decides, and records it when it acts.
		if strings.HasPrefix(out.listedPeerURL, s.peerScheme()+"://") || s.tls == nil {
			out.peerURL = out.listedPeerURL
		}
	}
	if out.voters == nil {
		out.voters = recorded.Voters
	}
	if out.endpoints == nil {
		out.endpoints = recorded.Endpoints
	}
	return out, true
}

// leaderless runs the looks a member without a leader takes at the world,
// whether its etcd answers or not (a member started on its data does not
// serve until it has a quorum): whether it must recover the cluster
// (§4.6), and whether a live cluster answers without it. It reports
// whether it stopped etcd for the appliance to plan again.
func (s *supervisor) leaderless(ctx context.Context, proc etcdProcess, own cluster.ID) bool {
	now := s.now()
	stop := false
	if now.Sub(s.lastLeader) >= s.recoveryAfter && now.Sub(s.lastRecovery) >= s.recoveryEvery {
		s.lastRecovery = now
		stop = s.mustRecover(ctx)
	}
	if !stop && now.Sub(s.lastLeader) >= s.orphanedAfter && now.Sub(s.lastOrphan) >= s.orphanEvery {
		s.lastOrphan = now
		if s.orphaned(ctx, own) {
			s.log.Warn("etcd has had no leader while a live cluster answers without this member: stopping it to plan again",
				"no_leader_for", now.Sub(s.lastLeader).Round(time.Second))
			stop = true
		}
	}
	if stop {
		if err := proc.Stop(s.cfg.StopTimeout); err != nil {
			s.log.Warn("stopping etcd", "err", err)
		}
	}
	return stop
}

// leaderlessState is the cluster's state as a member without a leader
// sees it: the quorum lost for good once its recovery check judged so.
func (s *supervisor) leaderlessState() clusterState {
	if !s.starter.recovery.lostSince.IsZero() {
		return stateQuorumLost
	}
	return stateLeaderless
}

// recoveryCheckEvery is how often a member without a leader looks for a
// recovery: often enough to recover soon after --dr-grace, seldom enough
// that a long partition costs few group and store listings.
func recoveryCheckEvery(drGrace time.Duration) time.Duration {
	return min(max(drGrace/10, recoveryCheckMin), recoveryCheckMax)
}

// mustRecover reports whether the startup plan, on fresh inputs, has this
// instance recover or restore the cluster, or give up the dead bootstrap
// offer it runs on: its running etcd, without a leader, must then stop so
// that the plan can be applied.
func (s *supervisor) mustRecover(ctx context.Context) bool {
	in, err := s.starter.gather(ctx)
	if err != nil {
		return false
	}
	plan := cluster.DecideStartup(in)
	// A member running on a dead bootstrap offer never gets a leader: it
	// stops as well, to give the offer up.
	if plan.Action != cluster.Recover && plan.Action != cluster.Restore && plan.Action != cluster.AbandonOffer {
		s.log.Debug("no leader; no recovery by this instance", "plan", plan.Action, "reason", plan.Reason)
		return false
	}
	s.log.Warn("stopping etcd to plan again", "action", plan.Action, "reason", plan.Reason)
	return true
}

// orphaned reports whether a live cluster answers that is not this
// member's: another cluster id, or one that no longer lists it. Such a
// member waits for a leader forever (its peers moved on), so it must plan
// again, which rejoins it.
func (s *supervisor) orphaned(ctx context.Context, own cluster.ID) bool {
	group, err := s.groups.list(ctx, 0)
	if err != nil {
		return false
	}
	w := s.starter.world
	view := w.findLiveCluster(ctx, w.askPeers(ctx, group))
	if view == nil {
		return false
	}
	if _, listed := view.MemberByName(s.self.ID); listed && view.ClusterID == own {
		return false
	}
	return true
}

// membershipChanged reports whether the membership differs from the last
// housekeeping cycle's. A membership change is a raft entry, so it is read
// only when the raft index moved, and at most once a second: an idle
// cluster costs no request.
func (s *supervisor) membershipChanged(ctx context.Context, c etcdAPI, st etcdStatus) bool {
	if st.RaftIndex == s.printedIndex || s.now().Sub(s.printedAt) < time.Second {
		return false
	}
	s.printedAt, s.printedIndex = s.now(), st.RaftIndex
	members := membershipPrint(ctx, c)
	return members != "" && members != s.lastMembers
}

// membershipPrint is the local member's view of the membership (a
// serializable read: cheap, no quorum needed), as a string that changes
// with any member added, removed, promoted or started; "" when it can't
// be read.
func membershipPrint(ctx context.Context, c etcdAPI) string {
	view, err := c.LocalMembers(ctx)
	if err != nil {
		return ""
	}
	return membershipPrintOf(view.Members)
}

// membershipPrintOf is membershipPrint of a member list read before.
func membershipPrintOf(members []cluster.Member) string {
	if members == nil {
		return ""
	}
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b cluster.Member) int { return cmp.Compare(a.ID, b.ID) })
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "%s/%s/%t/%s;", m.ID, m.Name, m.IsLearner, strings.Join(m.ClientURLs, ","))
	}
	return b.String()
}
