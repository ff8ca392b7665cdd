package appliance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
	snapstore "github.com/etcd-appliance/etcd-appliance/internal/snapshot"
)

// snapshotTimeout bounds one snapshot: taking it, checking it, uploading it.
const snapshotTimeout = 10 * time.Minute

// errNothingToSnapshot is a database that holds no revision at all (no
// key, not even a deleted one, e.g. everything deleted and compacted
// away): there is nothing a restore could bring back, and the store takes
// no snapshot without a revision.
var errNothingToSnapshot = errors.New("nothing to snapshot: the database holds no revision")

// snapshotter is the leader's snapshot schedule (§4.6): a snapshot every
// --backup-interval while the revision moves, retention, and now and then
// a proof that the newest snapshot loads.
type snapshotter struct {
	*node
	launcher  *launcher
	store     snapstore.Store // nil: no snapshots
	retention snapstore.Retention
	schedule  cluster.BackupSchedule

	// taking is the snapshot in flight, waited for when supervision ends.
	taking sync.WaitGroup

	mu sync.Mutex
	// running is set while a snapshot is being taken.
	running bool
	// next is when the next snapshot is due; lastRevision the revision of
	// the newest snapshot known in the store (0: not read yet).
	next         time.Time
	lastRevision int64
	lastVerified time.Time
}

// wait waits for the snapshot in flight, if any.
func (s *snapshotter) wait() { s.taking.Wait() }

// ifDue starts a snapshot in the background when one is due and none is
// running. It runs on the leader.
func (s *snapshotter) ifDue(ctx context.Context, c etcdAPI, revision int64) {
	if s.store == nil {
		return
	}
	now := s.now()
	s.mu.Lock()
	if s.running || now.Before(s.next) {
		s.mu.Unlock()
		return
	}
	s.running = true
	s.mu.Unlock()
	s.taking.Add(1)
	go func() {
		defer s.taking.Done()
		err := s.snapshot(ctx, c, revision)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.running = false
		s.next = s.schedule.Next(s.now(), err != nil)
	}()
}

// storedRevision is the revision of the newest snapshot in the store.
func (s *snapshotter) storedRevision(ctx context.Context) (int64, error) {
	s.mu.Lock()
	last := s.lastRevision
	s.mu.Unlock()
	if last != 0 {
		return last, nil
	}
	snaps, err := s.store.List(ctx, s.clusterName())
	if err != nil {
		return 0, err
	}
	if len(snaps) > 0 {
		last = snaps[0].Revision
	}
	return last, nil
}

// snapshot takes a snapshot unless the newest one in the store holds the
// revision already, then thins the store and, now and then, proves the
// newest snapshot loads.
func (s *snapshotter) snapshot(ctx context.Context, c etcdAPI, revision int64) error {
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	last, err := s.storedRevision(ctx)
	if err != nil {
		s.metrics.snapshots.WithLabelValues(snapshotFailed).Inc()
		s.log.Warn("snapshot: listing the store", "store", s.store.URL(), "err", err)
		return err
	}
	userKeys := int64(-1)
	if last == 0 {
		if n, err := c.UserKeys(ctx); err == nil {
			userKeys = n
		}
	}
	if !cluster.SnapshotNeeded(revision, last, userKeys) {
		s.metrics.snapshots.WithLabelValues(snapshotSkipped).Inc()
		s.log.Debug("snapshot skipped: nothing new to keep", "revision", revision, "stored", last, "user_keys", userKeys)
		return nil
	}
	m, err := s.take(ctx, c)
	if errors.Is(err, errNothingToSnapshot) {
		s.metrics.snapshots.WithLabelValues(snapshotSkipped).Inc()
		s.log.Debug("snapshot skipped: the database holds no revision", "revision", revision, "stored", last)
		return nil
	}
	if err != nil {
		s.metrics.snapshots.WithLabelValues(snapshotFailed).Inc()
		s.log.Warn("snapshot failed; retrying", "store", s.store.URL(), "err", err, "retry_in", s.schedule.Next(s.now(), true).Sub(s.now()).Round(time.Second))
		return err
	}
	s.mu.Lock()
	s.lastRevision = m.Revision
	verify := s.schedule.VerifyDue(s.now(), s.lastVerified)
	s.mu.Unlock()
	if verify {
		if err := s.verify(ctx, m); err != nil {
			s.log.Error("snapshot does not load into etcd", "snapshot", m.Key, "err", err)
		} else {
			s.mu.Lock()
			s.lastVerified = s.now()
			s.mu.Unlock()
		}
	}
	s.thin(ctx)
	return nil
}

// restorePoint stores a verified snapshot before the first member of a
// newer minor runs (§4.7): data the old minor loads, should the upgrade be
// rolled back by restoring it. Without a store there is none to take; that
// is said once per upgrade.
func (s *snapshotter) restorePoint(ctx context.Context, c etcdAPI, clusterVersion, next string) error {
	if s.store == nil {
		s.log.Warn("no --store: no restore point is taken before the first member of a newer minor runs",
			"cluster_version", clusterVersion, "next", next)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	m, err := s.take(ctx, c)
	if err != nil {
		return fmt.Errorf("taking the restore point before etcd %s: %w", next, err)
	}
	if err := s.verify(ctx, m); err != nil {
		return fmt.Errorf("the restore point before etcd %s does not load: %w", next, err)
	}
	s.log.Info("restore point stored before the first member of a newer minor runs", "snapshot", m.Key,
		"revision", m.Revision, "cluster_version", clusterVersion, "next", next)
	return nil
}

// Snapshot takes a snapshot of the cluster through c and stores it: the
// `backup` subcommand and the leader's schedule both use it.
func (s *snapshotter) take(ctx context.Context, c etcdAPI) (snapstore.Meta, error) {
	start := s.now()
	file, st, err := saveSnapshot(ctx, c, s.cfg.DataDir)
	if err != nil {
		return snapstore.Meta{}, err
	}
	defer os.Remove(file)
	if st.Revision <= 0 {
		return snapstore.Meta{}, errNothingToSnapshot
	}
	f, err := os.Open(file)
	if err != nil {
		return snapstore.Meta{}, err
	}
	defer f.Close()
	status, err := c.Status(ctx, c.Endpoints()[0])
	var clusterID, version string
	if err == nil {
		clusterID, version = status.ClusterID.String(), status.Version
	}
	pos, err := snapshotPosition(file)
	if err != nil {
		// Without it a recovery compares this snapshot by revision.
		s.log.Warn("snapshot: reading its raft position", "err", err)
	}
	m, err := s.store.Put(ctx, snapstore.Meta{Cluster: s.clusterName(), ClusterID: clusterID, Time: start.UTC(),
		Revision: st.Revision, RaftIndex: pos.Index, RaftTerm: pos.Term, EtcdVersion: version}, f)
	if err != nil {
		return snapstore.Meta{}, fmt.Errorf("uploading snapshot: %w", err)
	}
	took := s.now().Sub(start)
	s.metrics.snapshots.WithLabelValues(snapshotOK).Inc()
	s.metrics.snapshotLast.Set(float64(start.Unix()))
	s.metrics.snapshotSize.Set(float64(m.Size))
	s.metrics.snapshotSeconds.Set(took.Seconds())
	s.log.Info("snapshot stored", "snapshot", m.Key, "revision", m.Revision, "bytes", m.Size, "took", took.Round(time.Millisecond))
	return m, nil
}

// saveSnapshot streams a snapshot of the member behind c into a file of
// dir and checks it: etcd's own SHA-256 trailer, and the database's
// integrity (every page of bbolt, the hash of its keys). It returns the
// file and what the database holds.
func saveSnapshot(ctx context.Context, c etcdAPI, dir string) (string, snapshot.Status, error) {
	f, err := os.CreateTemp(dir, "snapshot-*.db")
	if err != nil {
		return "", snapshot.Status{}, err
	}
	path := f.Name()
	fail := func(err error) (string, snapshot.Status, error) {
		f.Close()
		os.Remove(path)
		return "", snapshot.Status{}, err
	}
	rc, err := c.Snapshot(ctx)
	if err != nil {
		return fail(fmt.Errorf("requesting a snapshot: %w", err))
	}
	defer rc.Close()
	if _, err := io.Copy(f, rc); err != nil {
		return fail(fmt.Errorf("receiving the snapshot: %w", err))
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := checkTrailer(f); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	st, err := snapshot.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		os.Remove(path)
		return "", snapshot.Status{}, fmt.Errorf("checking the snapshot: %w", err)
	}
	return path, st, nil
}

// checkTrailer verifies the SHA-256 that etcd appends to a snapshot it
// streams (a database is a whole number of 512-byte pages; the trailer is
// what is left over).
func checkTrailer(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size%512 != sha256.Size {
		return fmt.Errorf("snapshot of %d bytes carries no SHA-256 trailer: truncated?", size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size-sha256.Size)); err != nil {
		return err
	}
	want := make([]byte, sha256.Size)
	if _, err := f.ReadAt(want, size-sha256.Size); err != nil {
		return err
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return errors.New("snapshot SHA-256 trailer mismatch: the stream was damaged")
	}
	return nil
}

// verify proves a stored snapshot loads: it fetches it (checking
// its checksum), restores it into a scratch data dir and starts a
// throwaway etcd on it on loopback, which must serve the snapshot's
// revision. It records the verification in the snapshot's sidecar.
func (s *snapshotter) verify(ctx context.Context, m snapstore.Meta) error {
	start := s.now()
	scratch, err := os.MkdirTemp(s.cfg.DataDir, "verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	file, err := fetchSnapshot(ctx, s.store, m.Key, scratch)
	if err != nil {
		return err
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	spec := etcd.ServerSpec{Name: "verify", DataDir: filepath.Join(scratch, "etcd"), Address: "127.0.0.1",
		ClientPort: ports[0], PeerPort: ports[1], MetricsPort: ports[2], InitialClusterState: etcd.StateNew,
		ClusterToken: "verify-" + strconv.FormatInt(m.Revision, 10)}
	spec.InitialCluster = []cluster.NamedPeer{{Name: spec.Name, PeerURL: spec.PeerURL()}}
	err = snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath: file, Name: spec.Name, OutputDataDir: spec.DataDir, PeerURLs: []string{spec.PeerURL()},
		InitialCluster: spec.Name + "=" + spec.PeerURL(), InitialClusterToken: spec.ClusterToken,
	})
	if err != nil {
		return fmt.Errorf("restoring: %w", err)
	}
	proc, err := s.launcher.start(ctx, spec, nil, filepath.Join(scratch, "etcd.pid"))
	if err != nil {
		return err
	}
	defer func() { _ = proc.Stop(5 * time.Second) }()
	c, err := s.dial([]string{spec.ClientURL()})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = awaitStatus(ctx, c, spec.ClientURL(), proc, time.Minute, func(st etcdStatus) bool {
		return st.Revision >= m.Revision
	})
	if err != nil {
		return fmt.Errorf("the throwaway etcd did not serve revision %d: %w", m.Revision, err)
	}
	m.Verified, m.VerifiedAt = true, s.now().UTC()
	if err := s.store.SetMeta(ctx, m); err != nil {
		return fmt.Errorf("recording the verification: %w", err)
	}
	s.log.Info("snapshot verified: it loads into etcd", "snapshot", m.Key, "revision", m.Revision,
		"took", s.now().Sub(start).Round(time.Millisecond))
	return nil
}

// thin drops the snapshots that retention no longer keeps.
func (s *snapshotter) thin(ctx context.Context) {
	snaps, err := s.store.List(ctx, s.clusterName())
	if err != nil {
		s.log.Warn("snapshot retention: listing the store", "err", err)
		return
	}
	_, drop := snapstore.Thin(snaps, s.now(), s.retention)
	for _, m := range drop {
		if err := s.store.Delete(ctx, m.Key); err != nil {
			s.log.Warn("snapshot retention: deleting", "snapshot", m.Key, "err", err)
			return
		}
		s.log.Info("snapshot dropped by retention", "snapshot", m.Key, "taken", m.Time)
	}
}

// freePorts finds n free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// finalSnapshotTimeout bounds the snapshot a terminating leader takes.
const finalSnapshotTimeout = 2 * time.Minute

// final stores a snapshot when this member leads (§4.5): when the whole
// group goes away, it holds the last writes.
func (s *snapshotter) final(ctx context.Context) {
	if s.store == nil {
		return
	}
	c, err := s.dial([]string{s.clientURL()})
	if err != nil {
		return
	}
	defer c.Close()
	st, err := c.Status(ctx, s.clientURL())
	if err != nil || !st.Leads() {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, finalSnapshotTimeout)
	defer cancel()
	if _, err := s.take(sctx, c); errors.Is(err, errNothingToSnapshot) {
		s.log.Debug("no final snapshot before leaving", "err", err)
	} else if err != nil {
		s.log.Warn("final snapshot before leaving failed", "err", err)
	}
}
