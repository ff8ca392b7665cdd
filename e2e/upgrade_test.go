package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// The bundled etcd's minor and the etcd releases its upgrade tests start
// from. A bump of the bundled minor moves all three.
const (
	// bundledMinor is the bundled etcd's minor; etcd's cluster version is
	// bundledMinor+".0" once every member runs it.
	bundledMinor = "3.7"
	// upgradeFrom is the etcd a rolling upgrade starts from: the newest
	// 3.6 the module proxy serves, one minor behind the bundled 3.7 (and at
	// least 3.6.11, which etcd 3.7's upgrade guide asks for).
	upgradeFrom = "3.6.16"
	// skippedFrom is two minors behind the bundled etcd: an upgrade from it
	// skips a minor, which the version gate refuses.
	skippedFrom = "3.5.36"
)

// TestRollingUpgradeFrom36 runs a group on an external etcd 3.6
// (--etcd-binary), then replaces its instances one at a time by instances
// of the bundled etcd 3.7, under a continuous writer: every acknowledged
// write survives, and etcd raises the cluster version to 3.7 once every
// member runs it.
func TestRollingUpgradeFrom36(t *testing.T) {
	g := newGroup(t)
	ctx := testContext(t, 10*time.Minute)
	bctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	started := time.Now()
	old, err := testcluster.BuildEtcd(bctx, upgradeFrom)
	cancel()
	if err != nil {
		t.Fatalf("no etcd %s to upgrade from: %v", upgradeFrom, err)
	}
	t.Logf("etcd %s at %s (%s)", upgradeFrom, old, time.Since(started).Round(time.Millisecond))

	insts, err := g.LaunchNWith(ctx, 3, "--etcd-binary", old)
	if err != nil {
		t.Fatal(err)
	}
	st := waitConverged(t, ctx, g, 3)
	for _, m := range st.Members {
		if m.Version != upgradeFrom {
			t.Fatalf("member %s runs etcd %q, want %s: %s", m.Name, m.Version, upgradeFrom, fleet.Summarize(st))
		}
	}
	for _, inst := range insts {
		// The appliance learns the external etcd's version before it starts.
		if log, err := os.ReadFile(inst.LogPath); err != nil || !strings.Contains(string(log), "etcd_version="+upgradeFrom) {
			t.Errorf("%s did not report etcd_version=%s at start (%v)", inst.ID, upgradeFrom, err)
		}
	}
	waitClusterVersion(t, ctx, g, minorOf(upgradeFrom)+".0")

	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := startWriter(ctx, c, "upgrade")
	for _, victim := range insts {
		survivors := endpointsBut(g, victim.ID)
		c.SetEndpoints(survivors...)
		if err := g.Terminate(ctx, victim.ID); err != nil {
			t.Fatal(err)
		}
		launched := time.Now()
		repl, err := g.LaunchNWith(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		after := waitConverged(t, ctx, g, 3)
		t.Logf("replaced %s (etcd %s) by %s (bundled etcd): 3 healthy voters %s after the launch, %d writes acknowledged",
			victim.ID, upgradeFrom, repl[0].ID, time.Since(launched).Round(time.Millisecond), w.acknowledged())
		if after.ClusterID != st.ClusterID {
			t.Fatalf("cluster id changed from %s to %s: a new cluster formed", st.ClusterID, after.ClusterID)
		}
		c.SetEndpoints(endpointsBut(g, "")...)
	}
	acked, gap, werr := w.stop()
	if werr != nil {
		t.Fatalf("the writer failed: %v", werr)
	}
	t.Logf("rolling upgrade %s → bundled: %d writes acknowledged, longest write gap %s", upgradeFrom, acked,
		gap.Round(time.Millisecond))

	st = waitConverged(t, ctx, g, 3)
	for _, m := range st.Members {
		if !strings.HasPrefix(m.Version, bundledMinor+".") {
			t.Errorf("member %s runs etcd %q after the upgrade, want %s", m.Name, m.Version, bundledMinor)
		}
	}
	waitClusterVersion(t, ctx, g, bundledMinor+".0")
	running, err := g.RunningInGroup()
	if err != nil {
		t.Fatal(err)
	}
	for _, inst := range running {
		checkWritten(t, ctx, g, inst.ID, "upgrade", acked)
	}
}

// minorOf is the major.minor of an etcd release ("3.6.16" → "3.6").
func minorOf(release string) string {
	major, rest, _ := strings.Cut(release, ".")
	minor, _, _ := strings.Cut(rest, ".")
	return major + "." + minor
}

// endpointsBut are the client URLs of the running instances of the group
// but the one named.
func endpointsBut(g *fleet.Group, id string) []string {
	var out []string
	running, _ := g.RunningInGroup()
	for _, inst := range running {
		if inst.ID != id {
			out = append(out, inst.ClientURL())
		}
	}
	return out
}

// waitClusterVersion waits until every running instance's etcd says, on
// /version, that the cluster version is want: etcd raises it once every
// member runs the newer minor.
func waitClusterVersion(t *testing.T, ctx context.Context, g *fleet.Group, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, convergeTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	err := fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		running, err := g.RunningInGroup()
		if err != nil {
			return false, err.Error()
		}
		for _, inst := range running {
			var v struct {
				Server  string `json:"etcdserver"`
				Cluster string `json:"etcdcluster"`
			}
			resp, err := hc.Get(inst.ClientURL() + "/version")
			if err != nil {
				return false, err.Error()
			}
			err = json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if err != nil {
				return false, err.Error()
			}
			if v.Cluster != want {
				return false, fmt.Sprintf("%s (etcd %s) says the cluster version is %s", inst.ID, v.Server, v.Cluster)
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatalf("cluster version never %s: %v", want, err)
	}
}

// writer puts keys under a prefix, one after the other, each retried until
// acknowledged, and measures the longest time between two acknowledgements.
type writer struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	acked int
	gap   time.Duration
	err   error
	// failed counts the attempts refused or timed out (each retried).
	failed int
}

func startWriter(ctx context.Context, c *clientv3.Client, prefix string) *writer {
	ctx, cancel := context.WithCancel(ctx)
	w := &writer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		last := time.Now()
		for i := 0; ; i++ {
			// A write refused for 30 s is an outage, not a blip.
			wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
			err := fleet.Poll(wctx, 20*time.Millisecond, func() (bool, string) {
				pctx, pcancel := context.WithTimeout(wctx, time.Second)
				defer pcancel()
				_, err := c.Put(pctx, keyName(prefix, i), keyValue(prefix, i))
				if err != nil && ctx.Err() == nil {
					w.mu.Lock()
					w.failed++
					w.mu.Unlock()
				}
				return err == nil, fmt.Sprint(err)
			})
			wcancel()
			if ctx.Err() != nil {
				return
			}
			now := time.Now()
			w.mu.Lock()
			if err != nil {
				w.err = fmt.Errorf("write %d: %w", i, err)
				w.mu.Unlock()
				return
			}
			w.acked = i + 1
			w.gap = max(w.gap, now.Sub(last))
			w.mu.Unlock()
			last = now
		}
	}()
	return w
}

// failures is how many write attempts failed so far (each was retried).
func (w *writer) failures() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

func (w *writer) acknowledged() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

// stop ends the writer and returns how many writes were acknowledged (keys
// 0 to acked-1), the longest gap and why it failed, if it did.
func (w *writer) stop() (acked int, gap time.Duration, err error) {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, w.gap, w.err
}

// checkWritten reads, through the instance id alone (a linearizable read),
// every one of the n acknowledged keys under prefix.
func checkWritten(t *testing.T, ctx context.Context, g etcdClients, id, prefix string, n int) {
	t.Helper()
	c, err := g.Client(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.Get(rctx, "/e2e/"+prefix+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("reading the keys through %s: %v", id, err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	lost := 0
	for i := range n {
		if got[keyName(prefix, i)] != keyValue(prefix, i) {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%s lost %d of %d acknowledged writes", id, lost, n)
	}
}

// TestVersionGateRefusesAJoin: a cluster of the bundled etcd 3.7 refuses
// an instance of etcd 3.6 (older than its cluster version) and one whose
// etcd claims 3.9 (two minors ahead): each says why in its status and
// metric, and the membership stays as it was.
func TestVersionGateRefusesAJoin(t *testing.T) {
	g := newGroup(t)
	ctx := testContext(t, 8*time.Minute)
	bctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	older, err := testcluster.BuildEtcd(bctx, upgradeFrom)
	cancel()
	if err != nil {
		t.Fatalf("no etcd %s to join with: %v", upgradeFrom, err)
	}
	// An etcd that claims a version two minors ahead of the bundled one
	// and is the bundled one: only the gate can tell them apart.
	ahead := filepath.Join(t.TempDir(), "etcd-3.9")
	script := "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'etcd Version: 3.9.0'; exit 0; fi\nexec " + binary + " etcd \"$@\"\n"
	if err := os.WriteFile(ahead, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	_, st := startConverged(t, ctx, g, 3)
	waitClusterVersion(t, ctx, g, bundledMinor+".0")

	for _, tt := range []struct{ etcd, why string }{
		{older, "older than the cluster version " + bundledMinor},
		{ahead, "2 minors ahead of the cluster version " + bundledMinor},
	} {
		joiner, err := g.LaunchNWith(ctx, 1, "--etcd-binary", tt.etcd)
		if err != nil {
			t.Fatal(err)
		}
		assertJoinRefused(t, ctx, g, st, joiner[0], tt.why)
	}
}

// TestVersionGateRefusesASkippedMinor: a group on an external etcd 3.5
// refuses an instance of the bundled etcd 3.7, two minors ahead (etcd
// itself would let it join: its oldest cluster version is 3.0). The
// refused instance says why, and the membership stays as it was.
func TestVersionGateRefusesASkippedMinor(t *testing.T) {
	g := newGroup(t)
	ctx := testContext(t, 8*time.Minute)
	bctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	skipped, err := testcluster.BuildEtcd(bctx, skippedFrom)
	cancel()
	if err != nil {
		t.Fatalf("no etcd %s to start the group on: %v", skippedFrom, err)
	}
	if _, err := g.LaunchNWith(ctx, 3, "--etcd-binary", skipped); err != nil {
		t.Fatal(err)
	}
	st := waitConverged(t, ctx, g, 3)
	waitClusterVersion(t, ctx, g, minorOf(skippedFrom)+".0")

	joiner, err := g.LaunchNWith(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	assertJoinRefused(t, ctx, g, st, joiner[0],
		"2 minors ahead of the cluster version "+minorOf(skippedFrom)+": upgrade one minor at a time ("+minorOf(upgradeFrom)+" first)")
}

// assertJoinRefused waits until the version gate of the launched instance
// refuses its join saying why, checks its metric and that the membership
// is still st's, then terminates it.
func assertJoinRefused(t *testing.T, ctx context.Context, g *fleet.Group, st cluster.ClusterStatus, joiner *fleet.Instance, why string) {
	t.Helper()
	id := joiner.ID
	wctx, cancel := context.WithTimeout(ctx, convergeTimeout)
	var last string
	err := fleet.Poll(wctx, 200*time.Millisecond, func() (bool, string) {
		s, err := g.StatusOf(wctx, id)
		if err != nil {
			return false, err.Error()
		}
		last = s.Waiting
		return strings.Contains(s.Waiting, why), fmt.Sprintf("%s waits: %q", id, s.Waiting)
	})
	cancel()
	if err != nil {
		t.Fatalf("the join of %s was not refused saying %q: %v", id, why, err)
	}
	t.Logf("%s: %s", id, last)
	if v := metricValue(t, ctx, joiner, "etcd_appliance_join_version_refused"); v != "1" {
		t.Errorf("etcd_appliance_join_version_refused = %q on %s, want 1", v, id)
	}
	now, err := g.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	assertSameMembers(t, st, now)
	if err := g.Terminate(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// metricValue is the value of an unlabelled metric an instance's
// appliance serves, "" when it serves none of that name.
func metricValue(t *testing.T, ctx context.Context, inst *fleet.Instance, name string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, inst.APIURL()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
