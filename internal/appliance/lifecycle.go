package appliance

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// targetTerminated is the target lifecycle state of an instance that its
// group is terminating.
const targetTerminated = "Terminated"

// errTerminating is the cause that ends Run's loop when the group
// terminates the instance.
var errTerminating = errors.New("the group is terminating this instance")

// drainTimes are the clocks of the termination path (§4.5).
type drainTimes struct {
	// poll is how often the instance's target lifecycle state is read; it
	// is a local metadata read, no AWS API call.
	poll time.Duration
	// heartbeatEvery is how often a draining instance extends its
	// termination hook's timeout.
	heartbeatEvery time.Duration
	// holdFor bounds how long the drain budget may hold the termination
	// (the rest of the cluster not at full strength); after it the member
	// leaves under the quorum rule alone. It stays below the hook's own
	// limit: 100 heartbeat timeouts (120 s in the template), 3 h 20 min.
	holdFor time.Duration
	// leaveFor bounds the attempts to leave the cluster that the quorum
	// rule refuses; after it the termination goes on, and the housekeeper
	// removes the member once its instance is gone.
	leaveFor time.Duration
	// retry is the pause between two attempts of a drain step.
	retry time.Duration
	// completeFor bounds the attempts to complete the termination hook.
	completeFor time.Duration
}

func defaultDrainTimes() drainTimes {
	return drainTimes{poll: time.Second, heartbeatEvery: 30 * time.Second, holdFor: 3 * time.Hour, leaveFor: 90 * time.Second,
		retry: 2 * time.Second, completeFor: 60 * time.Second}
}

// drainer is the termination of §4.5: it watches for the group terminating
// the instance, then leaves the cluster (handing leadership over first),
// stops etcd, and lets the termination go on, with heartbeats holding the
// hook meanwhile.
type drainer struct {
	*node
	lifecycle provider.Lifecycle
	leaver    *leaver
	dns       *dnsPublisher
	snapshots *snapshotter
	times     drainTimes
}

// watch reads the instance's target lifecycle state until it turns
// Terminated, then stops the appliance's loop with errTerminating.
func (d *drainer) watch(ctx context.Context, stop context.CancelCauseFunc) {
	tick := time.NewTicker(d.times.poll)
	defer tick.Stop()
	var failing bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		state, err := d.lifecycle.TargetState(ctx)
		if err != nil {
			if !failing && ctx.Err() == nil {
				d.log.Warn("reading the target lifecycle state", "err", err)
			}
			failing = true
			continue
		}
		failing = false
		if state == targetTerminated {
			d.log.Info("the group is terminating this instance: draining", "target_lifecycle_state", state)
			stop(errTerminating)
			return
		}
	}
}

// drain leaves and lets the termination go on. A stop request does not cut
// it short: the instance is going away, and a member that did not leave
// costs the cluster a voter until the leader removes it.
func (d *drainer) drain(ctx context.Context, proc etcdProcess) {
	d.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhaseLeaving })
	ctx = context.WithoutCancel(ctx)
	beats, stopBeats := context.WithCancel(ctx)
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		d.heartbeats(beats)
	}()
	defer func() {
		stopBeats()
		<-beating
	}()

	left, last := false, false
	if proc != nil {
		d.snapshots.final(ctx)
		left, last = d.leaveTerminating(ctx, proc)
		if err := proc.Stop(d.cfg.StopTimeout); err != nil {
			d.log.Warn("stopping etcd", "err", err)
		}
		d.setPeer(func(p *cluster.PeerState) { p.EtcdRunning = false })
	}
	if last {
		d.dns.withdraw(ctx)
	}
	d.complete(ctx)
	d.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhaseStopped })
	d.log.Info("drained: the group may terminate this instance", "left_cluster", left)
}

// leaveTerminating removes the member once the drain budget allows it
// (cluster.CheckDrain: the rest of the cluster at full strength, one
// disruption at a time), holding the termination meanwhile, for at most
// holdFor; then it retries while the quorum rule refuses (a removal that
// would break it may become safe once a replacement joins), until
// leaveFor. last reports that the member stayed because it is the
// cluster's last voter.
func (d *drainer) leaveTerminating(ctx context.Context, proc etcdProcess) (left, last bool) {
	defer d.holdDrain(nil)
	holdUntil := d.now().Add(d.times.holdFor)
	var refusedSince time.Time
	var lastErr string
	for {
		select {
		case <-proc.Done():
			d.log.Warn("etcd exited while draining; the housekeeper removes the member", "err", proc.Err())
			return false, false
		default:
		}
		budget := d.now().Before(holdUntil)
		err := d.leaver.leave(ctx, "the group is terminating this instance", budget)
		switch {
		case err == nil:
			return true, false
		case errors.Is(err, errNotMember):
			d.log.Info("already removed from the cluster", "reason", "the housekeeper saw the instance terminating")
			return true, false
		case isRule(err, cluster.RuleLastVoter):
			d.log.Warn("not leaving the cluster", "err", err)
			return false, true
		case budget && (isRule(err, cluster.RuleFullStrength) || isRule(err, cluster.RuleGroupUnknown)):
			d.holdDrain(err)
			refusedSince = time.Time{}
		default:
			d.holdDrain(nil)
			if refusedSince.IsZero() {
				refusedSince = d.now()
			}
			if d.now().Sub(refusedSince) >= d.times.leaveFor {
				d.log.Warn("gave up leaving the cluster; the housekeeper removes the member once the instance is gone",
					"after", d.times.leaveFor, "err", err)
				return false, false
			}
			if err.Error() != lastErr {
				d.log.Warn("leaving the cluster refused; retrying", "err", err)
				lastErr = err.Error()
			}
		}
		if !sleep(ctx, d.times.retry) {
			return false, false
		}
	}
}

// holdDrain publishes why the drain budget holds the termination (log,
// metric, status), or that it holds no longer (nil).
func (d *drainer) holdDrain(err error) {
	if err == nil {
		d.metrics.drainHeld.Set(0)
		if waiting, _ := d.waitingFor(); strings.HasPrefix(waiting, drainHeldPrefix) {
			d.setWaiting("", nil)
		}
		return
	}
	d.metrics.drainHeld.Set(1)
	why := drainHeldPrefix + err.Error()
	if waiting, _ := d.waitingFor(); waiting != why {
		d.log.Warn("holding the termination: the rest of the cluster is not at full strength", "err", err,
			"hold_at_most", d.times.holdFor)
	}
	d.setWaiting(why, nil)
}

// drainHeldPrefix starts the status line of a drain the budget holds.
const drainHeldPrefix = "the drain budget holds this instance's termination: "

// complete lets the group's termination go on, retrying failed calls until
// completeFor.
func (d *drainer) complete(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, d.times.completeFor)
	defer cancel()
	for {
		err := d.lifecycle.Complete(ctx)
		if err == nil {
			return
		}
		d.log.Warn("completing the termination hook", "err", err)
		if !sleep(ctx, d.times.retry) {
			d.log.Error("could not complete the termination hook; the group terminates the instance when the hook times out", "err", err)
			return
		}
	}
}

// heartbeats holds the termination hook while the instance drains.
func (d *drainer) heartbeats(ctx context.Context) {
	tick := time.NewTicker(d.times.heartbeatEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := d.lifecycle.Heartbeat(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("recording a lifecycle heartbeat", "err", err)
		}
	}
}
