package appliance

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/config"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
)

// housekeepingMemory carries the clocks of DecideHousekeeping between cycles.
type housekeepingMemory struct {
	firstSeen   map[cluster.ID]time.Time
	absentSince map[cluster.ID]time.Time
	lastRun     time.Time
	held        map[string]bool
	// gone are the instances the provider confirmed terminated.
	gone map[string]bool
}

// How often the running member is looked at; housekeeping runs every
// --reconcile-interval on top of that.
const watchInterval = 250 * time.Millisecond

// A member without a leader for orphanAfter looks, every orphanCheckEvery,
// whether a live cluster exists without it.
const (
	orphanAfter      = 30 * time.Second
	orphanCheckEvery = 5 * time.Second
)

// A member without a leader for recoveryCheckAfter looks, every
// recoveryCheckEvery (between recoveryCheckMin and recoveryCheckMax),
// whether the group decided that it recovers the cluster (§4.6): the
// quorum is lost for good and its data is the newest.
const (
	recoveryCheckAfter = 5 * time.Second
	recoveryCheckMin   = 2 * time.Second
	recoveryCheckMax   = 10 * time.Second
)

// leaveTimeout bounds leaving the cluster on shutdown.
const leaveTimeout = 15 * time.Second

// removeLockWait bounds how long housekeeping waits for the membership lock;
// the next cycle tries again.
const removeLockWait = 2 * time.Second

// markerEvery bounds how often the marker's revision is refreshed.
const markerEvery = 10 * time.Second

// supervise watches the running etcd until it exits or ctx is done: it
// records the member's identity once it runs, publishes its state, and does
// the housekeeping while it is the leader.
func (a *Appliance) supervise(ctx context.Context, proc *etcd.Process) {
	defer func() {
		a.setReady(false)
		a.metrics.leader.Set(0)
		a.setPeer(func(p *cluster.PeerState) { p.EtcdRunning, p.HasLeader = false, false })
	}()
	c, err := newClient([]string{a.clientURL()})
	if err != nil {
		a.log.Error("cannot watch the local etcd", "err", err)
		<-proc.Done()
		return
	}
	defer c.Close()
	// A snapshot in flight ends with the supervision, before its client
	// closes: it must not thin or verify for a member that stopped leading.
	snapCtx, stopSnap := context.WithCancel(ctx)
	defer func() {
		stopSnap()
		a.backup.taking.Wait()
	}()
	// etcd runs: the plan that started it is applied. A member started on
	// its data serves nothing until it has a quorum, which after a loss it
	// never gets; "starting" would hold every recovery.
	a.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhaseRunning })
	tick := time.NewTicker(watchInterval)
	defer tick.Stop()
	var lastMarker time.Time
	lastLeader := a.now()
	leaderless := leaderlessChecks{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-proc.Done():
			return
		case <-tick.C:
		}
		sctx, cancel := context.WithTimeout(ctx, statusTimeout)
		st, err := c.Status(sctx, a.clientURL())
		cancel()
		if err != nil {
			a.setReady(false)
			a.setPeer(func(p *cluster.PeerState) { p.HasLeader = false })
			a.log.Debug("local etcd not answering", "err", err)
			if leaderless.due(ctx, a, proc, lastLeader, a.peerState().ClusterID) {
				return
			}
			continue
		}
		a.setReady(len(st.Errors) == 0 && !st.IsLearner)
		a.unusable = ""
		a.setPeer(func(p *cluster.PeerState) {
			p.Phase = cluster.PhaseRunning
			p.HasData = true
			p.ClusterID, p.MemberID = cluster.ID(st.Header.ClusterId), cluster.ID(st.Header.MemberId)
			p.Revision = st.Header.Revision
			p.EtcdVersion = st.Version
			p.HasLeader = st.Leader != 0
		})
		if now := a.now(); now.Sub(lastMarker) >= markerEvery {
			m := marker{ClusterID: cluster.ID(st.Header.ClusterId), MemberID: cluster.ID(st.Header.MemberId),
				Name: a.self.ID, Revision: st.Header.Revision, UpdatedAt: now, Voters: a.localVoters(ctx, c)}
			a.setPeer(func(p *cluster.PeerState) { p.Voters = m.Voters })
			if err := a.data.writeMarker(m); err != nil {
				a.log.Warn("recording member identity", "err", err)
			} else {
				if lastMarker.IsZero() {
					a.log.Info("member running", "member", m.MemberID, "cluster", m.ClusterID, "revision", m.Revision)
				}
				lastMarker = now
			}
		}
		if st.Leader != 0 && a.peerState().Offer != nil {
			// The cluster of the offer had a leader: it exists, and members
			// that did not start yet join it as a live cluster.
			if err := a.data.removeOffer(); err != nil {
				a.log.Warn("removing bootstrap offer", "err", err)
			} else {
				a.setPeer(func(p *cluster.PeerState) { p.Offer = nil })
			}
		}
		if st.Leader != 0 {
			lastLeader = a.now()
			// A loss is over once there is a leader: the next one gets
			// its full grace.
			a.dr.lostSince = time.Time{}
		} else if leaderless.due(ctx, a, proc, lastLeader, cluster.ID(st.Header.ClusterId)) {
			return
		}
		leader := st.Leader == st.Header.MemberId
		if leader {
			a.metrics.leader.Set(1)
		} else {
			a.metrics.leader.Set(0)
		}
		if leader {
			a.snapshotIfDue(snapCtx, c, st.Header.Revision)
		}
		if leader && a.now().Sub(a.hk.lastRun) >= a.cfg.ReconcileInterval {
			a.hk.lastRun = a.now()
			a.housekeeping(ctx, c)
		}
	}
}

// leaderlessChecks are the looks a member without a leader takes at the
// world, whether its etcd answers or not (a member started on its data
// does not serve until it has a quorum): whether it must recover the
// cluster (§4.6), and whether a live cluster answers without it.
type leaderlessChecks struct {
	lastRecovery, lastOrphan time.Time
}

// due runs the checks that are due and reports whether etcd was stopped
// for the appliance to plan again.
func (l *leaderlessChecks) due(ctx context.Context, a *Appliance, proc *etcd.Process, lastLeader time.Time, own cluster.ID) bool {
	now := a.now()
	stop := false
	if now.Sub(lastLeader) >= recoveryCheckAfter && now.Sub(l.lastRecovery) >= a.recoveryCheckEvery() {
		l.lastRecovery = now
		stop = a.mustRecover(ctx)
	}
	if !stop && now.Sub(lastLeader) >= orphanAfter && now.Sub(l.lastOrphan) >= orphanCheckEvery {
		l.lastOrphan = now
		if a.orphaned(ctx, own) {
			a.log.Warn("etcd has had no leader while a live cluster answers without this member: stopping it to plan again",
				"no_leader_for", now.Sub(lastLeader).Round(time.Second))
			stop = true
		}
	}
	if stop {
		if err := proc.Stop(a.cfg.StopTimeout); err != nil {
			a.log.Warn("stopping etcd", "err", err)
		}
	}
	return stop
}

// recoveryCheckEvery is how often a member without a leader looks for a
// recovery: often enough to recover soon after --dr-grace, seldom enough
// that a long partition costs few group and store listings.
func (a *Appliance) recoveryCheckEvery() time.Duration {
	return min(max(a.cfg.DRGrace/10, recoveryCheckMin), recoveryCheckMax)
}

// orphaned reports whether a live cluster answers that is not this
// member's: another cluster id, or one that no longer lists it. Such a
// member waits for a leader forever (its peers moved on), so it must plan
// again, which rejoins it.
func (a *Appliance) orphaned(ctx context.Context, own cluster.ID) bool {
	group, err := a.listGroup(ctx, 0)
	if err != nil {
		return false
	}
	view := a.findLiveCluster(ctx, a.askPeers(ctx, group))
	if view == nil {
		return false
	}
	if _, listed := view.MemberByName(a.self.ID); listed && view.ClusterID == own {
		return false
	}
	return true
}

// durations matches the durations in a held removal's reason.
var durations = regexp.MustCompile(`[0-9.]+(ns|µs|ms|s|m|h)`)

// housekeeping is one leader cycle of §4.4: gather, decide, apply.
func (a *Appliance) housekeeping(ctx context.Context, c *clientv3.Client) {
	a.metrics.housekeeping.Inc()
	view, err := clusterView(ctx, c)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("housekeeping: no member list", "err", err)
		}
		return
	}
	health := memberHealth(ctx, c, view.Members)
	var maxAge time.Duration
	if a.steady(view.Members, health) {
		maxAge = steadyListEvery
	}
	group, gerr := a.listGroup(ctx, maxAge)
	if gerr == nil {
		group = a.withConfirmedTerminations(ctx, group, view.Members)
	}
	healthy := map[cluster.ID]bool{}
	roles := map[string]float64{cluster.RoleVoter: 0, cluster.RoleLearner: 0, cluster.RoleUnstarted: 0}
	for _, m := range view.Members {
		healthy[m.ID] = health[m.ID].Healthy
		roles[role(m)]++
	}
	for r, n := range roles {
		a.metrics.members.WithLabelValues(r).Set(n)
	}
	a.publishDNS(ctx, health)
	a.publishFirewall(ctx, health, group, gerr == nil)
	if gerr != nil {
		a.log.Warn("housekeeping: group listing failed", "err", gerr)
	}
	in := cluster.HousekeepingInputs{
		Now:            a.now(),
		Self:           a.self.ID,
		GroupKnown:     gerr == nil,
		Group:          group,
		Members:        view.Members,
		Healthy:        healthy,
		FirstSeen:      a.hk.firstSeen,
		AbsentSince:    a.hk.absentSince,
		StaleGrace:     a.cfg.StaleGrace,
		LearnerTimeout: a.cfg.LearnerTimeout,
	}
	plan := cluster.DecideHousekeeping(in)
	a.hk.firstSeen, a.hk.absentSince = plan.FirstSeen, plan.AbsentSince
	in.FirstSeen, in.AbsentSince = plan.FirstSeen, plan.AbsentSince

	held := map[string]bool{}
	for _, h := range plan.Held {
		// Once per situation: the reasons carry growing durations.
		key := durations.ReplaceAllString(h, "")
		held[key] = true
		if !a.hk.held[key] {
			a.log.Warn("housekeeping: removal held", "reason", h)
		}
	}
	a.hk.held = held

	for _, id := range plan.Promote {
		pctx, cancel := context.WithTimeout(ctx, requestTimout)
		_, err := c.MemberPromote(pctx, uint64(id))
		cancel()
		if err != nil {
			a.log.Debug("learner not promoted yet", "member", id, "err", err)
			continue
		}
		a.log.Info("learner promoted", "member", id, "reason", "in sync with the leader")
	}
	if plan.Remove != nil {
		a.removeStale(ctx, c, in, plan.Remove)
	}
}

// removeStale removes a stale member under the membership lock, after
// deciding again on a fresh member list and health: a join or a leave may
// have changed the membership since the plan was made.
func (a *Appliance) removeStale(ctx context.Context, c *clientv3.Client, in cluster.HousekeepingInputs, r *cluster.Removal) {
	unlock, err := a.lockMembership(ctx, c, removeLockWait)
	if err != nil {
		a.log.Info("stale member removal postponed", "member", r.Member.ID, "name", r.Member.Name, "err", err)
		return
	}
	defer unlock()
	view, err := clusterView(ctx, c)
	if err != nil {
		a.log.Warn("stale member removal postponed", "member", r.Member.ID, "err", err)
		return
	}
	health := memberHealth(ctx, c, view.Members)
	in.Members, in.Healthy = view.Members, map[cluster.ID]bool{}
	for _, m := range view.Members {
		in.Healthy[m.ID] = health[m.ID].Healthy
	}
	again := cluster.DecideHousekeeping(in)
	if again.Remove == nil || again.Remove.Member.ID != r.Member.ID {
		a.log.Info("stale member removal dropped: the membership changed", "member", r.Member.ID, "name", r.Member.Name)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimout)
	_, err = c.MemberRemove(rctx, uint64(r.Member.ID))
	cancel()
	if err != nil {
		a.log.Warn("removing stale member failed", "member", r.Member.ID, "name", r.Member.Name, "err", err)
		return
	}
	a.metrics.removals.Inc()
	delete(a.hk.absentSince, r.Member.ID)
	a.log.Info("stale member removed", "member", r.Member.ID, "name", r.Member.Name, "reason", r.Reason)
}

// shutdown stops etcd when the appliance is told to stop, leaving the
// cluster first when configured to.
func (a *Appliance) shutdown(proc *etcd.Process) {
	a.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhaseLeaving })
	left := false
	if a.cfg.LeaveOnShutdown == config.LeaveAlways {
		ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
		if err := a.leave(ctx, "--leave-on-shutdown=always"); err != nil {
			a.log.Warn("not leaving the cluster", "err", err)
		} else {
			left = true
		}
		cancel()
	}
	if err := proc.Stop(a.cfg.StopTimeout); err != nil {
		a.log.Warn("stopping etcd", "err", err)
	}
	a.setPeer(func(p *cluster.PeerState) { p.EtcdRunning, p.Phase = false, cluster.PhaseStopped })
	a.log.Info("etcd stopped", "left_cluster", left)
}

// Why leave refuses.
var (
	errLastMember = errors.New("leaving would destroy the cluster")
	errNotMember  = errors.New("this instance is not a member")
)

// leave removes this member from the cluster, handing leadership over first.
// It refuses when removing this member would break the quorum safety rule or
// when this is the last member. The membership lock is taken through the
// other members, since this member's etcd goes away with the removal.
func (a *Appliance) leave(ctx context.Context, reason string) error {
	local, err := newClient([]string{a.clientURL()})
	if err != nil {
		return err
	}
	defer local.Close()
	view, err := clusterView(ctx, local)
	if err != nil {
		return err
	}
	var others []string
	for _, m := range view.Members {
		if m.Name != a.self.ID {
			others = append(others, m.ClientURLs...)
		}
	}
	if len(others) == 0 {
		return fmt.Errorf("this is the last member: %w", errLastMember)
	}
	rest, err := newClient(others)
	if err != nil {
		return err
	}
	defer rest.Close()
	unlock, err := a.lockMembership(ctx, rest, leaveTimeout/2)
	if err != nil {
		return err
	}
	defer unlock()

	if view, err = clusterView(ctx, rest); err != nil {
		return err
	}
	me, ok := view.MemberByName(a.self.ID)
	if !ok {
		return errNotMember
	}
	health := memberHealth(ctx, rest, view.Members)
	var transferee cluster.ID
	remaining, healthy := 0, 0
	for _, m := range view.Members {
		if m.ID == me.ID || m.IsLearner || !m.Started() {
			continue
		}
		remaining++
		if health[m.ID].Healthy {
			healthy++
			if transferee == 0 {
				transferee = m.ID
			}
		}
	}
	if !me.IsLearner && remaining == 0 {
		return fmt.Errorf("member %s is the last voter: %w", me.ID, errLastMember)
	}
	if !me.IsLearner && healthy < cluster.Quorum(remaining) {
		return fmt.Errorf("only %d of the %d remaining voters are healthy, below their quorum of %d", healthy, remaining, cluster.Quorum(remaining))
	}
	if health[me.ID].Leader && transferee != 0 {
		mctx, cancel := context.WithTimeout(ctx, requestTimout)
		_, err := local.MoveLeader(mctx, uint64(transferee))
		cancel()
		if err != nil {
			a.log.Warn("moving leadership before leaving", "to", transferee, "err", err)
		} else {
			a.log.Info("leadership moved before leaving", "to", transferee)
		}
	}
	// etcd's --strict-reconfig-check refuses a removal until the leader has
	// been connected to a quorum for 5 s, as right after a leader change:
	// try again until the leave deadline.
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimout)
		_, err := rest.MemberRemove(rctx, uint64(me.ID))
		cancel()
		if err == nil {
			break
		}
		if errors.Is(err, rpctypes.ErrMemberNotFound) {
			// The leader removed it meanwhile: its instance is terminating.
			return errNotMember
		}
		if !errors.Is(err, rpctypes.ErrUnhealthy) {
			return fmt.Errorf("removing member %s: %w", me.ID, err)
		}
		a.log.Info("removal refused until the cluster is stable; retrying", "member", me.ID, "err", err)
		if !sleep(ctx, 500*time.Millisecond) {
			return fmt.Errorf("removing member %s: %w", me.ID, err)
		}
	}
	a.metrics.removals.Inc()
	a.log.Info("left the cluster", "member", me.ID, "reason", reason)
	return nil
}
