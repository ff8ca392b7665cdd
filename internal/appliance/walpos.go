package appliance

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// walState is what a WAL holds at its end: the position of its last entry
// and the commit index recorded last.
type walState struct {
	last cluster.LogPosition
	hard *raftpb.HardState // nil when the WAL records none
}

// readWAL reads the WAL in walDir from its newest snapshot record. With
// write false it reads without the WAL's locks, so it works while etcd runs
// on it: a torn last record, as a write in progress or a crash leaves, is
// where it stops. With write true etcd must not run; the WAL is returned
// open, ready to append, and the caller closes it.
func readWAL(walDir string, write bool) (st walState, w *wal.WAL, err error) {
	defer func() {
		// The WAL package panics on a record whose CRC passed but whose
		// content does not decode: an unreadable WAL, not a crash.
		if r := recover(); r != nil {
			st, w, err = walState{}, nil, fmt.Errorf("reading the WAL in %s: %v", walDir, r)
		}
	}()
	lg := zap.NewNop()
	snaps, err := wal.ValidSnapshotEntries(lg, walDir)
	if err != nil {
		return walState{}, nil, fmt.Errorf("reading the WAL's snapshots in %s: %w", walDir, err)
	}
	if len(snaps) == 0 {
		return walState{}, nil, fmt.Errorf("the WAL in %s records no snapshot", walDir)
	}
	snap := snaps[len(snaps)-1]
	open := wal.OpenForRead
	if write {
		open = wal.Open
	}
	w, err = open(lg, walDir, snap)
	if err != nil {
		return walState{}, nil, fmt.Errorf("opening the WAL in %s: %w", walDir, err)
	}
	_, hs, ents, err := w.ReadAll()
	if err != nil {
		w.Close()
		return walState{}, nil, fmt.Errorf("reading the WAL in %s: %w", walDir, err)
	}
	st = walState{last: cluster.LogPosition{Term: snap.GetTerm(), Index: snap.GetIndex()}, hard: hs}
	if n := len(ents); n > 0 {
		st.last = cluster.LogPosition{Term: ents[n-1].GetTerm(), Index: ents[n-1].GetIndex()}
	}
	if !write {
		w.Close()
		w = nil
	}
	return st, w, nil
}

// keepWALTail makes the WAL's last entry its commit index, before etcd
// runs on it with --force-new-cluster, which drops every entry past the
// recorded commit index. etcd records a commit index that moved without
// new entries lazily, without a sync: a member killed right after
// applying a write, or losing power, comes back with entries that a
// majority had acknowledged but that its WAL does not say are committed.
// When this survivor is all that is left, any entry of its log may have
// been acknowledged (a proposal reaches a log only once its leader took
// it, and its client then hears success or an indeterminate error), so
// keeping them is the choice that never drops an acknowledged write. It
// returns how many entries it kept.
func keepWALTail(walDir string) (kept uint64, err error) {
	st, w, err := readWAL(walDir, true)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := w.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("closing the WAL in %s: %w", walDir, cerr)
		}
	}()
	commit := st.hard.GetCommit()
	if st.last.Index <= commit {
		return 0, nil
	}
	hs := &raftpb.HardState{Term: new(st.hard.GetTerm()), Vote: new(st.hard.GetVote()), Commit: new(st.last.Index)}
	if err := w.Save(hs, nil); err != nil {
		return 0, fmt.Errorf("recording the WAL's commit index in %s: %w", walDir, err)
	}
	return st.last.Index - commit, nil
}

// walPositions caches the WAL's state by its files' names, sizes and
// times: planning reads the local data every cycle, and a WAL that did not
// change need not be read again.
type walPositions struct {
	mu    sync.Mutex
	sig   []walFile
	state walState
}

type walFile struct {
	name string
	size int64
	mod  time.Time
}

// last is the position of the WAL's last entry, read again only when its
// files changed. A nil cache reads every time.
func (c *walPositions) last(walDir string) (cluster.LogPosition, error) {
	if c == nil {
		st, _, err := readWAL(walDir, false)
		return st.last, err
	}
	sig, err := walSignature(walDir)
	if err != nil {
		return cluster.LogPosition{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sig != nil && slices.Equal(sig, c.sig) {
		return c.state.last, nil
	}
	st, _, err := readWAL(walDir, false)
	if err != nil {
		c.sig = nil
		return cluster.LogPosition{}, err
	}
	c.sig, c.state = sig, st
	return st.last, nil
}

func walSignature(walDir string) ([]walFile, error) {
	entries, err := os.ReadDir(walDir)
	if err != nil {
		return nil, err
	}
	sig := make([]walFile, 0, len(entries))
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		sig = append(sig, walFile{name: e.Name(), size: fi.Size(), mod: fi.ModTime()})
	}
	return sig, nil
}

// snapshotPosition is the raft position a snapshot file's data was applied
// up to: etcd's consistent index and its term, from the meta bucket; zero
// when the file records none.
func snapshotPosition(path string) (cluster.LogPosition, error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return cluster.LogPosition{}, fmt.Errorf("opening snapshot %s: %w", filepath.Base(path), err)
	}
	defer db.Close()
	var pos cluster.LogPosition
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(schema.Meta.Name())
		if b == nil {
			return errors.New("no meta bucket")
		}
		if v := b.Get(schema.MetaConsistentIndexKeyName); len(v) == 8 {
			pos.Index = binary.BigEndian.Uint64(v)
		}
		if v := b.Get(schema.MetaTermKeyName); len(v) == 8 {
			pos.Term = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return pos, err
}
