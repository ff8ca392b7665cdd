package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// The terminations of issue 10 at any pace (§4.5, the drain budget): the
// group terminates members as fast as it likes, several at once, and the
// cluster takes them one disruption at a time — a member leaves only when
// the rest is at full strength, so the cluster never has fewer than 2
// healthy voters of 3 and loses no acknowledged write.
//
// moto gaps (see fleet/awslifecycle.go): moto neither holds an instance in
// Terminating:Wait nor serves CompleteLifecycleAction. The harness plays
// the termination: the instance's IMDS target state turns Terminated, the
// fault proxy lists it Terminating:Wait in Auto Scaling's answers (as the
// group does while the hook holds it), and answers the completion; the
// test then terminates the instance through the group, which launches the
// replacement. Real groups launch the replacement while the old instance
// waits in the hook; this harness launches it only once the hook is
// completed, the slower of the two for the budget.

// paceHook is the termination lifecycle hook of the pace tests.
const paceHook = "etcd-appliance-terminate"

// paceRun is one pace test: the group with its termination hook, the
// harness side of the terminations, a writer counting acknowledged writes
// and a watch of the cluster's healthy voters.
type paceRun struct {
	t       *testing.T
	g       *fleet.AWSGroup
	proxy   *testcluster.FaultProxy
	before  cluster.ClusterStatus
	client  *clientv3.Client
	watch   *voterWatch
	started time.Time

	// completions gets each CompleteLifecycleAction the proxy answers.
	completions chan completion

	mu         sync.Mutex
	victims    map[string]time.Time // termination started, by instance
	completed  map[string]time.Time // hook completed, by instance
	terminated []string             // terminated through the group, in order

	stopWrites chan struct{}
	wrote      chan paceWrites
	stopWatch  func()
	stopFollow func()
}

type completion struct {
	id string
	at time.Time
}

type paceWrites struct {
	acked int
	err   error
}

// newPaceRun starts a group of 3 with a termination hook, waits for 3
// healthy voters, and starts the writer and the watch.
func newPaceRun(t *testing.T) *paceRun {
	g, proxy := newFaultyAWSGroup(t, fleet.AWSOptions{Size: 3, HostedZone: testZone})
	ctx := testContext(t, 2*time.Minute)
	if err := g.PutTerminationHook(ctx, paceHook); err != nil {
		t.Fatal(err)
	}
	p := &paceRun{
		t: t, g: g, proxy: proxy,
		completions: make(chan completion, 16),
		victims:     map[string]time.Time{},
		completed:   map[string]time.Time{},
	}
	answer := testcluster.Answer("autoscaling", "CompleteLifecycleAction")
	answer.Observe = func(params url.Values) {
		p.completions <- completion{id: params.Get("InstanceId"), at: time.Now()}
	}
	proxy.Inject(answer)
	p.before = waitAWSConverged(t, ctx, g, 3)
	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p.client = c
	p.stopFollow = g.Follow(ctx)
	t.Cleanup(p.stopFollow)

	p.watch = &voterWatch{min: 3, prev: 3, instant: 3, firstVoter: map[string]time.Time{}, learnerSeen: map[string]time.Time{}}
	wctx, cancel := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		p.watch.run(wctx, p)
	}()
	p.stopWatch = func() { cancel(); <-watched }
	t.Cleanup(p.stopWatch)

	p.stopWrites = make(chan struct{})
	p.wrote = make(chan paceWrites, 1)
	go func() {
		n, err := writeCounting(ctx, c, "pace", p.stopWrites)
		p.wrote <- paceWrites{n, err}
	}()
	p.started = time.Now()
	return p
}

// terminate starts the group's termination of id: its target lifecycle
// state turns Terminated, and the group lists it Terminating:Wait.
func (p *paceRun) terminate(id string) {
	p.t.Helper()
	p.mu.Lock()
	p.victims[id] = time.Now()
	p.mu.Unlock()
	p.proxy.SetLifecycleState(id, "Terminating:Wait")
	if err := p.g.StartTermination(id); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("%s: the group starts terminating %s", p.since(), id)
}

// nextCompletion waits for the next CompleteLifecycleAction of an instance
// under termination, then lets the group go on as the hook's CONTINUE
// does: it terminates the instance, and launches a replacement.
func (p *paceRun) nextCompletion(ctx context.Context) completion {
	p.t.Helper()
	for {
		var c completion
		select {
		case c = <-p.completions:
		case <-ctx.Done():
			p.t.Fatalf("%s: no termination hook completed: %v (terminating %v, completed %v)",
				p.since(), ctx.Err(), p.victimIDs(), p.completedIDs())
		}
		p.mu.Lock()
		_, victim := p.victims[c.id]
		_, dup := p.completed[c.id]
		if victim && !dup {
			p.completed[c.id] = c.at
		}
		p.mu.Unlock()
		if !victim {
			p.t.Fatalf("%s completed a termination hook, but the group is not terminating it", c.id)
		}
		if dup {
			continue
		}
		p.t.Logf("%s: %s completed its termination hook", p.since(), c.id)
		if err := p.g.TerminateInASG(ctx, c.id, false); err != nil {
			p.t.Fatal(err)
		}
		p.proxy.ClearLifecycleState(c.id)
		p.mu.Lock()
		p.terminated = append(p.terminated, c.id)
		p.mu.Unlock()
		return c
	}
}

// finish waits for 3 healthy voters again, stops the writer and the watch,
// and checks what every pace test asserts: never fewer than 2 healthy
// voters, the same cluster, the in-service instances as members, every
// acknowledged write on every member.
func (p *paceRun) finish(ctx context.Context) cluster.ClusterStatus {
	t := p.t
	t.Helper()
	after := waitAWSConverged(t, ctx, p.g, 3)
	t.Logf("%s: 3 healthy voters again: %s", p.since(), fleet.Summarize(after))
	close(p.stopWrites)
	res := <-p.wrote
	p.stopWatch()
	if res.err != nil {
		t.Errorf("writes failed while members left: %v", res.err)
	}
	w := p.watch.snapshot()
	t.Logf("watch: %d status polls (%d unanswered), fewest healthy voters %d over two polls in a row (%d in one); %d writes acknowledged",
		w.polls, w.failed, w.min, w.instant, res.acked)
	if w.min < 2 {
		t.Errorf("the cluster fell to %d healthy voters at %s: %s", w.min, w.minAt.Sub(p.started).Round(time.Millisecond), w.minView)
	}
	if w.polls < 10 || w.failed > w.polls/4 {
		t.Errorf("the watch read the cluster %d times, %d unanswered: too few to tell", w.polls, w.failed)
	}
	if after.ClusterID != p.before.ClusterID {
		t.Errorf("cluster id changed from %s to %s", p.before.ClusterID, after.ClusterID)
	}
	if ids := inService(t, ctx, p.g); !slices.Equal(memberNames(after), ids) {
		t.Errorf("members %v, want the in-service instances %v", memberNames(after), ids)
	}
	for _, id := range p.victimIDs() {
		if slices.Contains(memberNames(after), id) {
			t.Errorf("%s is still a member after its termination", id)
		}
	}
	checkAWSKeysOnEach(t, ctx, p.g, "pace", res.acked)
	return after
}

// replacementVotersBefore returns the replacements (members that were not
// in the cluster at the start) that the watch saw as healthy voters before
// at.
func (p *paceRun) replacementVotersBefore(at time.Time) []string {
	w := p.watch.snapshot()
	var out []string
	for name, seen := range w.firstVoter {
		if !slices.Contains(memberNames(p.before), name) && seen.Before(at) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// heldLine is what an appliance logs when the drain budget holds its
// termination.
const heldLine = "holding the termination: the rest of the cluster is not at full strength"

// held reports whether id's appliance says that the drain budget held its
// termination.
func (p *paceRun) held(id string) bool {
	p.t.Helper()
	inst := p.g.Instance(id)
	if inst == nil {
		p.t.Fatalf("%s is no instance of the group", id)
	}
	log, err := os.ReadFile(inst.LogPath)
	if err != nil {
		p.t.Fatal(err)
	}
	return strings.Contains(string(log), heldLine)
}

func (p *paceRun) since() time.Duration { return time.Since(p.started).Round(time.Millisecond) }

func (p *paceRun) victimIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.victims))
	for id := range p.victims {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (p *paceRun) completedIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.completed))
	for id := range p.completed {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (p *paceRun) isVictim(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.victims[id]
	return ok
}

// voterWatch reads the whole-cluster status of a member that the group is
// not terminating every 100 ms and keeps the fewest healthy voters seen
// by two polls in a row, when each member was first a healthy voter and
// first a learner. It also points the writer's client at those members.
// A leaving leader hands leadership over, and every member then has no
// leader, so no healthy voter, for the tens of milliseconds of the
// transfer: a single poll that lands in it is no loss of quorum, which
// lasts at least an election timeout (1 s). instant keeps the fewest one
// poll saw, for the log.
type voterWatch struct {
	mu          sync.Mutex
	polls       int
	failed      int
	min         int
	prev        int
	instant     int
	minAt       time.Time
	minView     string
	firstVoter  map[string]time.Time
	learnerSeen map[string]time.Time
	endpoints   []string
}

type watchSnapshot struct {
	polls, failed, min, instant int
	minAt                       time.Time
	minView                     string
	firstVoter                  map[string]time.Time
	learnerSeen                 map[string]time.Time
}

func (w *voterWatch) run(ctx context.Context, p *paceRun) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		w.poll(ctx, p)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// poll asks the running instances that the group is not terminating, the
// oldest first, until one reports a cluster view.
func (w *voterWatch) poll(ctx context.Context, p *paceRun) {
	var st cluster.ClusterStatus
	var ok bool
	var urls []string
	for _, inst := range p.g.Instances() {
		if !inst.Running() || p.isVictim(inst.ID) {
			continue
		}
		urls = append(urls, inst.ClientURL())
		if ok {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := p.g.StatusOf(sctx, inst.ID)
		cancel()
		if err == nil && s.Error == "" && len(s.Members) > 0 {
			st, ok = s, true
		}
	}
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.polls++
	if !ok {
		w.failed++
		return
	}
	n := st.HealthyVoters()
	w.instant = min(w.instant, n)
	if sustained := max(n, w.prev); sustained < w.min {
		w.min, w.minAt, w.minView = sustained, now, fleet.Summarize(st)
	}
	w.prev = n
	var serving []string
	for _, m := range st.Members {
		switch {
		case m.Role == cluster.RoleVoter && m.Healthy:
			if _, seen := w.firstVoter[m.Name]; !seen {
				w.firstVoter[m.Name] = now
			}
			if inst := p.g.Instance(m.Name); inst != nil && !p.isVictim(m.Name) {
				serving = append(serving, inst.ClientURL())
			}
		case m.Role == cluster.RoleLearner && m.Name != "":
			if _, seen := w.learnerSeen[m.Name]; !seen {
				w.learnerSeen[m.Name] = now
			}
		}
	}
	// The writer's client follows the serving voters, as a client that
	// resolves the cluster's SRV records would.
	slices.Sort(serving)
	if len(serving) > 0 && !slices.Equal(serving, w.endpoints) {
		w.endpoints = serving
		p.client.SetEndpoints(serving...)
	}
}

func (w *voterWatch) snapshot() watchSnapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	return watchSnapshot{polls: w.polls, failed: w.failed, min: w.min, instant: w.instant, minAt: w.minAt, minView: w.minView,
		firstVoter: maps.Clone(w.firstVoter), learnerSeen: maps.Clone(w.learnerSeen)}
}

// writeCounting writes keyName(prefix, i) for i = 0, 1, … through c until
// stop closes, and returns how many writes were acknowledged: each must be
// within 10 s, retried as a client with a timeout would (writing the same
// value again is harmless).
func writeCounting(ctx context.Context, c *clientv3.Client, prefix string, stop <-chan struct{}) (int, error) {
	pace := time.NewTicker(10 * time.Millisecond)
	defer pace.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return i, nil
		case <-pace.C:
		}
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		err := fleet.Poll(wctx, 50*time.Millisecond, func() (bool, string) {
			pctx, cancel := context.WithTimeout(wctx, 2*time.Second)
			defer cancel()
			_, err := c.Put(pctx, keyName(prefix, i), keyValue(prefix, i))
			return err == nil, fmt.Sprint(err)
		})
		wcancel()
		if err != nil {
			return i, fmt.Errorf("write %d: %w", i, err)
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestAWSPaceTwoTerminationsAtOnce: the group starts terminating two of
// three instances at the same moment, as an instance refresh or an AZ
// rebalancing may, without decrement, so it replaces each. The two leave
// one after the other: the lower instance id first, the other only once the
// first's replacement is a voter (held by the drain budget, or waiting for
// the membership lock the joining replacement holds). The cluster never
// has fewer than 2 healthy voters, keeps every acknowledged write, and
// ends at 3 healthy voters with the same cluster id.
func TestAWSPaceTwoTerminationsAtOnce(t *testing.T) {
	p := newPaceRun(t)
	ctx := testContext(t, 90*time.Second)
	// The leader and a follower: the leader must hand leadership over too.
	leader := leaderOf(t, p.before).Name
	victims := []string{leader, followerOf(t, p.before).Name}
	for _, id := range victims {
		p.terminate(id)
	}
	first := p.nextCompletion(ctx)
	second := p.nextCompletion(ctx)
	p.finish(ctx)

	if want := slices.Min(victims); first.id != want {
		t.Errorf("%s left first, want %s: the lower instance id goes first", first.id, want)
	}
	if got := p.replacementVotersBefore(second.at); len(got) < 1 {
		t.Errorf("%s completed its hook %s after %s, before any replacement was a voter",
			second.id, second.at.Sub(first.at).Round(time.Millisecond), first.id)
	}
	// The second waits for the replacement either held by the drain budget
	// or on the membership lock that the joining replacement holds: the
	// assertion above is what matters, the log says which.
	t.Logf("%s left %s after the start, %s %s after it; held by the drain budget: %v", first.id,
		first.at.Sub(p.started).Round(time.Millisecond), second.id, second.at.Sub(first.at).Round(time.Millisecond), p.held(second.id))
}

// TestChaosAWSPaceThreeInARow: the group terminates the three original
// instances one after the other at the fastest pace the harness can
// drive: the next termination starts the moment the previous instance
// completed its hook, before its replacement has even joined. Each one
// leaves only once the previous replacement is a voter — held by the drain
// budget, or waiting for the membership lock that the joining replacement
// holds; the test says which. The cluster never has fewer than 2 healthy
// voters and keeps every acknowledged write.
func TestChaosAWSPaceThreeInARow(t *testing.T) {
	p := newPaceRun(t)
	ctx := testContext(t, 120*time.Second)
	order := memberNames(p.before)
	p.terminate(order[0])
	var done []completion
	for k := range order {
		c := p.nextCompletion(ctx)
		if c.id != order[k] {
			t.Fatalf("%s completed its hook, want %s", c.id, order[k])
		}
		done = append(done, c)
		if k+1 < len(order) {
			p.terminate(order[k+1])
		}
	}
	p.finish(ctx)
	for k := 1; k < len(done); k++ {
		if got := p.replacementVotersBefore(done[k].at); len(got) < k {
			t.Errorf("%s completed its hook when %d replacements were voters (%v), want %d",
				done[k].id, len(got), got, k)
		}
	}
	for _, c := range done {
		t.Logf("%s completed its hook %s after the start; held by the drain budget: %v",
			c.id, c.at.Sub(p.started).Round(time.Millisecond), p.held(c.id))
	}
}

// TestChaosAWSPaceTerminationWhileReplacementIsLearner: the group starts the
// next termination while the first replacement is still a learner. The
// member leaves only once that learner is a promoted voter. (Whether the
// budget holds it depends on the promotion: the appliance reads its target
// state every second, and a learner in sync is promoted within about as
// long; the test says which happened.)
func TestChaosAWSPaceTerminationWhileReplacementIsLearner(t *testing.T) {
	p := newPaceRun(t)
	ctx := testContext(t, 90*time.Second)
	order := memberNames(p.before)
	p.terminate(order[0])
	first := p.nextCompletion(ctx)

	// The replacement joins as a learner: terminate the next one then.
	var learner string
	err := fleet.Poll(ctx, 10*time.Millisecond, func() (bool, string) {
		mctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		resp, err := p.client.MemberList(mctx)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range resp.Members {
			if m.IsLearner {
				learner = fmt.Sprintf("%x=%s", m.ID, m.Name)
				return true, ""
			}
		}
		return false, fmt.Sprintf("no learner among %v", memberList(resp))
	})
	if err != nil {
		t.Fatalf("the replacement of %s never showed as a learner: %v", first.id, err)
	}
	t.Logf("%s: the replacement %s is a learner", p.since(), learner)
	p.terminate(order[1])
	second := p.nextCompletion(ctx)
	p.finish(ctx)

	if got := p.replacementVotersBefore(second.at); len(got) < 1 {
		t.Errorf("%s completed its hook before the replacement %s was a voter", second.id, learner)
	}
	t.Logf("%s held by the drain budget: %v", second.id, p.held(second.id))
}
