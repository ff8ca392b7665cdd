package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// The hooks of the instance refresh test: the launch hook that the launch
// gate completes once its instance is a voter, the termination hook that
// the drain completes once its instance has left.
const (
	refreshLaunchHook    = "etcd-appliance-launch"
	refreshTerminateHook = "etcd-appliance-terminate"
)

// TestAWSInstanceRefreshLaunchesBeforeTerminate is an instance refresh
// with launch before terminate (minimum healthy 100 %, maximum healthy
// above 100 %) of a group of 3 with room for a 4th (issue 10, §4.5). For
// each original instance in turn, the refresh raises the desired capacity
// to 4; the new instance's launch gate completes the launch hook with
// CONTINUE once it is a voter; only then does the refresh terminate the
// old instance with a decrement back to 3, and its appliance drains
// before it completes the termination hook. Throughout, a sampler reads
// every 150 ms the member list and each voter's status through the etcd
// client: the cluster never has fewer than 3 healthy voters, and a
// continuous writer loses no acknowledged write. At the end the 3 voters
// are the 3 new instances, the same cluster, with their DNS records.
//
// moto gaps (see fleet/refresh.go, fleet/awslifecycle.go): moto 5.2 does
// not implement StartInstanceRefresh (NotImplementedError, HTTP 500), so
// the harness plays the refresh with the calls AWS makes: SetDesiredCapacity
// 4, then TerminateInstanceInAutoScalingGroup with a decrement. moto puts
// a new instance InService at once and terminates at once, and answers
// CompleteLifecycleAction with 500: the fault proxy lists the new instance
// Pending:Wait until its appliance completes the launch hook, and an old
// one Terminating:Wait (its IMDS target state Terminated) until it
// completes the termination hook, and answers both completions. The
// harness starts each appliance itself (Sync, no Follow), so that the new
// instance is listed Pending:Wait from its first look at the group. Real
// AWS decrements the desired capacity when the termination starts; the
// harness does it when the hook completes, so the drain budget sees a
// desired capacity of 4 while the old instance drains.
func TestAWSInstanceRefreshLaunchesBeforeTerminate(t *testing.T) {
	g, proxy := newFaultyAWSGroup(t, fleet.AWSOptions{Size: 3, HostedZone: testZone})
	ctx := testContext(t, 5*time.Minute)
	before := waitAWSConverged(t, ctx, g, 3)
	originals := memberNames(before)
	if err := g.SetMaxSize(ctx, 4); err != nil {
		t.Fatal(err)
	}
	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hooks := &hookObserver{c: c}
	answer := testcluster.Answer("autoscaling", "CompleteLifecycleAction")
	answer.Observe = hooks.observe
	proxy.Inject(answer)
	proxy.Inject(testcluster.Answer("autoscaling", "RecordLifecycleActionHeartbeat"))
	if err := g.PutLaunchHook(ctx, refreshLaunchHook); err != nil {
		t.Fatal(err)
	}
	if err := g.PutTerminationHook(ctx, refreshTerminateHook); err != nil {
		t.Fatal(err)
	}

	started := time.Now()
	since := func() time.Duration { return time.Since(started).Round(time.Millisecond) }
	sampler := newVoterSampler(c)
	stopSampler := sampler.start(ctx)
	// The healthy voters are checked however the test ends: a step that
	// times out may follow from, or hide, a fall below 3.
	defer func() {
		stopSampler()
		sampler.check(t, started)
	}()
	stopWrites := make(chan struct{})
	wrote := make(chan paceWrites, 1)
	go func() {
		n, err := writeCounting(ctx, c, "refresh", stopWrites)
		wrote <- paceWrites{n, err}
	}()

	type step struct {
		old, fresh       string
		oldLed           bool
		launched         time.Time
		launch, leave    hookCompletion
		terminationStart time.Time
	}
	var steps []step
	for _, old := range originals {
		s := step{old: old}
		if st, err := g.Status(ctx); err == nil {
			for _, m := range st.Members {
				s.oldLed = s.oldLed || (m.Name == old && m.Leader)
			}
		}

		// Launch: one instance above the desired size.
		listed := map[string]bool{}
		for _, id := range inService(t, ctx, g) {
			listed[id] = true
		}
		if err := g.SetDesiredCapacity(ctx, 4); err != nil {
			t.Fatal(err)
		}
		s.launched = time.Now()
		s.fresh = waitNewListed(t, ctx, g, listed)
		proxy.SetLifecycleState(s.fresh, "Pending:Wait")
		if up, _, err := g.Sync(ctx); err != nil || !slices.Contains(up, s.fresh) {
			t.Fatalf("starting the appliance of %s: started %v, %v", s.fresh, up, err)
		}
		t.Logf("%s: desired capacity 4, %s launched (Pending:Wait) to replace %s", since(), s.fresh, old)
		s.launch = hooks.wait(t, s.fresh, refreshLaunchHook)
		if s.launch.result != "CONTINUE" || !s.launch.voter {
			t.Fatalf("%s completed the launch hook with %s while the members were %s; want CONTINUE as a voter",
				s.fresh, s.launch.result, s.launch.members)
		}
		proxy.ClearLifecycleState(s.fresh)
		t.Logf("%s: %s completed the launch hook with CONTINUE as a voter, %s after its launch",
			since(), s.fresh, s.launch.at.Sub(s.launched).Round(time.Millisecond))

		// Terminate the old instance, with a decrement back to 3.
		sampler.leaving(old)
		proxy.SetLifecycleState(old, "Terminating:Wait")
		s.terminationStart = time.Now()
		if err := g.StartTermination(old); err != nil {
			t.Fatal(err)
		}
		s.leave = hooks.wait(t, old, refreshTerminateHook)
		if s.leave.result != "CONTINUE" || s.leave.listed {
			t.Errorf("%s completed the termination hook with %s while the members were %s; want CONTINUE once it left",
				old, s.leave.result, s.leave.members)
		}
		if err := g.TerminateInASG(ctx, old, true); err != nil {
			t.Fatal(err)
		}
		proxy.ClearLifecycleState(old)
		if capa, err := g.Capacity(ctx); err != nil || capa != (fleet.Capacity{Min: 3, Max: 4, Desired: 3}) {
			t.Fatalf("after terminating %s with a decrement the group is %v (%v); want min 3, max 4, desired 3", old, capa, err)
		}
		t.Logf("%s: %s (leader: %v) left and completed its termination hook %s after the termination started; terminated with decrement",
			since(), old, s.oldLed, s.leave.at.Sub(s.terminationStart).Round(time.Millisecond))
		steps = append(steps, s)
	}

	after := waitAWSConverged(t, ctx, g, 3)
	t.Logf("%s: refresh done, 3 healthy voters: %s", since(), fleet.Summarize(after))
	close(stopWrites)
	res := <-wrote
	stopSampler()

	w := sampler.snapshot()
	if w.max != 4 {
		t.Errorf("the sampler never saw more than %d healthy voters; want 4 while each new instance joins before the old one leaves", w.max)
	}
	t.Logf("%d writes acknowledged", res.acked)
	if res.err != nil {
		t.Errorf("writes failed during the refresh: %v", res.err)
	}
	if res.acked == 0 {
		t.Errorf("no write was acknowledged during the refresh")
	}

	var fresh []string
	for _, s := range steps {
		fresh = append(fresh, s.fresh)
		// The new member served before the old one left: the sampler saw it a
		// healthy voter first.
		switch seen, ok := w.firstHealthy[s.fresh]; {
		case !ok:
			t.Errorf("the sampler never saw %s, the replacement of %s, a healthy voter", s.fresh, s.old)
		case !seen.Before(s.leave.at):
			t.Errorf("%s completed its termination hook at %s, before the sampler saw its replacement %s a healthy voter at %s",
				s.old, s.leave.at.Sub(started).Round(time.Millisecond), s.fresh, seen.Sub(started).Round(time.Millisecond))
		}
		if n := len(hooks.of(s.fresh, refreshLaunchHook)); n != 1 {
			t.Errorf("%s completed the launch hook %d times; want once", s.fresh, n)
		}
		for _, c := range hooks.of(s.old, refreshTerminateHook) {
			if c.result != "CONTINUE" {
				t.Errorf("%s completed the termination hook with %s", s.old, c.result)
			}
		}
		t.Logf("%s replaced %s: launch hook CONTINUE after %s, termination hook after %s; held by the drain budget: %v",
			s.fresh, s.old, s.launch.at.Sub(s.launched).Round(time.Millisecond),
			s.leave.at.Sub(s.terminationStart).Round(time.Millisecond), heldByBudget(t, g, s.old))
	}
	slices.Sort(fresh)
	if after.ClusterID != before.ClusterID {
		t.Errorf("cluster id changed from %s to %s", before.ClusterID, after.ClusterID)
	}
	if got := memberNames(after); !slices.Equal(got, fresh) {
		t.Errorf("members %v, want the 3 new instances %v", got, fresh)
	}
	if ids := inService(t, ctx, g); !slices.Equal(ids, fresh) {
		t.Errorf("the group has %v in service, want the 3 new instances %v", ids, fresh)
	}
	waitAWSRecords(t, ctx, g, after)
	checkAWSKeysOnEach(t, ctx, g, "refresh", res.acked)
}

// waitNewListed waits until the group lists in service an instance that is
// not among listed, and returns it.
func waitNewListed(t *testing.T, ctx context.Context, g *fleet.AWSGroup, listed map[string]bool) string {
	t.Helper()
	var fresh string
	err := fleet.Poll(testContext(t, 30*time.Second), 100*time.Millisecond, func() (bool, string) {
		ids, err := g.InService(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, id := range ids {
			if !listed[id] {
				fresh = id
				return true, ""
			}
		}
		return false, fmt.Sprintf("the group lists no new instance in service: %v", ids)
	})
	if err != nil {
		t.Fatal(err)
	}
	return fresh
}

// heldByBudget reports whether id's appliance says that the drain budget
// held its termination.
func heldByBudget(t *testing.T, g *fleet.AWSGroup, id string) bool {
	t.Helper()
	inst := g.Instance(id)
	if inst == nil {
		t.Fatalf("%s is no instance of the group", id)
	}
	log, err := os.ReadFile(inst.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(log), heldLine)
}

// wait waits, within convergeTimeout, for the instance's first completion
// of the hook.
func (o *hookObserver) wait(t *testing.T, instance, hook string) hookCompletion {
	t.Helper()
	var got []hookCompletion
	err := fleet.Poll(testContext(t, convergeTimeout), 100*time.Millisecond, func() (bool, string) {
		got = o.of(instance, hook)
		return len(got) > 0, fmt.Sprintf("%s has not completed the hook %s", instance, hook)
	})
	if err != nil {
		t.Fatal(err)
	}
	return got[0]
}

// voterSampler counts the cluster's healthy voters every 150 ms: it reads
// the member list through the cluster's client, then asks each voter its
// status through the etcd client at once; a healthy voter answers as
// itself, not a learner, with a leader and no alarm. It keeps the fewest
// and most seen and when each member was first seen a healthy voter, and
// points the client (the writer's too) at the healthy voters that the
// group is not terminating, as a client following the SRV records would.
type voterSampler struct {
	c *clientv3.Client

	mu         sync.Mutex
	left       map[string]bool
	samples    int
	unread     int
	lastUnread string
	// degraded counts the samples with a voter that did not answer as a
	// healthy one and was still a member after (not one that left
	// meanwhile); lastDegraded is the latest.
	degraded     int
	lastDegraded string
	// departures counts the samples with a voter that left meanwhile.
	departures   int
	min, max     int
	prev         int // healthy voters of the last sample (see sample)
	minAt        time.Time
	minView      string
	last         time.Time
	maxGap       time.Duration
	firstHealthy map[string]time.Time
	endpoints    []string
}

type samplerSnapshot struct {
	samples, unread, min, max int
	degraded, departures      int
	lastUnread, minView       string
	lastDegraded              string
	minAt                     time.Time
	maxGap                    time.Duration
	firstHealthy              map[string]time.Time
}

func newVoterSampler(c *clientv3.Client) *voterSampler {
	return &voterSampler{c: c, left: map[string]bool{}, min: 1 << 30, prev: 1 << 30, firstHealthy: map[string]time.Time{}}
}

// leaving tells the sampler that the group terminates instance id.
func (s *voterSampler) leaving(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.left[id] = true
}

// start samples until ctx ends or stop is called; stop waits for the
// sample in flight.
func (s *voterSampler) start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(150 * time.Millisecond)
		defer tick.Stop()
		for {
			s.sample(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

// voterHealth is what one voter's status said.
type voterHealth struct {
	id        uint64
	name, url string
	healthy   bool
	why       string
	// gone: unhealthy, and no longer a member once the statuses were in
	// (it left while the sample was taken).
	gone bool
}

func (s *voterSampler) sample(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	resp, err := s.c.MemberList(lctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	if err != nil {
		s.mu.Lock()
		s.samples++
		s.unread++
		s.lastUnread = fmt.Sprintf("%s: %v", now.Format("15:04:05.000"), err)
		s.gap(now)
		s.mu.Unlock()
		return
	}
	var voters []voterHealth
	for _, m := range resp.Members {
		if m.IsLearner {
			continue
		}
		v := voterHealth{id: m.ID, name: m.Name}
		if len(m.ClientURLs) > 0 {
			v.url = m.ClientURLs[0]
		}
		voters = append(voters, v)
	}
	var wg sync.WaitGroup
	for k := range voters {
		wg.Add(1)
		go func(v *voterHealth) {
			defer wg.Done()
			if v.url == "" {
				v.why = "not started"
				return
			}
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			st, err := s.c.Status(sctx, v.url)
			switch {
			case err != nil:
				v.why = err.Error()
			case st.Header.MemberId != v.id:
				v.why = fmt.Sprintf("answered as member %x", st.Header.MemberId)
			case st.IsLearner:
				v.why = "a learner by its own status"
			case st.Leader == 0:
				v.why = "no leader"
			case len(st.Errors) > 0:
				v.why = strings.Join(st.Errors, "; ")
			default:
				v.healthy = true
			}
		}(&voters[k])
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	now = time.Now()
	s.markGone(ctx, voters)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	s.gap(now)
	healthy, degraded, departed := 0, false, false
	var view, serving []string
	for _, v := range voters {
		if !v.healthy {
			view = append(view, fmt.Sprintf("%s unhealthy (%s)", v.name, v.why))
			degraded = degraded || !v.gone
			departed = departed || v.gone
			continue
		}
		healthy++
		view = append(view, v.name+" healthy")
		if _, seen := s.firstHealthy[v.name]; !seen {
			s.firstHealthy[v.name] = now
		}
		if !s.left[v.name] {
			serving = append(serving, v.url)
		}
	}
	if departed {
		s.departures++
	}
	if degraded {
		s.degraded++
		s.lastDegraded = fmt.Sprintf("%s: %s", now.Format("15:04:05.000"), strings.Join(view, ", "))
	}
	// A drop counts when two samples in a row see it: a leaving leader
	// hands leadership over, and for the tens of milliseconds of the
	// transfer no member has a leader, which is no loss of a voter.
	sustained := max(healthy, s.prev)
	s.prev = healthy
	if sustained < s.min {
		s.min, s.minAt = sustained, now
		s.minView = fmt.Sprintf("voters %s; members %v", strings.Join(view, ", "), memberList(resp))
	}
	s.max = max(s.max, healthy)
	slices.Sort(serving)
	if len(serving) > 0 && !slices.Equal(serving, s.endpoints) {
		s.endpoints = serving
		s.c.SetEndpoints(serving...)
	}
}

// check logs what the sampler saw and fails t when the cluster had fewer
// than 3 healthy voters, when a member list could not be read, or when
// the samples were too few or too far apart to tell.
func (s *voterSampler) check(t *testing.T, started time.Time) {
	t.Helper()
	w := s.snapshot()
	t.Logf("sampler: %d samples (%d unread), largest gap %s, healthy voters between %d and %d; %d samples caught a voter leaving",
		w.samples, w.unread, w.maxGap.Round(time.Millisecond), w.min, w.max, w.departures)
	if w.degraded > 0 {
		t.Logf("sampler: %d samples saw a listed voter unhealthy; the last at %s", w.degraded, w.lastDegraded)
	}
	if w.min < 3 {
		t.Errorf("the cluster fell to %d healthy voters at %s: %s", w.min, w.minAt.Sub(started).Round(time.Millisecond), w.minView)
	}
	if w.unread > 0 {
		t.Errorf("%d of %d samples could not read the member list; the last: %s", w.unread, w.samples, w.lastUnread)
	}
	if w.samples < 20 || w.maxGap > 5*time.Second {
		t.Errorf("the sampler read the cluster %d times, at most %s apart: too blind to tell", w.samples, w.maxGap)
	}
}

// markGone reads the member list again when a voter was unhealthy, and
// marks those that are no longer members: they left while the sample was
// taken, which does not make the sample count them, only tells the log.
func (s *voterSampler) markGone(ctx context.Context, voters []voterHealth) {
	if !slices.ContainsFunc(voters, func(v voterHealth) bool { return !v.healthy }) {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := s.c.MemberList(lctx)
	if err != nil {
		return
	}
	for k := range voters {
		v := &voters[k]
		if !v.healthy && !slices.ContainsFunc(resp.Members, func(m *etcdserverpb.Member) bool { return m.ID == v.id }) {
			v.gone = true
			v.why += "; no longer a member"
		}
	}
}

// gap notes the time since the previous sample; s.mu is held.
func (s *voterSampler) gap(now time.Time) {
	if !s.last.IsZero() {
		s.maxGap = max(s.maxGap, now.Sub(s.last))
	}
	s.last = now
}

func (s *voterSampler) snapshot() samplerSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := maps.Clone(s.firstHealthy)
	return samplerSnapshot{samples: s.samples, unread: s.unread, min: s.min, max: s.max, lastUnread: s.lastUnread,
		degraded: s.degraded, lastDegraded: s.lastDegraded, departures: s.departures,
		minView: s.minView, minAt: s.minAt, maxGap: s.maxGap, firstHealthy: first}
}
