package appliance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"

	snapstore "github.com/etcd-appliance/etcd-appliance/internal/snapshot"
)

// emptyDatabaseStream is what etcd streams for a database without a single
// revision: empty key and meta buckets, then the SHA-256 trailer.
func emptyDatabaseStream(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "empty.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"key", "meta"} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// TestNothingToSnapshotIsNoFailure: a database without any revision is
// skipped at Debug, counted as skipped, and retried at the normal
// interval; nothing is stored and no failure is reported.
func TestNothingToSnapshotIsNoFailure(t *testing.T) {
	a := testAppliance(t)
	var log bytes.Buffer
	a.log = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store, err := snapstore.Open(context.Background(), "file://"+t.TempDir(), snapstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a.snapshots.store = store
	f := newFakeEtcd(nil)
	f.userKeys = 3 // counted keys force a snapshot; the database still holds none
	f.snapshot = emptyDatabaseStream(t)

	if err := a.snapshots.snapshot(context.Background(), f, 5); err != nil {
		t.Fatalf("snapshot of an empty database = %v, want no error", err)
	}
	if !f.called("Snapshot") {
		t.Fatal("no snapshot was taken: the test does not reach the empty database")
	}
	if got := testutil.ToFloat64(a.metrics.snapshots.WithLabelValues("skipped")); got != 1 {
		t.Errorf(`snapshots{outcome="skipped"} = %v, want 1`, got)
	}
	if got := testutil.ToFloat64(a.metrics.snapshots.WithLabelValues("failed")); got != 0 {
		t.Errorf(`snapshots{outcome="failed"} = %v, want 0`, got)
	}
	if snaps, err := store.List(context.Background(), a.clusterName()); err != nil || len(snaps) != 0 {
		t.Errorf("store holds %v (%v), want nothing", snaps, err)
	}
	if strings.Contains(log.String(), "level=WARN") || strings.Contains(log.String(), "level=ERROR") {
		t.Errorf("an empty database was reported as a problem:\n%s", log.String())
	}
	if !strings.Contains(log.String(), "level=DEBUG msg=\"snapshot skipped") {
		t.Errorf("the skip is not logged at Debug:\n%s", log.String())
	}
	if matches, _ := filepath.Glob(filepath.Join(a.cfg.DataDir, "snapshot-*")); len(matches) != 0 {
		t.Errorf("leftover snapshot files: %v", matches)
	}
}
