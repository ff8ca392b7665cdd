package appliance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// fakeLaunch is a launch hook that records how it was completed.
type fakeLaunch struct {
	mu          sync.Mutex
	heartbeats  int
	results     []provider.LaunchResult // every attempt, failed ones too
	completeErr []error                 // answered in turn by CompleteLaunch; then nil
	// readyAtCompletion records whether the member was ready when each
	// completion was asked for.
	ready             func() bool
	readyAtCompletion []bool
}

func (f *fakeLaunch) LaunchHeartbeat(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heartbeats++
	return nil
}

func (f *fakeLaunch) CompleteLaunch(_ context.Context, result provider.LaunchResult) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.results = append(f.results, result)
	if f.ready != nil {
		f.readyAtCompletion = append(f.readyAtCompletion, f.ready())
	}
	if len(f.completeErr) > 0 {
		err := f.completeErr[0]
		f.completeErr = f.completeErr[1:]
		return err
	}
	return nil
}

func (f *fakeLaunch) beats() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.heartbeats
}

// gatedAppliance is a test appliance whose group holds its launch through
// lc, with the gate's clocks short and its log in the returned buffer
// (read only once the gate has returned).
func gatedAppliance(t *testing.T, lc *fakeLaunch, timeout time.Duration) (*Appliance, *bytes.Buffer) {
	t.Helper()
	a := testAppliance(t)
	var log bytes.Buffer
	a.log = slog.New(slog.NewTextHandler(&log, nil))
	a.launchGate = &launchGate{node: a.node, launch: lc, timeout: timeout,
		times: launchTimes{poll: time.Millisecond, heartbeatEvery: time.Millisecond, retry: time.Millisecond, completeFor: 10 * time.Second}}
	lc.ready = a.isReady
	return a, &log
}

// TestLaunchGateContinuesOnceAVoter: the gate holds the hook with
// heartbeats while the member is not ready, and completes it with
// CONTINUE, once, when it is.
func TestLaunchGateContinuesOnceAVoter(t *testing.T) {
	lc := &fakeLaunch{}
	a, log := gatedAppliance(t, lc, time.Hour)
	a.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhaseStarting })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { a.launchGate.run(ctx); close(done) }()

	waitFor(t, func() bool { return lc.beats() >= 3 })
	lc.mu.Lock()
	early := len(lc.results)
	lc.mu.Unlock()
	if early != 0 {
		t.Fatalf("the gate completed the hook %d times before the member was ready", early)
	}
	a.setReady(true) // what supervisor.publish does for a healthy voter
	<-done

	if len(lc.results) != 1 || lc.results[0] != provider.LaunchContinue || !lc.readyAtCompletion[0] {
		t.Errorf("completed %v (ready then: %v), want CONTINUE once, when ready", lc.results, lc.readyAtCompletion)
	}
	if n := counterValue(t, a.metrics.launchHook.WithLabelValues("CONTINUE")); n != 1 {
		t.Errorf("etcd_appliance_launch_hook_result{result=CONTINUE} = %v, want 1", n)
	}
	if !strings.Contains(log.String(), "completing the launch hook with CONTINUE") {
		t.Errorf("the log does not say the hook was continued:\n%s", log)
	}
}

// TestLaunchGateAbandonsAfterTheBound: a member that never becomes a
// voter has the hook abandoned at --launch-timeout, with the reason in the
// log, and the completion retried until it goes through.
func TestLaunchGateAbandonsAfterTheBound(t *testing.T) {
	lc := &fakeLaunch{completeErr: []error{errors.New("throttled")}}
	a, log := gatedAppliance(t, lc, 20*time.Millisecond)
	a.setPeer(func(p *cluster.PeerState) { p.Phase, p.LastExit = cluster.PhasePlanning, "bad-flag" })
	a.setWaiting("the membership lock", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	started := time.Now()
	a.launchGate.run(ctx)

	if waited := time.Since(started); waited < 20*time.Millisecond {
		t.Errorf("abandoned after %s, before the bound", waited)
	}
	want := []provider.LaunchResult{provider.LaunchAbandon, provider.LaunchAbandon}
	if len(lc.results) != 2 || lc.results[0] != want[0] || lc.results[1] != want[1] {
		t.Errorf("completed %v, want %v (the first attempt failing)", lc.results, want)
	}
	if lc.beats() == 0 {
		t.Error("no heartbeat held the hook while waiting")
	}
	if n := counterValue(t, a.metrics.launchHook.WithLabelValues("ABANDON")); n != 1 {
		t.Errorf("etcd_appliance_launch_hook_result{result=ABANDON} = %v, want 1", n)
	}
	for _, w := range []string{"completing the launch hook with ABANDON", "--launch-timeout", "waiting for: the membership lock", "etcd's last exit: bad-flag"} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("the log does not say %q:\n%s", w, log)
		}
	}
}

// TestLaunchGateStoppedBeforeAVerdict: an appliance told to stop leaves
// the hook alone (its heartbeat timeout and default result, or the next
// run, decide).
func TestLaunchGateStoppedBeforeAVerdict(t *testing.T) {
	lc := &fakeLaunch{}
	a, _ := gatedAppliance(t, lc, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.launchGate.run(ctx); close(done) }()
	waitFor(t, func() bool { return lc.beats() >= 1 })
	cancel()
	<-done
	if len(lc.results) != 0 {
		t.Errorf("completed %v after the stop, want nothing", lc.results)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestLaunchGateWithoutAnAutoScalingGroup: an instance in no Auto Scaling
// group (a multi-region member launched by hand) has no hook: the gate
// says so once and does not retry.
func TestLaunchGateWithoutAnAutoScalingGroup(t *testing.T) {
	lc := &fakeLaunch{completeErr: []error{fmt.Errorf("instance i-1 is %w (no tag)", provider.ErrNoAutoScalingGroup)}}
	a, log := gatedAppliance(t, lc, time.Hour)
	a.setReady(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.launchGate.run(ctx)
	if len(lc.results) != 1 {
		t.Errorf("completion tried %d times, want once", len(lc.results))
	}
	if !strings.Contains(log.String(), "no launch hook to complete") || strings.Contains(log.String(), "level=WARN") {
		t.Errorf("the log should say once that there is no hook, without warnings:\n%s", log)
	}
}
