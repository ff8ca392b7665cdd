package e2e

// The robustness tier (docs/ROBUSTNESS.md): concurrent clients record every
// request and answer while a fault hits a group whose instances each run in
// their own network namespace; porcupine then checks the history
// linearizable, and the watches are held to etcd's guarantees. `make test`
// runs the sample (faults marked sample, seed 1); `make chaos` every fault
// with several seeds.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/robustness"
)

// The tier's settings, from the environment (make chaos sets them).
const (
	// envCatalogue "all" runs every fault; otherwise only the sample.
	envCatalogue = "ROBUSTNESS_CATALOGUE"
	// envFaults names the faults to run, comma-separated (overrides the
	// catalogue): how a failure is replayed.
	envFaults = "ROBUSTNESS_FAULTS"
	// envSeeds lists the seeds, comma-separated; default 1.
	envSeeds = "ROBUSTNESS_SEEDS"
	// envResults names a file that receives one Markdown table row per run.
	envResults = "ROBUSTNESS_RESULTS"
)

// fault is one entry of the catalogue: inject applies it to a converged
// group of three while the clients record, and returns once it is over
// (healed, replaced, restarted); the run then waits for three healthy
// voters before the clients stop.
type fault struct {
	name   string
	sample bool
	inject func(r *faultRun) error
}

var peerPort, apiPort, clientPort = cluster.DefaultPorts.Peer, cluster.DefaultPorts.API, cluster.DefaultPorts.Client

// catalogue is every fault of the tier, in docs/ROBUSTNESS.md's order.
var catalogue = []fault{
	{name: "partition-leader", sample: true, inject: func(r *faultRun) error { return r.isolate(r.leader) }},
	{name: "partition-leader-peer-port", inject: func(r *faultRun) error { return r.isolate(r.leader, peerPort) }},
	{name: "partition-leader-appliance-port", inject: func(r *faultRun) error { return r.isolate(r.leader, apiPort) }},
	{name: "partition-follower", inject: func(r *faultRun) error { return r.isolate(r.follower) }},
	{name: "asymmetric-leader-outbound", inject: func(r *faultRun) error { return r.cutOneWay(r.leader, true) }},
	{name: "asymmetric-leader-inbound", inject: func(r *faultRun) error { return r.cutOneWay(r.leader, false) }},
	{name: "kill-etcd-leader", sample: true, inject: func(r *faultRun) error { return r.killEtcd(r.leader) }},
	{name: "kill-appliance-leader", inject: func(r *faultRun) error { return r.killAppliance(r.leader) }},
	{name: "freeze-appliance-leader", inject: func(r *faultRun) error { return r.freezeAppliance(r.leader) }},
	{name: "freeze-etcd-leader", inject: func(r *faultRun) error { return r.freezeEtcd(r.leader) }},
	{name: "replace-follower", inject: func(r *faultRun) error { return r.replace(r.follower, false) }},
	{name: "replace-leader", inject: func(r *faultRun) error { return r.replace(r.leader, false) }},
	{name: "partition-during-join", inject: func(r *faultRun) error { return r.replace(r.follower, true) }},
	{name: "churn", inject: func(r *faultRun) error { return r.churn() }},
	{name: "crash-whole-group", inject: func(r *faultRun) error { return r.crashAll() }},
	{name: "disk-full", inject: func(r *faultRun) error { return r.diskFull(r.follower) }},
	{name: "partition-during-leave", inject: func(r *faultRun) error { return r.partitionDuringLeave(r.follower) }},
}

func TestRobustness(t *testing.T) {
	faults, seeds := robustnessSelection(t)
	for _, f := range faults {
		for _, seed := range seeds {
			t.Run(fmt.Sprintf("%s/seed-%d", f.name, seed), func(t *testing.T) { runFault(t, f, seed) })
		}
	}
}

// robustnessSelection is the faults and seeds the environment asks for.
func robustnessSelection(t *testing.T) ([]fault, []uint64) {
	var faults []fault
	names := os.Getenv(envFaults)
	for _, f := range catalogue {
		switch {
		case names != "":
			if slices.Contains(strings.Split(names, ","), f.name) {
				faults = append(faults, f)
			}
		case os.Getenv(envCatalogue) == "all" || f.sample:
			faults = append(faults, f)
		}
	}
	if len(faults) == 0 {
		t.Fatalf("%s=%q names no fault of the catalogue", envFaults, names)
	}
	seeds := []uint64{1}
	if s := os.Getenv(envSeeds); s != "" {
		seeds = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if err != nil || n == 0 {
				t.Fatalf("%s: %q is not a seed (a positive integer)", envSeeds, f)
			}
			seeds = append(seeds, n)
		}
	}
	return faults, seeds
}

// faultRun is one fault applied to one group, with the seed's choices.
type faultRun struct {
	t   *testing.T
	ctx context.Context
	g   *fleet.Group
	rng *rand.Rand
	// leader and follower are members of the converged group before the
	// fault; follower is one of the other two, as the seed picks.
	leader, follower string
}

func runFault(t *testing.T, f fault, seed uint64) {
	g := newGroupWith(t, fleet.Options{Netns: true})
	ctx := testContext(t, 4*time.Minute)
	_, st := startConverged(t, ctx, g, 3)
	r := &faultRun{t: t, ctx: ctx, g: g, rng: rand.New(rand.NewPCG(seed, 0x7e57))}
	var followers []string
	for _, m := range st.Members {
		if m.Leader {
			r.leader = m.Name
		} else {
			followers = append(followers, m.Name)
		}
	}
	if r.leader == "" || len(followers) != 2 {
		t.Fatalf("no leader and two followers in %s", fleet.Summarize(st))
	}
	r.follower = followers[r.rng.IntN(2)]

	clients := robustnessClients(t, st)
	stop := make(chan struct{})
	var (
		h       *robustness.History
		recErr  error
		recDone = make(chan struct{})
	)
	go func() {
		defer close(recDone)
		h, recErr = robustness.Record(ctx, clients, robustness.Options{Clients: 6, Duration: 2 * time.Minute, Stop: stop, Seed: seed})
	}()
	stopClients := sync.OnceFunc(func() { close(stop); <-recDone })
	t.Cleanup(stopClients)

	began := time.Now()
	if err := r.pause(r.between(500*time.Millisecond, 1500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := f.inject(r); err != nil {
		t.Fatalf("injecting %s: %v", f.name, err)
	}
	after := waitConverged(t, ctx, g, 3)
	// A last stretch of load on the healed cluster.
	if err := r.pause(time.Second); err != nil {
		t.Fatal(err)
	}
	stopClients()
	if recErr != nil {
		t.Fatalf("recording: %v", recErr)
	}
	if after.ClusterID != st.ClusterID {
		t.Errorf("the cluster is %s after the fault, %s before: a second cluster", after.ClusterID, st.ClusterID)
	}
	report, err := robustness.Check(h, robustness.CheckOptions{ArtifactDir: robustnessArtifacts(t)})
	t.Logf("%s seed %d: %s", f.name, seed, report)
	writeResult(t, f.name, seed, report, err, time.Since(began))
	if err != nil {
		t.Fatal(err)
	}
	if report.AckedWrites == 0 {
		t.Errorf("no write was acknowledged: the run checked nothing")
	}
}

// robustnessClients are one client over every member, then one per member,
// pinned to it: a pinned client must never read stale data, whatever side
// of a partition its member is on.
func robustnessClients(t *testing.T, st cluster.ClusterStatus) []*clientv3.Client {
	var all []string
	var clients []*clientv3.Client
	dial := func(endpoints ...string) {
		// The client's own retry warnings would bury the test's log.
		c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		clients = append(clients, c)
	}
	for _, m := range st.Members {
		all = append(all, m.ClientURL)
	}
	// First: the watcher and worker 0 use it, and outlive any one member.
	dial(all...)
	for _, u := range all {
		dial(u)
	}
	return clients
}

// robustnessArtifacts is where a failing check keeps its history and
// porcupine's visualisation: $ROBUSTNESS_ARTIFACTS/<test>, or next to the
// saved logs of failed tests.
func robustnessArtifacts(t *testing.T) string {
	root := os.Getenv("ROBUSTNESS_ARTIFACTS")
	if root == "" {
		root = filepath.Join(os.TempDir(), "etcd-appliance-e2e-failures")
	}
	return filepath.Join(root, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+"-"+time.Now().Format("150405"))
}

// writeResult appends the run's row to $ROBUSTNESS_RESULTS, when set.
func writeResult(t *testing.T, name string, seed uint64, r robustness.Report, checkErr error, took time.Duration) {
	path := os.Getenv(envResults)
	if path == "" {
		return
	}
	verdict := "ok"
	if checkErr != nil {
		verdict = "FAILED: " + strings.ReplaceAll(checkErr.Error(), "|", "/")
	}
	row := fmt.Sprintf("| %s | %d | %d | %d | %d | %d | %d | %s | %d | %s | %s |\n", name, seed, r.Operations, r.OK, r.Unknown,
		r.AckedWrites, r.WatchEvents, r.Linearizable, len(r.Violations), took.Round(100*time.Millisecond), verdict)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("writing the results: %v", err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(row); err != nil {
		t.Errorf("writing the results: %v", err)
	}
}

// between is a duration in [lo, hi) that the seed picks.
func (r *faultRun) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.rng.Int64N(int64(hi-lo)))
}

// pause lets d pass under load: how long a fault lasts, not a wait for
// anything.
func (r *faultRun) pause(d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// hold is how long a partition or a freeze lasts: long enough for
// elections (etcd's default election timeout is 1 s) and for the
// appliance's own timers to notice.
func (r *faultRun) hold() error { return r.pause(r.between(2*time.Second, 5*time.Second)) }

func (r *faultRun) others(id string) []string {
	var out []string
	for _, inst := range r.g.Running() {
		if inst.ID != id {
			out = append(out, inst.ID)
		}
	}
	return out
}

// isolate cuts id from every other instance, on ports (none: all), both
// ways; the test's clients still reach it.
func (r *faultRun) isolate(id string, ports ...int) error {
	if err := r.g.Isolate(id, ports...); err != nil {
		return err
	}
	return errors.Join(r.hold(), r.g.HealAll())
}

// cutOneWay drops the peer traffic id sends (outbound) or receives.
func (r *faultRun) cutOneWay(id string, outbound bool) error {
	for _, o := range r.others(id) {
		from, to := id, o
		if !outbound {
			from, to = o, id
		}
		if err := r.g.Cut(from, to, peerPort); err != nil {
			return err
		}
	}
	return errors.Join(r.hold(), r.g.HealAll())
}

func (r *faultRun) killEtcd(id string) error {
	_, err := r.g.KillEtcd(id)
	return err
}

// killAppliance crashes the appliance (its etcd dies with it) and starts
// it again on its data.
func (r *faultRun) killAppliance(id string) error {
	if err := r.g.Kill(id); err != nil {
		return err
	}
	if err := r.pause(r.between(0, time.Second)); err != nil {
		return err
	}
	return r.g.Start(r.ctx, id)
}

func (r *faultRun) freezeAppliance(id string) error {
	if err := r.g.Freeze(id); err != nil {
		return err
	}
	return errors.Join(r.hold(), r.g.Thaw(id))
}

// freezeEtcd stops the etcd process (SIGSTOP), as a stalled disk or a
// paused VM would, and lets it go on.
func (r *faultRun) freezeEtcd(id string) error {
	pid, err := r.g.Instance(id).EtcdPID()
	if err != nil || pid == 0 {
		return fmt.Errorf("no etcd to freeze on %s (%v)", id, err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return err
	}
	holdErr := r.hold()
	// The appliance may have killed the stalled etcd meanwhile.
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return errors.Join(holdErr, err)
	}
	return holdErr
}

// replace terminates id and launches a new instance; with partition, the
// newcomer is cut from the leader's peer port while it joins.
func (r *faultRun) replace(id string, partition bool) error {
	if err := r.g.Terminate(r.ctx, id); err != nil {
		return err
	}
	inst, err := r.g.Launch(r.ctx)
	if err != nil {
		return err
	}
	if !partition {
		return nil
	}
	leader := r.leader
	if leader == id {
		leader = r.others(inst.ID)[0]
	}
	if err := r.g.CutBoth(inst.ID, leader, peerPort); err != nil {
		return err
	}
	return errors.Join(r.hold(), r.g.HealAll())
}

// churn replaces the three original instances one after another, each as
// soon as the group is back to three healthy voters.
func (r *faultRun) churn() error {
	for _, id := range append([]string{r.follower}, r.others(r.follower)...) {
		if err := r.replace(id, false); err != nil {
			return err
		}
		if _, err := r.g.WaitConverged(r.ctx, 3); err != nil {
			return err
		}
	}
	return nil
}

// crashAll kills every appliance at once (SIGKILL: the page cache
// survives, unlike a power cut) and starts them all again.
func (r *faultRun) crashAll() error {
	ids := r.others("")
	for _, id := range ids {
		if err := r.g.Kill(id); err != nil {
			return err
		}
	}
	if err := r.pause(r.between(0, time.Second)); err != nil {
		return err
	}
	return r.g.Start(r.ctx, ids...)
}
