package appliance

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/cluster/clustertest"
)

// fakeLifecycle is a termination hook whose answers the test sets.
type fakeLifecycle struct {
	mu          sync.Mutex
	states      []string // answered in turn; the last one repeats
	stateErr    error
	completeErr []error // answered in turn by Complete; then nil
	completes   int
	heartbeats  int
	reads       int
}

func (f *fakeLifecycle) polls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

func (f *fakeLifecycle) TargetState(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.stateErr != nil {
		err := f.stateErr
		f.stateErr = nil
		return "", err
	}
	s := f.states[0]
	if len(f.states) > 1 {
		f.states = f.states[1:]
	}
	return s, nil
}

func (f *fakeLifecycle) Heartbeat(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heartbeats++
	return nil
}

func (f *fakeLifecycle) Complete(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.completes++
	if len(f.completeErr) > 0 {
		err := f.completeErr[0]
		f.completeErr = f.completeErr[1:]
		return err
	}
	return nil
}

func (f *fakeLifecycle) counts() (completes, heartbeats int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.completes, f.heartbeats
}

// drainingAppliance is a test appliance whose group terminates it through
// lc, with the termination path's clocks short.
func drainingAppliance(t *testing.T, lc *fakeLifecycle) *Appliance {
	t.Helper()
	a := testAppliance(t)
	times := defaultDrainTimes()
	times.poll, times.heartbeatEvery, times.retry = time.Millisecond, time.Millisecond, time.Millisecond
	a.drainer = &drainer{node: a.node, lifecycle: lc, leaver: a.leaver, dns: a.housekeeper.dns, snapshots: a.snapshots,
		times: times}
	return a
}

func TestWatchLifecycleStopsTheLoopOnTermination(t *testing.T) {
	lc := &fakeLifecycle{states: []string{"", "InService", "InService", "Warmed:Stopped", targetTerminated}, stateErr: errors.New("imds down")}
	a := drainingAppliance(t, lc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	run, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	a.drainer.watch(run, stop)
	if !errors.Is(context.Cause(run), errTerminating) {
		t.Fatalf("watchLifecycle returned with cause %v, want errTerminating", context.Cause(run))
	}
}

func TestWatchLifecycleIgnoresOtherStates(t *testing.T) {
	lc := &fakeLifecycle{states: []string{"InService"}}
	a := drainingAppliance(t, lc)
	ctx, cancel := context.WithCancel(context.Background())
	run, stop := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() { a.drainer.watch(run, stop); close(done) }()
	// Many polls of InService later, the loop still runs.
	waitFor(t, func() bool {
		select {
		case <-done:
			t.Fatalf("watchLifecycle stopped on InService: cause %v", context.Cause(run))
		default:
		}
		return lc.polls() >= 50
	})
	if run.Err() != nil {
		t.Fatalf("run stopped: %v", context.Cause(run))
	}
	cancel()
	<-done
}

func TestDrainWithoutEtcdCompletesTheHook(t *testing.T) {
	lc := &fakeLifecycle{states: []string{targetTerminated}, completeErr: []error{errors.New("throttled"), errors.New("500")}}
	a := drainingAppliance(t, lc)
	a.drainer.drain(context.Background(), nil)
	if completes, _ := lc.counts(); completes != 3 {
		t.Errorf("Complete called %d times, want 3 (two failures, then success)", completes)
	}
	if got := a.peerState().Phase; got != cluster.PhaseStopped {
		t.Errorf("phase after draining = %s, want %s", got, cluster.PhaseStopped)
	}
}

func TestStopDrainsOnTerminationAndIdles(t *testing.T) {
	lc := &fakeLifecycle{states: []string{targetTerminated}}
	a := drainingAppliance(t, lc)
	ctx, cancel := context.WithCancel(context.Background())
	run, stopRun := context.WithCancelCause(ctx)
	stopRun(errTerminating)
	done := make(chan error, 1)
	go func() { done <- a.stop(ctx, run, nil) }()
	waitFor(t, func() bool {
		completes, _ := lc.counts()
		return completes == 1
	})
	select {
	case err := <-done:
		t.Fatalf("stop returned %v before the appliance was told to stop: it must idle", err)
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stop = %v", err)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-deadline:
			t.Fatal("condition not met within 10 s")
		case <-tick.C:
		}
	}
}

func TestWithdrawDNSOnlyWhenTheGroupIsGone(t *testing.T) {
	self := cluster.Instance{ID: "i-1", Address: "127.0.0.1", State: cluster.InstanceTerminated}
	for _, tc := range []struct {
		name      string
		group     []cluster.Instance
		groupErr  error
		withdrawn bool
	}{
		{"last instance of the group", []cluster.Instance{self}, nil, true},
		{"others terminated too", []cluster.Instance{self, {ID: "i-2", State: cluster.InstanceTerminated}}, nil, true},
		{"a replacement is pending", []cluster.Instance{self, {ID: "i-2", State: cluster.InstancePending}}, nil, false},
		{"another instance runs", []cluster.Instance{self, {ID: "i-2", State: cluster.InstanceRunning}}, nil, false},
		{"group unknown", nil, errors.New("throttled"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testAppliance(t)
			zone := &memoryDNS{}
			d := a.housekeeper.dns
			d.dns, d.spec = zone, &cluster.DNSSpec{Zone: "example.org.", Name: "orders", TTL: 60, ClientPort: 2379, PeerPort: 2380}
			d.publish(context.Background(), healthyVoters("127.0.0.1"))
			published := len(zone.records)
			if published == 0 {
				t.Fatal("nothing published")
			}
			g := a.groups.group.(*fakeGroup)
			g.instances, g.err = tc.group, tc.groupErr
			d.withdraw(context.Background())
			if got := len(zone.records) == 0; got != tc.withdrawn {
				t.Errorf("records withdrawn = %v (%d of %d left), want %v", got, len(zone.records), published, tc.withdrawn)
			}
		})
	}
}

// The drain budget: a terminating member leaves only once the rest of the
// cluster is at full strength (here: once its replacement, a learner, is
// promoted), holding its termination meanwhile and saying why.
func TestDrainWaitsForFullStrength(t *testing.T) {
	self := cluster.Member{ID: 0xa, Name: "i-1", PeerURLs: []string{"http://127.0.0.1:2380"}, ClientURLs: []string{"http://127.0.0.1:2379"}}
	f := newFakeEtcd([]cluster.Member{self, clustertest.Member(0xb, false), clustertest.Member(0xc, false), clustertest.Member(0xd, true)})
	a := leaving(t, "i-1", f)
	a.groups.group.(*fakeGroup).instances = []cluster.Instance{
		{ID: "i-1", Address: "127.0.0.1", State: cluster.InstanceTerminating},
		{ID: "i-b", State: cluster.InstanceRunning}, {ID: "i-c", State: cluster.InstanceRunning}, {ID: "i-d", State: cluster.InstanceRunning},
	}
	d := drainingAppliance(t, &fakeLifecycle{states: []string{targetTerminated}}).drainer
	d.node, d.leaver = a.node, a.leaver
	type result struct{ left, last bool }
	done := make(chan result, 1)
	go func() {
		left, last := d.leaveTerminating(t.Context(), newFakeProcess())
		done <- result{left, last}
	}()

	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for held := false; !held; {
		select {
		case r := <-done:
			t.Fatalf("drain ended (left %v) before its replacement was a voter; calls %q", r.left, f.log(false))
		case <-deadline:
			t.Fatal("the drain budget never held the termination")
		case <-tick.C:
		}
		waiting, _ := a.waitingFor()
		held = gauge(t, a.metrics.drainHeld) == 1 && strings.Contains(waiting, "member d (i-d) is a learner, not promoted yet")
	}
	if f.called("Remove") {
		t.Fatalf("removed while held: %q", f.log(false))
	}
	f.mu.Lock()
	f.members[3].IsLearner = false
	f.mu.Unlock()
	select {
	case r := <-done:
		if !r.left || r.last {
			t.Fatalf("drain: left %v, last %v; want left once at full strength", r.left, r.last)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the drain did not go on once the replacement was a voter")
	}
	if !f.called("Remove a") {
		t.Errorf("calls %q, want this member removed", f.log(false))
	}
	if waiting, _ := a.waitingFor(); gauge(t, a.metrics.drainHeld) != 0 || waiting != "" {
		t.Errorf("after the drain: held %v, waiting %q; want neither", gauge(t, a.metrics.drainHeld), waiting)
	}
}
