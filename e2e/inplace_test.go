package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// TestChaosInPlaceUpgradeFrom36: a group of three runs an external etcd 3.6
// (--etcd-binary); configuration management then drops the flag (the
// bundled etcd 3.7) and restarts the service on every instance at once. Each
// member starts once more on the copy of 3.6 its appliance kept and swaps to
// 3.7 in its turn, under the membership lock: once the three answered
// again, at least two voters are healthy at every sample (one member is
// down at a time), one restore point is stored before the first member of
// 3.7 runs, no acknowledged write of a continuous writer is lost, and the
// cluster version ends at 3.7.
func TestChaosInPlaceUpgradeFrom36(t *testing.T) {
	ctx := testContext(t, 10*time.Minute)
	bctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	old, err := testcluster.BuildEtcd(bctx, upgradeFrom)
	cancel()
	if err != nil {
		t.Fatalf("no etcd %s to upgrade from: %v", upgradeFrom, err)
	}
	store := t.TempDir()
	g := newGroup(t, "--store", "file://"+store, "--backup-interval", "1h")
	insts, err := g.LaunchNWith(ctx, 3, "--etcd-binary", old)
	if err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ctx, g, 3)
	waitClusterVersion(t, ctx, g, minorOf(upgradeFrom)+".0")
	// Each appliance keeps a copy of the etcd it runs, in the background.
	for _, inst := range insts {
		kept := filepath.Join(inst.DataDir, "etcd-kept", upgradeFrom, filepath.Base(old))
		if err := fleet.Poll(ctx, 50*time.Millisecond, func() (bool, string) {
			_, err := os.Stat(kept)
			return err == nil, fmt.Sprint(err)
		}); err != nil {
			t.Fatalf("%s kept no copy of etcd %s: %v", inst.ID, upgradeFrom, err)
		}
	}

	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := startWriter(ctx, c, "inplace")
	if err := g.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, inst := range insts {
		ids = append(ids, inst.ID)
		if err := g.SetArgs(inst.ID); err != nil {
			t.Fatal(err)
		}
	}
	s := startHealthSampler(ctx, insts)
	restarted := time.Now()
	if err := g.Start(ctx, ids...); err != nil {
		t.Fatal(err)
	}
	waitClusterVersion(t, ctx, g, bundledMinor+".0")
	st := waitConverged(t, ctx, g, 3)
	for _, m := range st.Members {
		if !strings.HasPrefix(m.Version, bundledMinor+".") {
			t.Errorf("member %s runs etcd %q after the upgrade, want %s", m.Name, m.Version, bundledMinor)
		}
	}
	t.Logf("in-place upgrade %s → bundled: 3 healthy voters on %s %s after the restart", upgradeFrom, bundledMinor,
		time.Since(restarted).Round(time.Millisecond))
	lowest, samples, full := s.stop()
	if !full {
		t.Fatalf("the three members never answered healthy together after the restart (%d samples)", samples)
	}
	if lowest < 2 {
		t.Errorf("only %d healthy voters at one sample after the three answered: the swaps were not one at a time", lowest)
	}
	t.Logf("health: %d samples, at least %d healthy voters at each once the three answered", samples, lowest)
	acked, gap, werr := w.stop()
	if werr != nil {
		t.Fatalf("the writer failed: %v", werr)
	}
	t.Logf("%d writes acknowledged, longest write gap %s (the restart of every service at once included)", acked,
		gap.Round(time.Millisecond))
	for _, inst := range insts {
		checkWritten(t, ctx, g, inst.ID, "inplace", acked)
	}

	restorePoints := 0
	for _, inst := range insts {
		log, err := os.ReadFile(inst.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		i := strings.Index(string(log), "in-place upgrade: swapped")
		if i < 0 {
			t.Errorf("%s did not log its swap", inst.ID)
		} else {
			line, _, _ := strings.Cut(string(log[i:]), "\n")
			t.Logf("%s: %s", inst.ID, line[strings.LastIndex(line, " ")+1:])
		}
		restorePoints += strings.Count(string(log), "restore point stored")
		if kept, err := os.ReadDir(filepath.Join(inst.DataDir, "etcd-kept")); err == nil {
			for _, e := range kept {
				if e.Name() == upgradeFrom {
					t.Errorf("%s still keeps etcd %s after its swap", inst.ID, upgradeFrom)
				}
			}
		}
	}
	if restorePoints != 1 {
		t.Errorf("%d restore points stored, want exactly 1: before the first member of %s ran", restorePoints, bundledMinor)
	}
}

// healthSampler polls every member's status and keeps the lowest number of
// healthy voters seen by two samples in a row once all of them answered
// healthy together.
type healthSampler struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	full    bool
	lowest  int
	samples int
}

func startHealthSampler(ctx context.Context, insts []*fleet.Instance) *healthSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &healthSampler{cancel: cancel, done: make(chan struct{}), lowest: len(insts)}
	var clients []*clientv3.Client
	for _, inst := range insts {
		// The client dials lazily and reconnects by itself.
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{inst.ClientURL()}, DialTimeout: time.Second,
			Logger: zap.NewNop()})
		if err == nil {
			clients = append(clients, c)
		}
	}
	go func() {
		defer close(s.done)
		defer func() {
			for _, c := range clients {
				c.Close()
			}
		}()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		prev := len(insts)
		for {
			healthy := countHealthyVoters(ctx, clients)
			s.mu.Lock()
			s.samples++
			s.full = s.full || healthy == len(insts)
			if s.full {
				// Two samples in a row: a handed-over leadership leaves
				// every member leaderless for tens of milliseconds.
				s.lowest = min(s.lowest, max(healthy, prev))
			}
			prev = healthy
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop ends the sampling: the lowest count once all answered, the number
// of samples, and whether all ever answered together.
func (s *healthSampler) stop() (lowest, samples int, full bool) {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lowest, s.samples, s.full
}

// countHealthyVoters counts the members whose etcd answers its status, through
// its own client, as a voter that knows a leader, without errors.
func countHealthyVoters(ctx context.Context, clients []*clientv3.Client) int {
	n := 0
	for _, c := range clients {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := c.Status(sctx, c.Endpoints()[0])
		cancel()
		if err == nil && st.Leader != 0 && !st.IsLearner && len(st.Errors) == 0 {
			n++
		}
	}
	return n
}
