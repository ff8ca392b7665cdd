package robustness

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/etcd"

	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// realEtcdBinary is a wrapper running the etcd bundled in
// $ETCD_APPLIANCE_BIN (make test sets it). Outside the -short tier a missing
// binary fails the test: a robustness tier that skips proves nothing.
func realEtcdBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("real etcd: runs in the end-to-end tier")
	}
	appliance := os.Getenv("ETCD_APPLIANCE_BIN")
	if appliance == "" {
		t.Fatal("no etcd to record against: set ETCD_APPLIANCE_BIN (make test does)")
	}
	wrapper := filepath.Join(t.TempDir(), "etcd")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nexec "+appliance+" etcd \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper
}

// startSingleMember starts a one-member etcd on 127.0.0.1 and returns a
// client of it once it answers reads.
func startSingleMember(t *testing.T) *clientv3.Client {
	t.Helper()
	bin := realEtcdBinary(t)
	spec := etcd.ServerSpec{
		Name:                "robustness",
		DataDir:             filepath.Join(t.TempDir(), "etcd"),
		Address:             "127.0.0.1",
		ClientPort:          testcluster.FreePort(t),
		PeerPort:            testcluster.FreePort(t),
		MetricsPort:         testcluster.FreePort(t),
		InitialClusterState: etcd.StateNew,
		ClusterToken:        "robustness",
	}
	spec.InitialCluster = []etcd.NamedPeer{{Name: spec.Name, PeerURL: spec.PeerURL()}}
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := etcd.Start(t.Context(), testLogger(t), bin, etcd.Args(spec), os.Environ(), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })

	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{spec.ClientURL()},
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		_, err := c.Get(ctx, "health")
		cancel()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not answer within 15s: %v; last lines:\n%s", err, strings.Join(p.LastLines(), "\n"))
		}
		select {
		case <-p.Done():
			t.Fatalf("etcd exited: %v; last lines:\n%s", p.Err(), strings.Join(p.LastLines(), "\n"))
		case <-tick.C:
		}
	}
}

// A healthy single member serves a linearizable history: the recorder's
// load for a few seconds, checked, with acknowledged writes and a watcher
// that saw all of them.
func TestRecordAgainstRealEtcd(t *testing.T) {
	c := startSingleMember(t)
	began := time.Now()
	// Two clients of the one member, so workers share connections the way
	// tests pinning workers to members do.
	other, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })

	h, err := Record(t.Context(), []*clientv3.Client{c, other}, Options{Duration: 4 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	recorded := time.Since(began)
	r, err := Check(h, CheckOptions{ArtifactDir: artifactDir(t)})
	t.Logf("recorded in %v: %v", recorded.Round(time.Millisecond), r)
	if err != nil {
		t.Fatal(err)
	}
	if r.AckedWrites == 0 || r.WatchEvents == 0 {
		t.Errorf("%d acked writes, %d watch events: want some of each", r.AckedWrites, r.WatchEvents)
	}
	if r.Unknown != 0 {
		t.Errorf("%d unknown outcomes from a healthy member", r.Unknown)
	}
	// Every acknowledged write reached the watcher, which only a watcher
	// that covered the whole run can claim.
	if _, complete := putsSeen(h); !complete {
		t.Errorf("the watcher did not cover revisions %d to the end", h.StartRev+1)
	}

	// The same history with one final read made stale fails: the check is
	// not vacuous on real histories.
	stale := *h
	stale.Operations = staleFinalRead(t, h)
	if r, err := Check(&stale, CheckOptions{ArtifactDir: t.TempDir()}); !errors.Is(err, ErrNotLinearizable) {
		t.Errorf("a stale final read passed: %v, %v", r, err)
	}
}

// staleFinalRead copies h's operations, turning the last final read that
// found a key into one returning an older value of it.
func staleFinalRead(t *testing.T, h *History) []Operation {
	t.Helper()
	ops := slices.Clone(h.Operations)
	for i := len(ops) - 1; i >= 0; i-- {
		final := ops[i]
		if final.Req.Kind != OpGet || !final.Resp.Found {
			continue
		}
		for _, w := range h.AckedWrites() {
			if w.Key == final.Req.Key && w.Kind == OpPut && w.Revision < final.Resp.ModRev {
				ops[i].Resp.Value, ops[i].Resp.ModRev = w.Value, w.Revision
				return ops
			}
		}
	}
	t.Fatal("no final read to make stale")
	return nil
}

// Requests that time out while etcd still applies them are unknown; the
// watcher settles the puts among them and the history still checks.
func TestRecordUnknownOutcomesAgainstRealEtcd(t *testing.T) {
	c := startSingleMember(t)
	h, err := Record(t.Context(), []*clientv3.Client{c}, Options{
		Duration:  2 * time.Second,
		OpTimeout: 2 * time.Millisecond,
		CatchUp:   5 * time.Second,
		Logger:    testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Check(h, CheckOptions{ArtifactDir: artifactDir(t)})
	t.Logf("%v", r)
	if err != nil {
		t.Fatal(err)
	}
	if r.Unknown == 0 {
		t.Errorf("no unknown outcomes with a 2ms deadline")
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testWriter sends log lines to t.Log, so they show only for failing tests.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
