package appliance

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	snapstore "github.com/etcd-appliance/etcd-appliance/internal/snapshot"
)

// listedStore is a store whose listing the test sets; it counts listings.
type listedStore struct {
	snaps    []snapstore.Meta
	err      error
	listings int
}

func (s *listedStore) URL() string { return "mem://" }
func (s *listedStore) Put(context.Context, snapstore.Meta, io.Reader) (snapstore.Meta, error) {
	return snapstore.Meta{}, errors.New("read-only")
}
func (s *listedStore) List(context.Context, string) ([]snapstore.Meta, error) {
	s.listings++
	return s.snaps, s.err
}
func (s *listedStore) Get(context.Context, string) (io.ReadCloser, snapstore.Meta, error) {
	return nil, snapstore.Meta{}, snapstore.ErrNotFound
}
func (s *listedStore) SetMeta(context.Context, snapstore.Meta) error { return nil }
func (s *listedStore) Delete(context.Context, string) error          { return nil }

// lossInputs are the startup inputs of i-1 whose peer i-1 holds data of
// cluster 0x100 with voters i-1, i-x, i-y; i-x and i-y are gone.
func lossInputs() cluster.StartupInputs {
	self := cluster.Instance{ID: "i-1", Address: "127.0.0.1", State: cluster.InstanceRunning}
	return cluster.StartupInputs{
		Self: self, GroupKnown: true, Group: []cluster.Instance{self},
		Peers: map[string]cluster.PeerAnswer{"i-1": {Reachable: true, State: cluster.PeerState{
			InstanceID: "i-1", HasData: true, ClusterID: 0x100, Revision: 50, Voters: []string{"i-1", "i-x", "i-y"}}}},
	}
}

func TestRecoveryInputsTrackTheLoss(t *testing.T) {
	a := testAppliance(t)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	ctx := context.Background()

	in := lossInputs()
	in.Recovery = a.recovery.inputs(ctx, in)
	if !in.Recovery.LostSince.Equal(now) || in.Recovery.DRGrace != a.cfg.DRGrace || !in.Recovery.Now.Equal(now) {
		t.Fatalf("first sight of the loss: %+v", in.Recovery)
	}
	later := now.Add(time.Minute)
	a.now = func() time.Time { return later }
	in = lossInputs()
	in.Recovery = a.recovery.inputs(ctx, in)
	if !in.Recovery.LostSince.Equal(now) {
		t.Errorf("the loss clock moved: lost since %s, want %s", in.Recovery.LostSince, now)
	}
	// A live cluster, or a quorum that can come back, resets the clock.
	in = lossInputs()
	in.Cluster = &cluster.ClusterView{ClusterID: 0x100}
	in.Recovery = a.recovery.inputs(ctx, in)
	if !in.Recovery.LostSince.IsZero() || !a.recovery.lostSince.IsZero() {
		t.Errorf("a live cluster kept the loss clock: %s", a.recovery.lostSince)
	}
}

func TestRecoveryInputsReadTheStore(t *testing.T) {
	a := testAppliance(t)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	store := &listedStore{snaps: []snapstore.Meta{
		{Key: "c/20261125T115500Z-r90.db", ClusterID: "100", Revision: 90},
		{Key: "c/20261125T115000Z-r80.db", ClusterID: "100", Revision: 80},
	}}
	a.recovery.store = store
	ctx := context.Background()

	in := lossInputs()
	in.Recovery = a.recovery.inputs(ctx, in)
	if in.Recovery.Snapshot == nil || in.Recovery.Snapshot.Revision != 90 || in.Recovery.Snapshot.ClusterID != 0x100 || in.Recovery.KnownRevision != 90 {
		t.Fatalf("newest snapshot: %+v, known revision %d", in.Recovery.Snapshot, in.Recovery.KnownRevision)
	}
	// A snapshot found corrupt is never planned again; what it says of the
	// revision still counts.
	a.recovery.bad = map[string]bool{"c/20261125T115500Z-r90.db": true}
	in = lossInputs()
	in.Recovery = a.recovery.inputs(ctx, in)
	if in.Recovery.Snapshot == nil || in.Recovery.Snapshot.Revision != 80 || in.Recovery.KnownRevision != 90 {
		t.Errorf("after the newest was found bad: %+v, known revision %d", in.Recovery.Snapshot, in.Recovery.KnownRevision)
	}
	if store.listings != 1 {
		t.Errorf("the store was listed %d times within %s, want once", store.listings, storeListEvery)
	}
	// A failed listing is an error for the plan, never "no snapshot".
	now = now.Add(storeListEvery)
	store.err = errors.New("AccessDenied")
	in = lossInputs()
	in.Recovery = a.recovery.inputs(ctx, in)
	if !strings.Contains(in.Recovery.StoreErr, "AccessDenied") || in.Recovery.Snapshot != nil {
		t.Errorf("failed listing: %+v", in.Recovery)
	}
	// With a live cluster the store is not read at all.
	now = now.Add(storeListEvery)
	in = lossInputs()
	in.Cluster = &cluster.ClusterView{ClusterID: 0x100}
	in.Recovery = a.recovery.inputs(ctx, in)
	if store.listings != 2 {
		t.Errorf("the store was listed with a live cluster (%d listings)", store.listings)
	}
}

// TestFailedRestoreKeepsTheLocalData: a snapshot that passes its checksum
// but does not load (here: not an etcd database at all) fails the restore
// before anything of the local data moves.
func TestFailedRestoreKeepsTheLocalData(t *testing.T) {
	a := testAppliance(t)
	store, err := snapstore.Open(context.Background(), "file://"+t.TempDir(), snapstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a.recovery.store = store
	m, err := store.Put(context.Background(), snapstore.Meta{Cluster: "fake", Time: time.Now().UTC(), Revision: 7},
		strings.NewReader("not a bbolt database"))
	if err != nil {
		t.Fatal(err)
	}
	wal := filepath.Join(a.data.etcd(), "member", "wal")
	if err := os.MkdirAll(wal, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wal, "0.wal"), []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.data.writeMarker(marker{ClusterID: 0x100, MemberID: 0xa, Name: "i-1", Revision: 5}); err != nil {
		t.Fatal(err)
	}

	_, err = a.recovery.restoreSnapshot(context.Background(), m.Key, m.Revision, m.Revision)
	if !errors.Is(err, errSnapshotUnloadable) {
		t.Fatalf("restoreSnapshot = %v, want errSnapshotUnloadable", err)
	}
	if b, err := os.ReadFile(filepath.Join(wal, "0.wal")); err != nil || string(b) != "precious" {
		t.Errorf("the local data was touched: %q, %v", b, err)
	}
	if ld, err := a.data.local(); err != nil || !ld.Known || ld.ClusterID != 0x100 {
		t.Errorf("the marker was touched: %+v, %v", ld, err)
	}
	if matches, _ := filepath.Glob(filepath.Join(a.cfg.DataDir, "restore-*")); len(matches) != 0 {
		t.Errorf("leftovers of the restore: %v", matches)
	}
}
