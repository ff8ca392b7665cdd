package appliance

import (
	"context"
	"errors"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// launchTimes are the clocks of the launch gate.
type launchTimes struct {
	// poll is how often the gate looks whether the member is ready (a
	// read of the node's state, no call).
	poll time.Duration
	// heartbeatEvery is how often the gate extends the launch hook's
	// timeout while it holds it.
	heartbeatEvery time.Duration
	// retry is the pause between two attempts to complete the hook, and
	// completeFor bounds them.
	retry       time.Duration
	completeFor time.Duration
}

func defaultLaunchTimes() launchTimes {
	return launchTimes{poll: time.Second, heartbeatEvery: 30 * time.Second, retry: 2 * time.Second, completeFor: 60 * time.Second}
}

// launchGate holds the group's launch hook until this instance is a
// started, healthy voter — of the cluster it joined or of the one it
// created with its peers — and then completes it with CONTINUE; when it is
// not one within --launch-timeout it completes it with ABANDON and says
// why, and the group terminates the instance. A rolling update or an
// instance refresh, which waits for each new instance to be in service,
// thus advances one healthy member at a time and stops on a release whose
// members cannot join. It runs once per process: a restarted appliance
// completes an action that is long over, which Auto Scaling answers as
// nothing to complete.
type launchGate struct {
	*node
	launch  provider.Launch
	timeout time.Duration
	times   launchTimes
}

// run waits for the verdict, holding the hook with heartbeats, and
// completes the hook with it. A stop before the verdict leaves the hook
// to its heartbeat timeout (and DefaultResult), or to the next run.
func (g *launchGate) run(ctx context.Context) {
	since := g.now()
	lastBeat := since
	tick := time.NewTicker(g.times.poll)
	defer tick.Stop()
	for {
		verdict, reason := cluster.DecideLaunchGate(g.gateInputs(since))
		switch verdict {
		case cluster.GateContinue:
			g.log.Info("launch gate: completing the launch hook with CONTINUE", "reason", reason,
				"after", g.now().Sub(since).Round(time.Millisecond))
			g.complete(ctx, provider.LaunchContinue)
			return
		case cluster.GateAbandon:
			g.log.Error("launch gate: completing the launch hook with ABANDON; the group terminates this instance",
				"reason", reason)
			g.complete(ctx, provider.LaunchAbandon)
			return
		}
		if now := g.now(); now.Sub(lastBeat) >= g.times.heartbeatEvery {
			lastBeat = now
			if err := g.launch.LaunchHeartbeat(ctx); err != nil && ctx.Err() == nil {
				g.log.Warn("recording a launch heartbeat", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			g.log.Debug("launch gate stopped before a verdict", "reason", "the appliance is stopping")
			return
		case <-tick.C:
		}
	}
}

// gateInputs gathers what the verdict is decided on.
func (g *launchGate) gateInputs(since time.Time) cluster.LaunchGateInputs {
	peer := g.peerState()
	waiting, _ := g.waitingFor()
	return cluster.LaunchGateInputs{Now: g.now(), Since: since, Timeout: g.timeout, Ready: g.isReady(),
		Phase: peer.Phase, Waiting: waiting, LastExit: peer.LastExit}
}

// complete completes the hook with result, retrying failed calls until
// completeFor, and counts the result.
func (g *launchGate) complete(ctx context.Context, result provider.LaunchResult) {
	cctx, cancel := context.WithTimeout(ctx, g.times.completeFor)
	defer cancel()
	for {
		err := g.launch.CompleteLaunch(cctx, result)
		if err == nil {
			g.metrics.launchHook.WithLabelValues(string(result)).Inc()
			return
		}
		if errors.Is(err, provider.ErrNoAutoScalingGroup) {
			g.log.Info("no launch hook to complete: the instance is in no Auto Scaling group", "result", result)
			return
		}
		g.log.Warn("completing the launch hook", "result", result, "err", err)
		if !sleep(cctx, g.times.retry) {
			g.metrics.launchHook.WithLabelValues(launchHookFailed).Inc()
			g.log.Error("could not complete the launch hook; the group applies its default result when the hook times out",
				"result", result, "err", err)
			return
		}
	}
}
