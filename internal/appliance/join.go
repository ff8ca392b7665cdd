package appliance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// errPlanChanged: the plan decided again under the membership lock is not
// the one being applied; the startup loop plans again.
var errPlanChanged = errors.New("the plan changed under the membership lock")

// join makes this instance a member of the live cluster (Join, Rejoin,
// ReplaceStale, ResumeJoin): under the cluster-wide membership lock it
// decides again on fresh inputs, removes the member the plan names, adds
// itself as a learner, starts etcd and waits for its promotion.
func (s *starter) join(ctx context.Context, in cluster.StartupInputs, plan cluster.StartupPlan) (etcdProcess, error) {
	c, err := s.dial(clientURLsIn(in.Cluster.Members, s.peerScheme()))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	unlock, err := c.LockMembership(ctx, s.lockWait)
	if err != nil {
		return nil, err
	}
	defer unlock()

	view, group, err := s.recheck(ctx, c, in, plan)
	if err != nil {
		return nil, err
	}
	// Before any change: a refused join leaves the cluster as it was, the
	// member it would replace included.
	vs, restorePoint, err := s.versionGate(ctx, c)
	if err != nil {
		return nil, err
	}
	if restorePoint {
		if err := s.snapshots.restorePoint(ctx, c, vs.Cluster, s.etcdVersion); err != nil {
			return nil, err
		}
	}
	if plan.RemoveMember != 0 {
		if err := s.removeOld(ctx, c, view, group, plan); err != nil {
			return nil, err
		}
	}
	if plan.Wipe {
		if err := s.wipe(view.ClusterID, plan.Reason); err != nil {
			return nil, err
		}
	}
	s.joinPeerScheme(view.Members)
	id, learner, ms, err := s.member(ctx, c, view, plan)
	if err != nil {
		return nil, err
	}
	// Record whose data etcd is about to create, so that a crash before the
	// member first answers does not leave data of unknown identity.
	launch := cluster.LaunchJoin(ms, s.self.ID, s.peerURL(), s.clusterName())
	if err := s.data.writeMarker(marker{ClusterID: view.ClusterID, MemberID: id, Name: s.self.ID, UpdatedAt: s.now(),
		Voters: launch.Voters, PeerURL: s.peerURL()}); err != nil {
		return nil, err
	}
	proc, err := s.startJoined(ctx, c, id, launch)
	if err != nil || !learner {
		// Not a learner: a voter of the initial membership that had not
		// started yet.
		return proc, err
	}
	if err := s.awaitPromotion(ctx, c, proc, id); err != nil {
		// etcd runs as a learner; the leader's housekeeping promotes it later.
		s.log.Warn("not promoted yet; the leader will promote when in sync", "member", id, "err", err)
	}
	return proc, nil
}

// recheck decides again on a fresh member list and group listing: the
// world may have changed while the lock was awaited.
func (s *starter) recheck(ctx context.Context, c etcdAPI, in cluster.StartupInputs, plan cluster.StartupPlan) (*cluster.ClusterView, []cluster.Instance, error) {
	view, err := c.Members(ctx)
	if err != nil {
		return nil, nil, err
	}
	in.Cluster = view
	group, gerr := s.groups.list(ctx, startupListEvery)
	if gerr == nil {
		group = s.terminations.withConfirmed(ctx, group, view.Members)
	}
	in.GroupKnown, in.Group = gerr == nil, group
	if in.Local, err = s.localInputs(); err != nil {
		return nil, nil, err
	}
	if again := cluster.DecideStartup(in); again.Action != plan.Action || again.RemoveMember != plan.RemoveMember {
		s.log.Info("plan changed under the membership lock", "was", plan.Action, "now", again.Action, "reason", again.Reason)
		return nil, nil, errPlanChanged
	}
	return view, group, nil
}

// versionGate refuses to join a cluster whose etcd this instance's could
// not run with, or would skip a minor of, or whose members of the old
// minor run a patch too old for the upgrade (gateVersion). A refusal is published as what the instance waits for,
// and as a metric, until a join passes the gate. restorePoint says that
// this instance is the first of a newer minor.
func (s *starter) versionGate(ctx context.Context, c etcdAPI) (vs clusterVersions, restorePoint bool, err error) {
	vs, err = c.Versions(ctx)
	if err != nil {
		return vs, false, fmt.Errorf("version gate: %w", err)
	}
	restorePoint, err = s.gateVersion(ctx, c, vs, s.etcdVersion)
	if err != nil && !errors.Is(err, cluster.ErrVersionRefused) {
		return vs, false, err
	}
	if err != nil {
		if why := "not joining: " + err.Error(); why != s.versionRefusal {
			s.log.Warn("the version gate refuses to join the cluster", "err", err, "etcd_version", s.etcdVersion,
				"cluster_version", vs.Cluster, "downgrade_target", vs.DowngradeTarget)
		}
		s.versionRefusal = "not joining: " + err.Error()
		s.metrics.versionRefused.Set(1)
		s.setWaiting(s.versionRefusal, s.unanswered)
		return vs, false, err
	}
	if s.versionRefusal != "" {
		s.log.Info("the version gate lets this instance join now", "etcd_version", s.etcdVersion,
			"cluster_version", vs.Cluster, "downgrade_target", vs.DowngradeTarget)
	}
	s.versionRefusal = ""
	s.metrics.versionRefused.Set(0)
	return vs, restorePoint, nil
}

// removeOld removes the member the plan replaces (this instance's old
// member, a stale one on its address, or one whose instance is terminated),
// when the quorum rule allows it.
func (s *starter) removeOld(ctx context.Context, c etcdAPI, view *cluster.ClusterView, group []cluster.Instance, plan cluster.StartupPlan) error {
	healthy := healthyByID(memberHealth(ctx, c, view.Members, group))
	if h := cluster.CheckRemoval(view.Members, healthy, plan.RemoveMember); h != nil {
		return fmt.Errorf("removing member %s before joining: %w", plan.RemoveMember, h)
	}
	if err := c.Remove(ctx, plan.RemoveMember); err != nil {
		return fmt.Errorf("removing member %s: %w", plan.RemoveMember, err)
	}
	s.metrics.removals.Inc()
	s.log.Info("member removed before joining", "member", plan.RemoveMember, "reason", plan.Reason)
	return nil
}

// member is this instance's member of the cluster: the one added for it
// and never started (ResumeJoin), or a learner added now. It returns the
// members after the change.
func (s *starter) member(ctx context.Context, c etcdAPI, view *cluster.ClusterView, plan cluster.StartupPlan) (id cluster.ID, learner bool, ms []cluster.Member, err error) {
	if plan.Action == cluster.ResumeJoin {
		for _, m := range view.Members {
			if m.HasPeerURL(s.peerURL()) {
				id, learner = m.ID, m.IsLearner
			}
		}
		return id, learner, view.Members, nil
	}
	id, ms, err = c.AddLearner(ctx, s.peerURL())
	if err != nil {
		return 0, false, nil, fmt.Errorf("adding %s as a learner: %w", s.peerURL(), err)
	}
	s.log.Info("added as learner", "member", id, "cluster", view.ClusterID)
	return id, true, ms, nil
}

// startJoined starts etcd for the joined member and makes sure it serves:
// etcd sends a joiner the leader's snapshot and, applying it, resets its
// peer connections; the member's first request to publish itself can be
// lost with them, and etcd retries it only after its 7 s request timeout.
// A restart on the data it has by then publishes at once.
func (s *starter) startJoined(ctx context.Context, c etcdAPI, id cluster.ID, launch cluster.Launch) (etcdProcess, error) {
	proc, err := s.launcher.launch(ctx, launch)
	if err != nil {
		return nil, err
	}
	if _, err := awaitStatus(ctx, c, s.clientURL(), proc, s.publishGrace, func(etcdStatus) bool { return true }); err == nil {
		return proc, nil
	}
	s.log.Info("joined etcd does not serve yet; restarting it on its data to publish again", "member", id, "after", s.publishGrace)
	if err := proc.Stop(s.cfg.StopTimeout); err != nil {
		s.log.Warn("stopping etcd", "err", err)
	}
	return s.launcher.launch(ctx, launch)
}

// awaitStatus polls the status of the etcd proc at url through c until
// done accepts it, and returns that status. It fails when etcd exits or
// within does not suffice; the error then carries the last status error.
func awaitStatus(ctx context.Context, c etcdAPI, url string, proc etcdProcess, within time.Duration,
	done func(etcdStatus) bool) (etcdStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := c.Status(ctx, url)
		if err == nil && done(st) {
			return st, nil
		}
		select {
		case <-proc.Done():
			return etcdStatus{}, fmt.Errorf("etcd exited: %v", proc.Err())
		case <-ctx.Done():
			return etcdStatus{}, fmt.Errorf("not there within %s (last status error: %v)", within, err)
		case <-tick.C:
		}
	}
}

// awaitPromotion promotes this learner as soon as etcd accepts it.
func (s *starter) awaitPromotion(ctx context.Context, c etcdAPI, proc etcdProcess, id cluster.ID) error {
	ctx, cancel := context.WithTimeout(ctx, s.promoteWait)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		// Promote only a member that serves clients: etcd promotes an
		// in-sync learner whose own publish request has not returned yet,
		// and that request then waits out its 7 s timeout before the member
		// serves anything.
		_, err := c.Status(ctx, s.clientURL())
		if err == nil {
			err = c.Promote(ctx, id)
		}
		switch {
		case err == nil:
			s.log.Info("promoted to voter", "member", id)
			return nil
		case errors.Is(err, rpctypes.ErrMemberNotLearner):
			s.log.Info("promoted to voter by the leader", "member", id)
			return nil
		case errors.Is(err, rpctypes.ErrMemberNotFound):
			return fmt.Errorf("member %s was removed while joining", id)
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("promoting %s: %w", id, lastErr)
		case <-proc.Done():
			return errors.New("etcd exited before promotion")
		case <-tick.C:
		}
	}
}
