package e2e

// A majority lost for good under recorded load (issue 12): two of three
// instances are terminated at once while clients read and write, two new
// ones are launched, and after --dr-grace the survivor recovers its data as
// a new cluster. What the lost cluster answered must be linearizable; the
// recovered data must be the lost cluster's history up to the revision the
// survivor logged, and the acknowledged writes past it must fit in the loss
// the recovery reported (lost_revisions); clients must see the break as a
// compaction; and one new cluster must remain.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/robustness"
)

// TestRobustnessMajorityLoss runs the scenario once per seed of
// $ROBUSTNESS_SEEDS (default 1; make chaos runs several).
func TestRobustnessMajorityLoss(t *testing.T) {
	_, seeds := robustnessSelection(t)
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) { runMajorityLoss(t, seed) })
	}
}

func runMajorityLoss(t *testing.T, seed uint64) {
	g := newGroupWith(t, fleet.Options{Netns: true, Args: []string{"--dr-grace", drGrace.String()}})
	ctx := testContext(t, 3*time.Minute)
	_, before := startConverged(t, ctx, g, 3)
	r := &faultRun{t: t, ctx: ctx, g: g, rng: rand.New(rand.NewPCG(seed, 0xd15a))}
	var leader cluster.MemberStatus
	var followers []cluster.MemberStatus
	for _, m := range before.Members {
		if m.Leader {
			leader = m
		} else {
			followers = append(followers, m)
		}
	}
	if leader.Name == "" || len(followers) != 2 {
		t.Fatalf("no leader and two followers in %s", fleet.Summarize(before))
	}
	// The seed loses the leader and a follower, or both followers.
	survivor, victims := leader, followers
	if r.rng.IntN(2) == 0 {
		k := r.rng.IntN(2)
		survivor, victims = followers[1-k], []cluster.MemberStatus{leader, followers[k]}
	}
	t.Logf("seed %d: %s and %s will be terminated, %s survives (leader %s)", seed, victims[0].Name, victims[1].Name, survivor.Name, leader.Name)

	// Worker and watcher i use clients[i%4]: watcher 0 follows the cluster
	// through every member's URL, watcher 1 through the survivor's.
	var all []string
	for _, m := range before.Members {
		all = append(all, m.ClientURL)
	}
	clients := []*clientv3.Client{dialEtcd(t, all...), dialEtcd(t, survivor.ClientURL),
		dialEtcd(t, victims[0].ClientURL), dialEtcd(t, victims[1].ClientURL)}
	stop := make(chan struct{})
	var (
		h       *robustness.History
		recErr  error
		recDone = make(chan struct{})
	)
	// Record's clock starts at or after t0: an instant x is at most
	// x - t0 on the history's clock.
	t0 := time.Now()
	go func() {
		defer close(recDone)
		h, recErr = robustness.Record(ctx, clients, robustness.Options{Clients: 6, Watchers: 2, Duration: 2 * time.Minute, Stop: stop, Seed: seed})
	}()
	stopClients := sync.OnceFunc(func() { close(stop); <-recDone })
	t.Cleanup(stopClients)

	if err := r.pause(r.between(time.Second, 2500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	lossStart := time.Now()
	errs := make([]error, len(victims))
	var terminating sync.WaitGroup
	for i, v := range victims {
		terminating.Go(func() { errs[i] = g.Terminate(ctx, v.Name) })
	}
	terminating.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	// From here on the lost cluster can commit nothing: whatever answers
	// later comes from another cluster.
	lossDone := int64(time.Since(t0))
	if _, err := g.LaunchN(ctx, 2); err != nil {
		t.Fatal(err)
	}
	rec := waitRecoveredOnData(t, ctx, g, survivor.Name)
	after := waitConverged(t, ctx, g, 3)
	t.Logf("serving 3 voters again %s after the loss; the survivor recovered at revision %d, lost_revisions %d",
		time.Since(lossStart).Round(time.Millisecond), rec.revision, rec.lost)
	if err := r.pause(time.Second); err != nil {
		t.Fatal(err)
	}
	stopClients()
	if recErr != nil {
		t.Fatalf("recording: %v", recErr)
	}

	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	firstNew := firstRevision(t, ctx, c, h.Prefix)
	data := readAt(t, ctx, c, h.Prefix, firstNew)
	artifacts := robustnessArtifacts(t)
	defer func() {
		if t.Failed() {
			keepMajorityLoss(t, artifacts, h, data)
		}
	}()
	// The new cluster starts RestoreMargin past the newest revision known,
	// which is lost_revisions past the recovered data's: the data's own
	// revision follows from the first, and must be the one logged.
	dataRev := firstNew - rec.lost - cluster.RestoreMargin
	if dataRev != rec.revision {
		t.Errorf("the new cluster starts at revision %d: its data is at revision %d (%d + lost_revisions %d + %d), not at the logged %d; acknowledged writes in between: %v",
			firstNew, dataRev, dataRev, rec.lost, cluster.RestoreMargin, rec.revision, ackedBetween(h, rec.revision, dataRev))
	}

	// 1. What the lost cluster answered before the loss is linearizable.
	pre := answeredBefore(h, firstNew, lossDone)
	report, checkErr := robustness.Check(pre, robustness.CheckOptions{ArtifactDir: artifacts})
	t.Logf("seed %d, before the loss: %s", seed, report)
	writeResult(t, "majority-loss", seed, report, checkErr, time.Since(t0))
	if checkErr != nil {
		t.Errorf("the lost cluster's answers: %v", checkErr)
	}
	if report.AckedWrites == 0 {
		t.Errorf("no write was acknowledged before the loss: the run checked nothing")
	}
	// Nothing else may answer at the lost cluster's revisions: the
	// survivor's etcd, forced into a one-member cluster while it recovers,
	// must not serve clients.
	if late := answersAfter(h, firstNew, lossDone); len(late) > 0 {
		t.Errorf("%d answers at the lost cluster's revisions after it lost its quorum (a one-member cluster served them during the recovery), first: %s",
			len(late), describeOps(late, 5))
		report, err := robustness.Check(answeredBefore(h, firstNew, math.MaxInt64), robustness.CheckOptions{ArtifactDir: filepath.Join(artifacts, "with-late-answers")})
		t.Logf("seed %d, the lost cluster's answers with the late ones: %s", seed, report)
		if err != nil {
			t.Errorf("the lost cluster's answers with the late ones: %v", err)
		}
	}

	// 2. The recovered data is the lost cluster's up to its revision; the
	// acknowledged writes past it fit in lost_revisions.
	lost, violations := checkRecoveredData(h, firstNew, data, dataRev, rec.revision+rec.lost)
	for _, v := range violations {
		t.Error(v)
	}
	acked := 0
	for _, w := range h.AckedWrites() {
		if w.Revision < firstNew {
			acked++
		}
	}
	t.Logf("seed %d: %d writes acknowledged by the lost cluster; %d past the recovered data's revision %d were lost, lost_revisions=%d (newest revision known %d)",
		seed, acked, len(lost), dataRev, rec.lost, rec.revision+rec.lost)
	if int64(len(lost)) > rec.lost {
		t.Errorf("%d acknowledged writes lost, but the recovery reported lost_revisions=%d: %v", len(lost), rec.lost, lost)
	}

	// 3. Clients see the break: a read or a watch from the lost cluster's
	// revisions gets "compacted", never later events.
	preRev := newestRevision(pre)
	if _, err := c.Get(ctx, h.Prefix, clientv3.WithPrefix(), clientv3.WithRev(preRev+1)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("reading at revision %d (after the last the lost cluster acknowledged) from the recovered cluster: %v, want %v", preRev+1, err, rpctypes.ErrCompacted)
	}
	if compact, events := watchFrom(t, ctx, c, h.Prefix, preRev+1); compact != firstNew || events != 0 {
		t.Errorf("a watch from revision %d got compact revision %d and %d events, want compact revision %d and none", preRev+1, compact, events, firstNew)
	}
	saw, watchViolations := watchBreaks(h, firstNew)
	for _, v := range watchViolations {
		t.Error(v)
	}
	if saw == 0 {
		t.Errorf("no recorded watcher reached the recovered cluster")
	}

	// 4. One cluster, a new one.
	ids := map[cluster.ID][]string{}
	for _, inst := range g.Running() {
		id, err := etcdClusterID(ctx, inst)
		if err != nil {
			t.Errorf("%s: %v", inst, err)
			continue
		}
		ids[id] = append(ids[id], inst.ID)
		if st, err := g.StatusOf(ctx, inst.ID); err != nil || st.ClusterID != id {
			t.Errorf("the appliance of %s reports cluster %s (err %v), its etcd %s", inst.ID, st.ClusterID, err, id)
		}
	}
	if len(ids) != 1 || len(ids[after.ClusterID]) != 3 {
		t.Errorf("members by cluster id: %v, want the 3 in cluster %s", ids, after.ClusterID)
	}
	if after.ClusterID == before.ClusterID {
		t.Errorf("cluster id %s kept: a recovery creates a new cluster", after.ClusterID)
	}
	memberByName(t, after, survivor.Name)
}

// dialEtcd is a client of endpoints, closed at the end of the test.
func dialEtcd(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recoveredOnData is what a survivor logs once its data became the new
// cluster's: the data's revision, and how far the newest revision known
// was past it.
type recoveredOnData struct{ revision, lost int64 }

var (
	recoveredLine = regexp.MustCompile(`msg="recovered on this instance's data".*\brevision=(\d+)\b`)
	lostRevisions = regexp.MustCompile(`\blost_revisions=(\d+)\b`)
)

// parseRecovered finds the survivor's one "recovered on this instance's
// data" line in its log.
func parseRecovered(log string) (recoveredOnData, int, error) {
	var out recoveredOnData
	n := 0
	for _, line := range strings.Split(log, "\n") {
		m := recoveredLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		l := lostRevisions.FindStringSubmatch(line)
		if l == nil {
			return out, n, fmt.Errorf("no lost_revisions in %q", line)
		}
		n++
		out.revision, _ = strconv.ParseInt(m[1], 10, 64)
		out.lost, _ = strconv.ParseInt(l[1], 10, 64)
	}
	return out, n, nil
}

// waitRecoveredOnData waits for the survivor to log its recovery, once.
func waitRecoveredOnData(t *testing.T, ctx context.Context, g *fleet.Group, id string) recoveredOnData {
	t.Helper()
	var rec recoveredOnData
	ctx, cancel := context.WithTimeout(ctx, convergeTimeout)
	defer cancel()
	path := g.Instance(id).LogPath
	err := fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		raw, err := os.ReadFile(path)
		if err != nil {
			return false, err.Error()
		}
		var n int
		rec, n, err = parseRecovered(string(raw))
		switch {
		case err != nil:
			t.Fatal(err)
		case n > 1:
			t.Fatalf("%s recovered %d times", id, n)
		}
		return n == 1, fmt.Sprintf("%s has not logged its recovery", id)
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// firstRevision is the recovered cluster's first revision: the one below
// which a restore marks every revision compacted.
func firstRevision(t *testing.T, ctx context.Context, c *clientv3.Client, prefix string) int64 {
	t.Helper()
	compact, _ := watchFrom(t, ctx, c, prefix, 1)
	if compact == 0 {
		t.Fatalf("a watch from revision 1 of the recovered cluster was not compacted")
	}
	return compact
}

// watchFrom watches prefix from rev and returns the first response's
// compact revision and number of events.
func watchFrom(t *testing.T, ctx context.Context, c *clientv3.Client, prefix string, rev int64) (int64, int) {
	t.Helper()
	wctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 5*time.Second)
	defer cancel()
	for resp := range c.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev)) {
		if resp.CompactRevision == 0 && resp.Err() != nil {
			t.Fatalf("watching from revision %d: %v", rev, resp.Err())
		}
		return resp.CompactRevision, len(resp.Events)
	}
	t.Fatalf("watching from revision %d: no response: %v", rev, wctx.Err())
	return 0, 0
}

// storedValue is a key's value and mod revision in the recovered data.
type storedValue struct {
	Value  string `json:"value"`
	ModRev int64  `json:"mod_rev"`
}

// readAt reads prefix at rev.
func readAt(t *testing.T, ctx context.Context, c *clientv3.Client, prefix string, rev int64) map[string]storedValue {
	t.Helper()
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.Get(gctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev))
	if err != nil {
		t.Fatalf("reading the recovered data at revision %d: %v", rev, err)
	}
	data := map[string]storedValue{}
	for _, kv := range resp.Kvs {
		data[string(kv.Key)] = storedValue{Value: string(kv.Value), ModRev: kv.ModRevision}
	}
	return data
}

// answeredBefore is the part of h the lost cluster may have answered
// before until (on the history's clock, at which it had lost its quorum):
// its answers (revisions below firstNew, the new cluster's first), the
// writes of unknown outcome issued before until, which it may have applied
// or not, and the watch responses up to the first one after until or from
// the new cluster.
func answeredBefore(h *robustness.History, firstNew, until int64) *robustness.History {
	out := &robustness.History{Prefix: h.Prefix, Keys: h.Keys, StartRev: h.StartRev}
	for _, op := range h.Operations {
		switch op.Resp.Outcome {
		case robustness.OK:
			if op.Resp.Revision < firstNew && op.Return <= until {
				out.Operations = append(out.Operations, op)
			}
		default:
			if op.Req.Kind != robustness.OpGet && op.Call <= until {
				out.Operations = append(out.Operations, op)
			}
		}
	}
	for _, w := range h.Watches {
		kept := robustness.WatchLog{Watcher: w.Watcher, Prefix: w.Prefix}
		for _, resp := range w.Responses {
			if resp.Time > until || fromNewCluster(resp, firstNew) {
				break
			}
			kept.Responses = append(kept.Responses, resp)
		}
		out.Watches = append(out.Watches, kept)
	}
	return out
}

// answersAfter are the answers at the lost cluster's revisions that came
// after it had lost its quorum (at until).
func answersAfter(h *robustness.History, firstNew, until int64) []robustness.Operation {
	var out []robustness.Operation
	for _, op := range h.Operations {
		if op.Resp.Outcome == robustness.OK && op.Resp.Revision < firstNew && op.Return > until {
			out = append(out, op)
		}
	}
	return out
}

func fromNewCluster(resp robustness.WatchResponse, firstNew int64) bool {
	if resp.Revision >= firstNew || resp.CompactRev >= firstNew {
		return true
	}
	return slices.ContainsFunc(resp.Events, func(ev robustness.WatchEvent) bool { return ev.ModRev >= firstNew })
}

// newestRevision is the newest revision an answer of h showed.
func newestRevision(h *robustness.History) int64 {
	var rev int64
	for _, op := range h.Operations {
		if op.Resp.Outcome == robustness.OK {
			rev = max(rev, op.Resp.Revision)
		}
	}
	return rev
}

// checkRecoveredData holds the recovered data (read at firstNew) to the
// lost cluster's history at the data's revision, recovered: each key holds
// the last write to it at or below recovered. Only the writes whose outcome
// is unknown may add to the acknowledged ones. It returns the acknowledged
// writes past recovered: the lost ones, each at or below known, the newest
// revision known to the recovery.
func checkRecoveredData(h *robustness.History, firstNew int64, data map[string]storedValue, recovered, known int64) (lost []robustness.Write, violations []string) {
	bad := func(format string, a ...any) { violations = append(violations, fmt.Sprintf(format, a...)) }
	// The writes that may be in the data: the acknowledged ones, at their
	// revision, and those of unknown outcome.
	type write struct {
		kind  robustness.OpKind
		rev   int64 // 0: unknown
		value string
	}
	byValue := map[string]write{}
	unknownDelete := map[string]bool{}
	lastAcked := map[string]robustness.Write{}
	for _, w := range h.AckedWrites() {
		switch {
		case w.Revision >= firstNew:
			continue // the new cluster's
		case w.Revision > recovered:
			lost = append(lost, w)
			if w.Revision > known {
				bad("acknowledged %s %s at revision %d lost, past the newest revision known to the recovery (%d)", w.Kind, w.Key, w.Revision, known)
			}
			continue
		}
		lastAcked[w.Key] = w // AckedWrites is in revision order
		if w.Kind != robustness.OpDelete {
			byValue[w.Key+"\x00"+w.Value] = write{kind: w.Kind, rev: w.Revision, value: w.Value}
		}
	}
	for _, op := range h.Operations {
		if op.Resp.Outcome != robustness.Unknown {
			continue
		}
		switch op.Req.Kind {
		case robustness.OpPut, robustness.OpCAS:
			byValue[op.Req.Key+"\x00"+op.Req.Value] = write{kind: op.Req.Kind, value: op.Req.Value}
		case robustness.OpDelete:
			unknownDelete[op.Req.Key] = true
		}
	}
	for key := range data {
		if !slices.Contains(h.Keys, key) {
			bad("the recovered data holds %s, which no client wrote", key)
		}
	}
	for _, key := range h.Keys {
		got, present := data[key]
		last, hasLast := lastAcked[key]
		switch {
		case present && got.ModRev > recovered:
			bad("%s=%q at revision %d in the recovered data, past the recovered revision %d", key, got.Value, got.ModRev, recovered)
		case present:
			w, ok := byValue[key+"\x00"+got.Value]
			switch {
			case !ok:
				bad("%s=%q (revision %d) in the recovered data: no write that may have been applied wrote it", key, got.Value, got.ModRev)
			case w.rev != 0 && w.rev != got.ModRev:
				bad("%s=%q at revision %d in the recovered data, acknowledged at revision %d", key, got.Value, got.ModRev, w.rev)
			case hasLast && last.Revision > got.ModRev:
				bad("%s=%q (revision %d) in the recovered data: the acknowledged %s at revision %d <= %d was lost", key, got.Value, got.ModRev, last.Kind, last.Revision, recovered)
			}
		case hasLast && last.Kind != robustness.OpDelete && !unknownDelete[key]:
			bad("%s missing from the recovered data: the acknowledged %s %q at revision %d <= %d was lost", key, last.Kind, last.Value, last.Revision, recovered)
		}
	}
	return lost, violations
}

// ackedBetween are the acknowledged writes at revisions in (from, to].
func ackedBetween(h *robustness.History, from, to int64) []robustness.Write {
	var out []robustness.Write
	for _, w := range h.AckedWrites() {
		if from < w.Revision && w.Revision <= to {
			out = append(out, w)
		}
	}
	return out
}

// watchBreaks checks that every recorded watcher learnt of the new cluster
// by a compaction at its first revision, before any of its events, and
// counts the watchers that reached it.
func watchBreaks(h *robustness.History, firstNew int64) (int, []string) {
	saw := 0
	var out []string
	for _, w := range h.Watches {
		i := slices.IndexFunc(w.Responses, func(resp robustness.WatchResponse) bool { return fromNewCluster(resp, firstNew) })
		if i < 0 {
			continue
		}
		saw++
		if resp := w.Responses[i]; resp.CompactRev != firstNew || len(resp.Events) > 0 {
			out = append(out, fmt.Sprintf("watcher %d: its first response from the recovered cluster has compact revision %d and %d events (header revision %d), want compact revision %d and none",
				w.Watcher, resp.CompactRev, len(resp.Events), resp.Revision, firstNew))
		}
	}
	return saw, out
}

// etcdClusterID is the cluster id inst's own etcd reports.
func etcdClusterID(ctx context.Context, inst *fleet.Instance) (cluster.ID, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{inst.ClientURL()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := c.Status(sctx, inst.ClientURL())
	if err != nil {
		return 0, err
	}
	return cluster.ID(st.Header.ClusterId), nil
}

func describeOps(ops []robustness.Operation, n int) string {
	var s []string
	for _, op := range ops[:min(n, len(ops))] {
		s = append(s, fmt.Sprintf("%s at revision %d, %.3f s into the run", op, op.Resp.Revision, float64(op.Return)/1e9))
	}
	return strings.Join(s, "; ")
}

// keepMajorityLoss saves the whole history and the recovered data of a
// failed run next to Check's artifacts.
func keepMajorityLoss(t *testing.T, dir string, h *robustness.History, data map[string]storedValue) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Log(err)
		return
	}
	full := filepath.Join(dir, "history-full.json")
	if err := h.Save(full); err != nil {
		t.Log(err)
		return
	}
	b, _ := json.MarshalIndent(data, "", " ")
	if err := os.WriteFile(filepath.Join(dir, "recovered.json"), b, 0o644); err != nil {
		t.Log(err)
		return
	}
	t.Logf("the whole history is kept in %s, the recovered data in recovered.json next to it", full)
}
