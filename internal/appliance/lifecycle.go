package appliance

import (
	"context"
	"errors"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
)

// The termination path of §4.5, tunable by tests.
var (
	// lifecyclePoll is how often the instance's target lifecycle state is
	// read; it is a local metadata read, no AWS API call.
	lifecyclePoll = time.Second
	// lifecycleHeartbeatEvery is how often a draining instance extends its
	// termination hook's timeout.
	lifecycleHeartbeatEvery = 30 * time.Second
	// drainLeaveFor bounds the attempts to leave the cluster while the
	// instance terminates; after it the termination goes on, and the
	// leader removes the member once its instance is gone.
	drainLeaveFor = 90 * time.Second
	// drainRetry is the pause between two attempts of a drain step.
	drainRetry = 2 * time.Second
	// completeFor bounds the attempts to complete the termination hook.
	completeFor = 60 * time.Second
)

// targetTerminated is the target lifecycle state of an instance that its
// group is terminating.
const targetTerminated = "Terminated"

// errTerminating is the cause that ends Run's loop when the group
// terminates the instance.
var errTerminating = errors.New("the group is terminating this instance")

// watchLifecycle reads the instance's target lifecycle state until it turns
// Terminated, then stops the appliance's loop with errTerminating.
func (a *Appliance) watchLifecycle(ctx context.Context, stop context.CancelCauseFunc) {
	tick := time.NewTicker(lifecyclePoll)
	defer tick.Stop()
	var failing bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		state, err := a.lifecycle.TargetState(ctx)
		if err != nil {
			if !failing && ctx.Err() == nil {
				a.log.Warn("reading the target lifecycle state", "err", err)
			}
			failing = true
			continue
		}
		failing = false
		if state == targetTerminated {
			a.log.Info("the group is terminating this instance: draining", "target_lifecycle_state", state)
			stop(errTerminating)
			return
		}
	}
}

// stop ends Run. When the group terminates the instance, it drains and
// then idles until told to stop: etcd must never start again on an instance
// that left. Otherwise it stops etcd as on any shutdown.
func (a *Appliance) stop(ctx, run context.Context, proc *etcd.Process) error {
	if ctx.Err() == nil && errors.Is(context.Cause(run), errTerminating) {
		a.drain(ctx, proc)
		<-ctx.Done()
		return nil
	}
	if proc != nil {
		a.shutdown(proc)
	}
	return nil
}

// drain is the termination of §4.5: leave the cluster (handing leadership
// over first), stop etcd, and let the termination go on, with heartbeats
// holding the hook meanwhile. A stop request does not cut it short: the
// instance is going away, and a member that did not leave costs the
// cluster a voter until the leader removes it.
func (a *Appliance) drain(ctx context.Context, proc *etcd.Process) {
	a.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhaseLeaving })
	ctx = context.WithoutCancel(ctx)
	beats, stopBeats := context.WithCancel(ctx)
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		a.heartbeats(beats, lifecycleHeartbeatEvery)
	}()
	defer func() {
		stopBeats()
		<-beating
	}()

	left, last := false, false
	if proc != nil {
		a.finalSnapshot(ctx)
		left, last = a.leaveTerminating(ctx, proc)
		if err := proc.Stop(a.cfg.StopTimeout); err != nil {
			a.log.Warn("stopping etcd", "err", err)
		}
		a.setPeer(func(p *cluster.PeerState) { p.EtcdRunning = false })
	}
	if last {
		a.withdrawDNS(ctx)
	}
	a.completeTermination(ctx)
	a.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhaseStopped })
	a.log.Info("drained: the group may terminate this instance", "left_cluster", left)
}

// leaveTerminating removes the member, retrying while the cluster refuses
// (a removal that would break the quorum rule may become safe once a
// replacement joins), until drainLeaveFor. last reports that the member
// stayed because it is the cluster's last voter.
func (a *Appliance) leaveTerminating(ctx context.Context, proc *etcd.Process) (left, last bool) {
	ctx, cancel := context.WithTimeout(ctx, drainLeaveFor)
	defer cancel()
	var lastErr string
	for {
		select {
		case <-proc.Done():
			a.log.Warn("etcd exited while draining; the leader removes the member", "err", proc.Err())
			return false, false
		default:
		}
		lctx, lcancel := context.WithTimeout(ctx, leaveTimeout)
		err := a.leave(lctx, "the group is terminating this instance")
		lcancel()
		switch {
		case err == nil:
			return true, false
		case errors.Is(err, errNotMember):
			a.log.Info("already removed from the cluster", "reason", "the leader saw the instance terminating")
			return true, false
		case errors.Is(err, errLastMember):
			a.log.Warn("not leaving the cluster", "err", err)
			return false, true
		}
		if err.Error() != lastErr {
			a.log.Warn("leaving the cluster refused; retrying", "err", err)
			lastErr = err.Error()
		}
		if !sleep(ctx, drainRetry) {
			a.log.Warn("gave up leaving the cluster; the leader removes the member once the instance is gone",
				"after", drainLeaveFor, "err", err)
			return false, false
		}
	}
}

// withdrawDNS removes the cluster's records when its last member
// terminates with no other instance left in the group: the cluster is
// going away, and clients must not be sent to its addresses (§4.4). With
// any other instance in the group, or an unknown group, the records stay.
func (a *Appliance) withdrawDNS(ctx context.Context) {
	if a.dns == nil {
		return
	}
	group, err := a.listGroup(ctx, 0)
	if err != nil {
		a.log.Warn("dns: records kept: the group is unknown", "err", err)
		return
	}
	for _, inst := range group {
		if inst.ID != a.self.ID && (inst.State == cluster.InstanceRunning || inst.State == cluster.InstancePending) {
			a.log.Info("dns: records kept: the group has other instances", "instance", inst.ID)
			return
		}
	}
	have, err := a.dns.Records(ctx)
	if err != nil {
		a.log.Warn("dns: reading the published records", "err", err)
		return
	}
	plan := cluster.DecideDNS(*a.dnsSpec, nil, have, true)
	if plan.Empty() {
		return
	}
	if err := a.dns.Apply(ctx, plan.Upserts, plan.Deletes); err != nil {
		a.log.Warn("dns: withdrawing the records", "err", err)
		return
	}
	a.metrics.dnsChanges.Inc()
	a.log.Info("dns records withdrawn", "deletes", len(plan.Deletes), "reason", "the last member of the cluster terminated")
}

// completeTermination lets the group's termination go on, retrying failed
// calls until completeFor.
func (a *Appliance) completeTermination(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, completeFor)
	defer cancel()
	for {
		err := a.lifecycle.Complete(ctx)
		if err == nil {
			return
		}
		a.log.Warn("completing the termination hook", "err", err)
		if !sleep(ctx, drainRetry) {
			a.log.Error("could not complete the termination hook; the group terminates the instance when the hook times out", "err", err)
			return
		}
	}
}

// heartbeats holds the termination hook while the instance drains.
func (a *Appliance) heartbeats(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := a.lifecycle.Heartbeat(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("recording a lifecycle heartbeat", "err", err)
		}
	}
}

// finalSnapshotTimeout bounds the snapshot a terminating leader takes.
const finalSnapshotTimeout = 2 * time.Minute

// finalSnapshot stores a snapshot when this member leads (§4.5): when the
// whole group goes away, it holds the last writes.
func (a *Appliance) finalSnapshot(ctx context.Context) {
	if a.store == nil {
		return
	}
	c, err := newClient([]string{a.clientURL()})
	if err != nil {
		return
	}
	defer c.Close()
	sctx, cancel := context.WithTimeout(ctx, requestTimout)
	st, err := c.Status(sctx, a.clientURL())
	cancel()
	if err != nil || st.Leader != st.Header.MemberId {
		return
	}
	sctx, cancel = context.WithTimeout(ctx, finalSnapshotTimeout)
	defer cancel()
	if _, err := a.takeSnapshot(sctx, c); err != nil {
		a.log.Warn("final snapshot before leaving failed", "err", err)
	}
}
