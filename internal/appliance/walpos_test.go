package appliance

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// createWAL writes an etcd WAL into d's etcd data dir, as etcd does on
// bootstrap, and returns it open for writing, as a running etcd holds it.
func createWAL(t *testing.T, d dataDir) *wal.WAL {
	t.Helper()
	dir := filepath.Join(d.etcd(), "member", "wal")
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	w, err := wal.Create(zap.NewNop(), dir, []byte("metadata"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if err := w.SaveSnapshot(&walpb.Snapshot{Index: new(uint64(0)), Term: new(uint64(0))}); err != nil {
		t.Fatal(err)
	}
	return w
}

// appendEntries appends entries up to index last in term, committed up
// to commit.
func appendEntries(t *testing.T, w *wal.WAL, from, last, term, commit uint64) {
	t.Helper()
	var ents []*raftpb.Entry
	for i := from; i <= last; i++ {
		ents = append(ents, &raftpb.Entry{Term: new(term), Index: new(i), Data: []byte("put")})
	}
	if err := w.Save(&raftpb.HardState{Term: new(term), Vote: new(uint64(1)), Commit: new(commit)}, ents); err != nil {
		t.Fatal(err)
	}
}

// The log's position comes from the WAL while etcd holds it open and
// locked: the position a restarted member without quorum has, which its
// marker's revision (refreshed every 10 s) may not show yet.
func TestLocalDataReadsTheWALsPosition(t *testing.T) {
	d := dataDir{root: t.TempDir(), wal: &walPositions{}}
	w := createWAL(t, d)
	appendEntries(t, w, 1, 10, 2, 8)
	if err := d.writeMarker(marker{ClusterID: 0xabc, MemberID: 0x1, Revision: 5}); err != nil {
		t.Fatal(err)
	}
	ld, err := d.local()
	if want := (cluster.LogPosition{Term: 2, Index: 10}); err != nil || !ld.Exists || ld.Log != want {
		t.Fatalf("local() = %+v, %v; want data whose log ends at %+v", ld, err, want)
	}
	appendEntries(t, w, 11, 20, 3, 15)
	ld, err = d.local()
	if want := (cluster.LogPosition{Term: 3, Index: 20}); err != nil || ld.Log != want {
		t.Fatalf("after more entries local() = %+v, %v; want %+v (the cache must see the WAL change)", ld, err, want)
	}
	if ld.Revision != 5 {
		t.Errorf("revision = %d, want the marker's 5", ld.Revision)
	}
}

func TestWALPositionOfUnreadableWAL(t *testing.T) {
	d := dataDir{root: t.TempDir(), wal: &walPositions{}}
	writeWAL(t, d) // one garbage file
	ld, err := d.local()
	if err != nil || !ld.Exists || ld.Log.Known() {
		t.Fatalf("local() = %+v, %v; want data whose log position is unknown, no error", ld, err)
	}
	if _, _, err := readWAL(d.walDir(), false); err == nil {
		t.Fatal("reading a garbage WAL succeeded")
	}
}

// A torn last record, as a crash in the middle of a write leaves, is where
// the read stops.
func TestWALReadStopsAtATornRecord(t *testing.T) {
	d := dataDir{root: t.TempDir()}
	w := createWAL(t, d)
	appendEntries(t, w, 1, 4, 2, 4)
	appendEntries(t, w, 5, 9, 2, 9)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	names, err := filepath.Glob(filepath.Join(d.walDir(), "*.wal"))
	if err != nil || len(names) != 1 {
		t.Fatalf("WAL files %v, %v", names, err)
	}
	// The WAL is preallocated: cut it right after the records, then tear
	// the last one (the hard state after entries 5..9).
	if err := os.Truncate(names[0], walEnd(t, names[0])-3); err != nil {
		t.Fatal(err)
	}
	st, _, err := readWAL(d.walDir(), false)
	if err != nil || st.hard.GetCommit() != 4 || st.last != (cluster.LogPosition{Term: 2, Index: 9}) {
		t.Fatalf("readWAL = %+v, %v; want entries to 9, committed to 4 (the last whole hard state)", st, err)
	}
}

// A forced recovery keeps the entries past the recorded commit index: etcd
// records a commit index that moved without new entries lazily, so a
// killed member's WAL can lag the writes it had applied and acknowledged.
func TestKeepWALTail(t *testing.T) {
	d := dataDir{root: t.TempDir()}
	w := createWAL(t, d)
	appendEntries(t, w, 1, 9, 2, 6)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	kept, err := keepWALTail(d.walDir())
	if err != nil || kept != 3 {
		t.Fatalf("keepWALTail = %d, %v; want 3 entries kept", kept, err)
	}
	st, _, err := readWAL(d.walDir(), false)
	if err != nil || st.hard.GetCommit() != 9 || st.hard.GetTerm() != 2 || st.hard.GetVote() != 1 {
		t.Fatalf("after keepWALTail the WAL holds %+v, %v; want commit 9, term and vote kept", st, err)
	}
	if kept, err := keepWALTail(d.walDir()); err != nil || kept != 0 {
		t.Fatalf("second keepWALTail = %d, %v; want nothing to keep", kept, err)
	}
}

// walEnd is the offset after the WAL file's last non-zero byte.
func walEnd(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := int64(len(b))
	for end > 0 && b[end-1] == 0 {
		end--
	}
	// Records are padded to 8 bytes.
	return (end + 7) &^ 7
}

func TestSnapshotIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(schema.Meta.Name())
		if err != nil {
			return err
		}
		for key, v := range map[string]uint64{string(schema.MetaConsistentIndexKeyName): 4242, string(schema.MetaTermKeyName): 7} {
			if err := b.Put([]byte(key), binary.BigEndian.AppendUint64(nil, v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	want := cluster.LogPosition{Term: 7, Index: 4242}
	if got, err := snapshotPosition(path); err != nil || got != want {
		t.Fatalf("snapshotPosition = %+v, %v; want %+v", got, err, want)
	}
	if _, err := snapshotPosition(filepath.Join(t.TempDir(), "missing.db")); err == nil {
		t.Fatal("snapshotPosition of a missing file succeeded")
	}
}
