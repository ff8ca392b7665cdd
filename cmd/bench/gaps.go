package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	etcdversion "go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// The write-gap figures of SPEC §7: the longest time a client writing as
// fast as it can goes without an acknowledged write while members go away.

// writeDeadline is the deadline of each write: a client with a short
// timeout retries on another member rather than wait out a dead one.
const writeDeadline = time.Second

// retryPause paces a writer whose write failed at once (nothing to dial):
// on two cores a spinning client would slow the cluster it measures.
const retryPause = 10 * time.Millisecond

// upgradeFrom is the etcd a rolling upgrade starts from, one minor behind
// the bundled one, as in e2e.TestRollingUpgradeFrom36.
const upgradeFrom = "3.6.16"

// drainHook is the termination lifecycle hook of the drain figure.
const drainHook = "etcd-appliance-terminate"

// measureGaps measures the longest client write gap of a rolling upgrade,
// of the leader's instance terminated, and of a planned drain of the
// leader, each next to the static etcd cluster that loses its leader the
// same way by hand.
func measureGaps(ctx context.Context, binary string, runs int) ([]figure, error) {
	upgrade := figure{name: "rolling upgrade of a group of 3, etcd " + upgradeFrom + " → bundled, one instance terminated and replaced at a time → longest client write gap",
		target: "≤ one leadership transfer", unit: "s"}
	upgradeTime := figure{name: "rolling upgrade of a group of 3, etcd " + upgradeFrom + " → bundled → duration", target: "—", unit: "s",
		note: "from the first termination to 3 healthy voters of the bundled etcd, each step waiting for 3 healthy voters"}
	killed := figure{name: "leader's instance terminated (local provider: SIGKILL, no drain) and replaced → longest client write gap",
		target: "—", unit: "s", note: "until its replacement made 3 healthy voters again"}
	killedRef := figure{name: "limit: static etcd cluster of 3, leader SIGKILLed → longest client write gap", target: "—", unit: "s"}
	drained := figure{name: "planned drain of the leader through the termination hook (moto) → longest client write gap",
		target: "≤ static reference", unit: "s",
		note: "from the IMDS saying Terminated until the first write acknowledged after the hook is completed and the instance terminated"}
	joined := figure{name: "… then its replacement launched → longest client write gap", target: "—", unit: "s",
		note: "from there until 3 healthy voters and DNS again"}
	drainedRef := figure{name: "limit: static etcd cluster of 3, leadership moved by hand, then the old leader stopped (SIGTERM) → longest client write gap",
		target: "—", unit: "s"}

	etcd35, err := buildUpgradeFrom(ctx)
	if err != nil {
		return nil, err
	}
	var steps []string
	for i := range runs {
		gap, took, why, err := measureUpgradeGap(ctx, binary, etcd35)
		if err != nil {
			return nil, fmt.Errorf("rolling upgrade, run %d: %w", i, err)
		}
		upgrade.samples = append(upgrade.samples, gap.Seconds())
		upgradeTime.samples = append(upgradeTime.samples, took.Seconds())
		steps = append(steps, why)
		log.Printf("rolling upgrade: run %d done: longest gap %s (%s), %s in all", i, gap.Round(time.Millisecond), why, took.Round(time.Millisecond))
	}
	upgrade.note = "whole upgrade; the local provider terminates with SIGKILL (no drain), so the step that kills the leader waits for an election; longest in the step of: " +
		strings.Join(steps, ", ")

	kills, err := measureLeaderKilledGaps(ctx, binary, runs)
	if err != nil {
		return nil, fmt.Errorf("leader's instance terminated: %w", err)
	}
	killed.samples = kills
	drained.samples, joined.samples, err = measureDrainGaps(ctx, binary, runs)
	if err != nil {
		return nil, fmt.Errorf("drain of the leader: %w", err)
	}
	for i := range runs {
		gap, err := measureStaticLeaderGap(ctx, binary, false)
		if err != nil {
			return nil, fmt.Errorf("static etcd, leader SIGKILLed, run %d: %w", i, err)
		}
		killedRef.samples = append(killedRef.samples, gap.Seconds())
		gap, err = measureStaticLeaderGap(ctx, binary, true)
		if err != nil {
			return nil, fmt.Errorf("static etcd, leadership moved, run %d: %w", i, err)
		}
		drainedRef.samples = append(drainedRef.samples, gap.Seconds())
		log.Printf("static leader gaps: run %d done", i)
	}
	return []figure{upgrade, upgradeTime, killed, killedRef, drained, drainedRef, joined}, nil
}

// buildUpgradeFrom returns the etcd the rolling upgrade starts from, built
// once and cached by testcluster.BuildEtcd.
func buildUpgradeFrom(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	bin, err := testcluster.BuildEtcd(ctx, upgradeFrom)
	if err != nil {
		return "", fmt.Errorf("no etcd %s to upgrade from: %w", upgradeFrom, err)
	}
	return bin, nil
}

// measureUpgradeGap launches a group of 3 on etcd 3.6 and replaces its
// instances one at a time by instances of the bundled etcd, each step
// waiting for 3 healthy voters, under a writer. It returns the longest
// write gap, the upgrade's duration and which step the gap was in.
func measureUpgradeGap(ctx context.Context, binary, etcd35 string) (time.Duration, time.Duration, string, error) {
	g, done, err := newGroup(binary)
	if err != nil {
		return 0, 0, "", err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	insts, err := g.LaunchNWith(ctx, 3, "--etcd-binary", etcd35)
	if err != nil {
		return 0, 0, "", err
	}
	st, err := g.WaitConverged(ctx, 3)
	if err != nil {
		return 0, 0, "", err
	}
	if err := checkVersions(st, func(v string) bool { return v == upgradeFrom }); err != nil {
		return 0, 0, "", err
	}
	time.Sleep(settle) // see measureGroupFigures
	c, err := g.Client(ctx)
	if err != nil {
		return 0, 0, "", err
	}
	defer c.Close()
	w := startGapWriter(ctx, c)
	defer w.stop()

	start := time.Now()
	var longest gap
	var longestIn string
	for k, victim := range insts {
		role := "follower"
		if leader, err := leaderInstance(ctx, g); err != nil {
			return 0, 0, "", err
		} else if leader == victim.ID {
			role = "leader"
		}
		terminated := time.Now()
		if err := g.Terminate(ctx, victim.ID); err != nil {
			return 0, 0, "", err
		}
		if _, err := g.LaunchNWith(ctx, 1); err != nil {
			return 0, 0, "", err
		}
		if st, err = g.WaitConverged(ctx, 3); err != nil {
			return 0, 0, "", fmt.Errorf("replacing %s: %w", victim.ID, err)
		}
		// The client follows the group: the new member's endpoint in, the
		// terminated one's out, once the step is over.
		running, err := g.RunningInGroup()
		if err != nil {
			return 0, 0, "", err
		}
		var endpoints []string
		for _, inst := range running {
			endpoints = append(endpoints, inst.ClientURL())
		}
		c.SetEndpoints(endpoints...)
		step := w.takeLongest()
		log.Printf("rolling upgrade: step %d (%s %s terminated at %s%s): longest gap %s", k+1, role, victim.ID,
			terminated.Format("15:04:05.000"), electedAfter(logPaths(running), terminated), step)
		if step.length() > longest.length() {
			longest, longestIn = step, fmt.Sprintf("%d (%s)", k+1, role)
		}
	}
	took := time.Since(start)
	bundled, err := cluster.ParseVersion(etcdversion.Version)
	if err != nil {
		return 0, 0, "", err
	}
	if err := checkVersions(st, func(v string) bool { return strings.HasPrefix(v, bundled.MinorString()+".") }); err != nil {
		return 0, 0, "", fmt.Errorf("after the upgrade: %w", err)
	}
	if tail := w.stop(); tail.length() > longest.length() {
		longest, longestIn = tail, "after the last"
	}
	return longest.length(), took, longestIn, nil
}

// logPaths are the logs of insts, into which their etcds log too.
func logPaths(insts []*fleet.Instance) []string {
	var out []string
	for _, inst := range insts {
		out = append(out, inst.LogPath)
	}
	return out
}

// electedAfter says when the first of the etcds logging into logs logged
// that it became leader after t, to tell an election from the client's
// own delays.
func electedAfter(logs []string, t time.Time) string {
	var first time.Time
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, "became leader at term") {
				continue
			}
			// etcd's own lines (a static cluster) say ts; the appliance
			// re-encodes its etcd's with time.
			var l struct {
				TS   string `json:"ts"`
				Time string `json:"time"`
			}
			if json.Unmarshal([]byte(line), &l) != nil {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, cmp.Or(l.Time, l.TS))
			if err == nil && at.After(t) && (first.IsZero() || at.Before(first)) {
				first = at
			}
		}
	}
	if first.IsZero() {
		return ""
	}
	return fmt.Sprintf(", a new leader elected %s after", first.Sub(t).Round(time.Millisecond))
}

// checkVersions fails unless every member's etcd version is as wanted.
func checkVersions(st cluster.ClusterStatus, ok func(string) bool) error {
	for _, m := range st.Members {
		if !ok(m.Version) {
			return fmt.Errorf("member %s runs etcd %q: %s", m.Name, m.Version, fleet.Summarize(st))
		}
	}
	return nil
}

// leaderInstance is the id of the instance whose member leads.
func leaderInstance(ctx context.Context, g *fleet.Group) (string, error) {
	st, err := g.Status(ctx)
	if err != nil {
		return "", err
	}
	for _, m := range st.Members {
		if m.Leader {
			return m.Name, nil
		}
	}
	return "", fmt.Errorf("no leader: %s", fleet.Summarize(st))
}

// measureLeaderKilledGaps terminates the leader's instance of a group of 3
// through the group, runs times, each time launching a replacement and
// waiting for 3 healthy voters, under a writer; it returns each run's
// longest write gap.
func measureLeaderKilledGaps(ctx context.Context, binary string, runs int) ([]float64, error) {
	g, done, err := newGroup(binary)
	if err != nil {
		return nil, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if _, err := g.LaunchN(ctx, 3); err != nil {
		return nil, err
	}
	if _, err := g.WaitConverged(ctx, 3); err != nil {
		return nil, err
	}
	var samples []float64
	for i := range runs {
		time.Sleep(settle) // see measureGroupFigures
		leader, err := leaderInstance(ctx, g)
		if err != nil {
			return nil, err
		}
		c, err := g.Client(ctx)
		if err != nil {
			return nil, err
		}
		w := startGapWriter(ctx, c)
		terminated := time.Now()
		err = g.Terminate(ctx, leader)
		if err == nil {
			_, err = g.Launch(ctx)
		}
		if err == nil {
			_, err = g.WaitConverged(ctx, 3)
		}
		longest := w.stop()
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i, err)
		}
		samples = append(samples, longest.length().Seconds())
		log.Printf("leader's instance terminated: run %d done: terminated at %s%s, longest gap %s", i,
			terminated.Format("15:04:05.000"), electedAfter(logPaths(g.Running()), terminated), longest)
	}
	return samples, nil
}

// measureDrainGaps drains the leader of a group of 3 in moto through the
// termination lifecycle hook, runs times, and returns each run's longest
// write gap, from the start of the termination until the replacement is a
// healthy voter and Route53 lists the new set. As in
// e2e.TestAWSTerminationThroughLifecycleHook, the fleet plays what moto
// lacks: the target lifecycle state in the IMDS, and the fault proxy
// answering CompleteLifecycleAction; the group terminates the instance
// once the hook is completed.
func measureDrainGaps(ctx context.Context, binary string, runs int) (drained, joined []float64, err error) {
	g, proxy, done, err := newAWSGroup(ctx, binary, applianceArgs)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := g.PutTerminationHook(ctx, drainHook); err != nil {
		return nil, nil, err
	}
	proxy.Inject(testcluster.Answer("autoscaling", "CompleteLifecycleAction"))
	if err := waitAWSConverged(ctx, g); err != nil {
		return nil, nil, err
	}
	for i := range runs {
		time.Sleep(settle) // see measureGroupFigures
		st, err := g.Status(ctx)
		if err != nil {
			return nil, nil, err
		}
		var leader string
		for _, m := range st.Members {
			if m.Leader {
				leader = m.Name
			}
		}
		if leader == "" {
			return nil, nil, fmt.Errorf("run %d: no leader: %s", i, fleet.Summarize(st))
		}
		c, err := g.Client(ctx)
		if err != nil {
			return nil, nil, err
		}
		w := startGapWriter(ctx, c)
		leaving, err := drainAndReplace(ctx, g, proxy, leader, w)
		joining := w.stop()
		c.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("run %d: %w", i, err)
		}
		drained = append(drained, leaving.length().Seconds())
		joined = append(joined, joining.length().Seconds())
		log.Printf("drain of the leader: run %d done: longest gap while it left %s; while the replacement joined %s", i, leaving, joining)
	}
	return drained, joined, nil
}

// drainAndReplace starts the termination of the instance id, waits until
// its appliance completed the hook, terminates it through the group and
// waits for its replacement.
func drainAndReplace(ctx context.Context, g *fleet.AWSGroup, proxy *testcluster.FaultProxy, id string, w *gapWriter) (gap, error) {
	completed := proxy.Injected()["CompleteLifecycleAction"]
	start := time.Now()
	if err := g.StartTermination(id); err != nil {
		return gap{}, err
	}
	err := fleet.Poll(ctx, 50*time.Millisecond, func() (bool, string) {
		return proxy.Injected()["CompleteLifecycleAction"] > completed, id + " did not complete the termination hook"
	})
	if err != nil {
		return gap{}, err
	}
	if err := g.TerminateInASG(ctx, id, false); err != nil {
		return gap{}, err
	}
	drained := time.Since(start)
	// A gap open at the termination is the drain's: split once a write
	// after it is acknowledged.
	terminated := time.Now()
	err = fleet.Poll(ctx, 10*time.Millisecond, func() (bool, string) {
		return w.lastAck().After(terminated), "no write acknowledged since the termination"
	})
	if err != nil {
		return gap{}, err
	}
	leaving := w.takeLongest()
	var elected string
	if rest, err := g.Running(ctx); err == nil {
		elected = electedAfter(logPaths(rest), start)
	}
	err = fleet.Poll(ctx, 50*time.Millisecond, func() (bool, string) {
		started, _, err := g.Sync(ctx)
		if err != nil {
			return false, err.Error()
		}
		return len(started) > 0, "no replacement started"
	})
	if err != nil {
		return gap{}, err
	}
	launched := time.Since(start)
	if err := waitAWSConverged(ctx, g); err != nil {
		return gap{}, err
	}
	log.Printf("drain of the leader: termination started at %s%s, hook completed and instance terminated %s after, replacement started %s after, converged %s after",
		start.Format("15:04:05.000"), elected, drained.Round(time.Millisecond), launched.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return leaving, nil
}

// measureStaticLeaderGap starts a static etcd cluster of 3, lets a writer
// run, and stops the leader: with handover, it moves leadership to a
// follower by hand first and stops the old leader with SIGTERM; without,
// it SIGKILLs the leader. It returns the longest write gap until a write
// after the stop is acknowledged and the two others are healthy.
func measureStaticLeaderGap(ctx context.Context, binary string, handover bool) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	sc, err := startStatic(binary, 3, true)
	if err != nil {
		return 0, err
	}
	defer sc.close()
	if err := sc.waitHealthy(ctx, sc.endpoints()...); err != nil {
		return 0, err
	}
	time.Sleep(settle) // as the appliance's figures: a settled cluster
	leader, follower, err := sc.roles(ctx)
	if err != nil {
		return 0, err
	}
	w := startGapWriter(ctx, sc.client)
	defer w.stop()
	sig := syscall.SIGKILL
	moved := time.Now()
	if handover {
		sig = syscall.SIGTERM
		if err := sc.moveLeader(ctx, leader, follower); err != nil {
			return 0, err
		}
	}
	signalled := time.Now()
	if err := sc.signal(ctx, leader, sig); err != nil {
		return 0, err
	}
	stopped := time.Now()
	var rest, logs []string
	for _, m := range sc.members {
		if m != leader {
			rest = append(rest, m.clientURL)
			logs = append(logs, m.logPath)
		}
	}
	if err := sc.waitHealthy(ctx, rest...); err != nil {
		return 0, err
	}
	err = fleet.Poll(ctx, 10*time.Millisecond, func() (bool, string) {
		return w.lastAck().After(stopped), "no write acknowledged since the leader stopped"
	})
	if err != nil {
		return 0, err
	}
	longest := w.stop()
	how := fmt.Sprintf("SIGKILLed at %s%s", signalled.Format("15:04:05.000"), electedAfter(logs, signalled))
	if handover {
		how = fmt.Sprintf("moved by hand at %s (in %s%s), SIGTERM at %s", moved.Format("15:04:05.000"),
			signalled.Sub(moved).Round(time.Millisecond), electedAfter(logs, moved), signalled.Format("15:04:05.000"))
	}
	log.Printf("static leader %s: %s: longest gap %s", leader.name, how, longest)
	return longest.length(), nil
}

// roles returns the leading member and one follower.
func (sc *staticCluster) roles(ctx context.Context) (leader, follower *staticMember, err error) {
	for _, m := range sc.members {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := sc.client.Status(sctx, m.clientURL)
		cancel()
		if err != nil {
			return nil, nil, fmt.Errorf("status of %s: %w", m.name, err)
		}
		m.id = st.Header.MemberId
		if st.Leader == st.Header.MemberId {
			leader = m
		} else {
			follower = m
		}
	}
	if leader == nil || follower == nil {
		return nil, nil, errors.New("no leader and follower among the static members")
	}
	return leader, follower, nil
}

// moveLeader moves leadership from the leader to the follower, as an
// operator would by hand (etcdctl move-leader): through the leader.
func (sc *staticCluster) moveLeader(ctx context.Context, leader, follower *staticMember) error {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{leader.clientURL}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer c.Close()
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.MoveLeader(mctx, follower.id); err != nil {
		return fmt.Errorf("moving leadership from %s to %s: %w", leader.name, follower.name, err)
	}
	return nil
}

// gapWriter writes one key as fast as it can, each write with
// writeDeadline, and keeps the longest interval without an acknowledged
// write.
type gapWriter struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	last    time.Time // the last acknowledgement, or the start
	failure string    // the last error since the last acknowledgement
	failed  int       // writes failed since the last acknowledgement
	acked   int
	longest gap
}

// gap is an interval without an acknowledged write.
type gap struct {
	from, to time.Time
	// err is the last error of the interval's writes, if any failed.
	err    string
	failed int // writes failed in it
	acked  int // writes acknowledged before its end
}

func (g gap) length() time.Duration { return g.to.Sub(g.from) }

func (g gap) String() string {
	s := fmt.Sprintf("%s from %s", g.length().Round(time.Millisecond), g.from.Format("15:04:05.000"))
	if g.err != "" {
		s += fmt.Sprintf(", %d writes failed, the last with: %s", g.failed, g.err)
	}
	return s
}

func startGapWriter(ctx context.Context, c *clientv3.Client) *gapWriter {
	ctx, cancel := context.WithCancel(ctx)
	w := &gapWriter{cancel: cancel, done: make(chan struct{}), last: time.Now()}
	go w.run(ctx, c)
	return w
}

func (w *gapWriter) run(ctx context.Context, c *clientv3.Client) {
	defer close(w.done)
	for i := 0; ; i++ {
		pctx, cancel := context.WithTimeout(ctx, writeDeadline)
		_, err := c.Put(pctx, "bench/gap", strconv.Itoa(i))
		cancel()
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		w.mu.Lock()
		if err == nil {
			w.acked++
			if now.Sub(w.last) > w.longest.length() {
				w.longest = gap{from: w.last, to: now, err: w.failure, failed: w.failed, acked: w.acked}
			}
			w.last, w.failure, w.failed = now, "", 0
		} else {
			w.failure = err.Error()
			w.failed++
		}
		w.mu.Unlock()
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(retryPause):
			}
		}
	}
}

// lastAck is when the last write was acknowledged.
func (w *gapWriter) lastAck() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// takeLongest returns the longest gap so far and starts over, as for the
// next step of a scenario.
func (w *gapWriter) takeLongest() gap {
	w.mu.Lock()
	defer w.mu.Unlock()
	g := w.longest
	w.longest = gap{}
	return g
}

// stop ends the writer and returns its longest gap, counting the interval
// from the last acknowledgement to the stop. It may be called again.
func (w *gapWriter) stop() gap {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if now := time.Now(); now.Sub(w.last) > w.longest.length() {
		w.longest = gap{from: w.last, to: now, err: w.failure, failed: w.failed, acked: w.acked}
	}
	w.last = time.Now()
	return w.longest
}
