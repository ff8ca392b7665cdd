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

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
	snapstore "github.com/etcd-appliance/etcd-appliance/internal/snapshot"
)

// The snapshot schedule of §4.6, tunable by tests.
var (
	// backupRetry is how soon a failed snapshot is tried again (at most
	// --backup-interval).
	backupRetry = 30 * time.Second
	// verifyEvery is how often the newest snapshot is restored into a
	// throwaway etcd to prove it loads.
	verifyEvery = time.Hour
)

// snapshotTimeout bounds one snapshot: taking it, checking it, uploading it.
const snapshotTimeout = 10 * time.Minute

// backupMemory is the leader's snapshot schedule.
type backupMemory struct {
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

// snapshotIfDue starts a snapshot in the background when one is due and
// none is running. It runs on the leader, from housekeeping.
func (a *Appliance) snapshotIfDue(ctx context.Context, c *clientv3.Client, revision int64) {
	if a.store == nil {
		return
	}
	now := a.now()
	a.backup.mu.Lock()
	if a.backup.running || now.Before(a.backup.next) {
		a.backup.mu.Unlock()
		return
	}
	a.backup.running = true
	a.backup.mu.Unlock()
	a.backup.taking.Add(1)
	go func() {
		defer a.backup.taking.Done()
		err := a.snapshotNow(ctx, c, revision)
		a.backup.mu.Lock()
		defer a.backup.mu.Unlock()
		a.backup.running = false
		if err != nil {
			a.backup.next = a.now().Add(min(backupRetry, a.cfg.BackupInterval))
			return
		}
		a.backup.next = a.now().Add(a.cfg.BackupInterval)
	}()
}

// snapshotNow takes a snapshot unless the newest one in the store holds the
// revision already, then thins the store and, now and then, proves the
// newest snapshot loads.
func (a *Appliance) snapshotNow(ctx context.Context, c *clientv3.Client, revision int64) error {
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	a.backup.mu.Lock()
	last := a.backup.lastRevision
	a.backup.mu.Unlock()
	if last == 0 {
		snaps, err := a.store.List(ctx, a.clusterName())
		if err != nil {
			a.metrics.snapshots.WithLabelValues("failed").Inc()
			a.log.Warn("snapshot: listing the store", "store", a.store.URL(), "err", err)
			return err
		}
		if len(snaps) > 0 {
			last = snaps[0].Revision
		}
	}
	if revision > 0 && revision <= last {
		a.metrics.snapshots.WithLabelValues("skipped").Inc()
		a.log.Debug("snapshot skipped: the revision did not move", "revision", revision)
		return nil
	}
	m, err := a.takeSnapshot(ctx, c)
	if err != nil {
		a.metrics.snapshots.WithLabelValues("failed").Inc()
		a.log.Warn("snapshot failed; retrying", "store", a.store.URL(), "err", err, "retry_in", min(backupRetry, a.cfg.BackupInterval))
		return err
	}
	a.backup.mu.Lock()
	a.backup.lastRevision = m.Revision
	verify := a.now().Sub(a.backup.lastVerified) >= verifyEvery
	a.backup.mu.Unlock()
	if verify {
		if err := a.verifySnapshot(ctx, m); err != nil {
			a.log.Error("snapshot does not load into etcd", "snapshot", m.Key, "err", err)
		} else {
			a.backup.mu.Lock()
			a.backup.lastVerified = a.now()
			a.backup.mu.Unlock()
		}
	}
	a.thinSnapshots(ctx)
	return nil
}

// Snapshot takes a snapshot of the cluster through c and stores it: the
// `backup` subcommand and the leader's schedule both use it.
func (a *Appliance) takeSnapshot(ctx context.Context, c *clientv3.Client) (snapstore.Meta, error) {
	start := a.now()
	file, st, err := saveSnapshot(ctx, c, a.cfg.DataDir)
	if err != nil {
		return snapstore.Meta{}, err
	}
	defer os.Remove(file)
	f, err := os.Open(file)
	if err != nil {
		return snapstore.Meta{}, err
	}
	defer f.Close()
	sctx, cancel := context.WithTimeout(ctx, requestTimout)
	status, err := c.Status(sctx, c.Endpoints()[0])
	cancel()
	var clusterID, version string
	if err == nil {
		clusterID, version = cluster.ID(status.Header.ClusterId).String(), status.Version
	}
	m, err := a.store.Put(ctx, snapstore.Meta{Cluster: a.clusterName(), ClusterID: clusterID, Time: start.UTC(),
		Revision: st.Revision, EtcdVersion: version}, f)
	if err != nil {
		return snapstore.Meta{}, fmt.Errorf("uploading snapshot: %w", err)
	}
	took := a.now().Sub(start)
	a.metrics.snapshots.WithLabelValues("ok").Inc()
	a.metrics.snapshotLast.Set(float64(start.Unix()))
	a.metrics.snapshotSize.Set(float64(m.Size))
	a.metrics.snapshotSeconds.Set(took.Seconds())
	a.log.Info("snapshot stored", "snapshot", m.Key, "revision", m.Revision, "bytes", m.Size, "took", took.Round(time.Millisecond))
	return m, nil
}

// saveSnapshot streams a snapshot of the member behind c into a file of
// dir and checks it: etcd's own SHA-256 trailer, and the database's
// integrity (every page of bbolt, the hash of its keys). It returns the
// file and what the database holds.
func saveSnapshot(ctx context.Context, c *clientv3.Client, dir string) (string, snapshot.Status, error) {
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

// verifySnapshot proves a stored snapshot loads: it fetches it (checking
// its checksum), restores it into a scratch data dir and starts a
// throwaway etcd on it on loopback, which must serve the snapshot's
// revision. It records the verification in the snapshot's sidecar.
func (a *Appliance) verifySnapshot(ctx context.Context, m snapstore.Meta) error {
	start := a.now()
	scratch, err := os.MkdirTemp(a.cfg.DataDir, "verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	file, err := a.fetchSnapshotTo(ctx, m.Key, scratch)
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
	spec.InitialCluster = []etcd.NamedPeer{{Name: spec.Name, PeerURL: spec.PeerURL()}}
	err = snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath: file, Name: spec.Name, OutputDataDir: spec.DataDir, PeerURLs: []string{spec.PeerURL()},
		InitialCluster: spec.Name + "=" + spec.PeerURL(), InitialClusterToken: spec.ClusterToken,
	})
	if err != nil {
		return fmt.Errorf("restoring: %w", err)
	}
	argv := append(append([]string(nil), a.etcdCmd[1:]...), etcd.Args(spec)...)
	proc, err := etcd.Start(ctx, a.log, a.etcdCmd[0], argv, os.Environ(), io.Discard, filepath.Join(scratch, "etcd.pid"))
	if err != nil {
		return err
	}
	defer func() { _ = proc.Stop(5 * time.Second) }()
	c, err := newClient([]string{spec.ClientURL()})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = awaitStatus(ctx, c, spec.ClientURL(), proc, time.Minute, func(st *clientv3.StatusResponse) bool {
		return st.Header.Revision >= m.Revision
	})
	if err != nil {
		return fmt.Errorf("the throwaway etcd did not serve revision %d: %w", m.Revision, err)
	}
	m.Verified, m.VerifiedAt = true, a.now().UTC()
	if err := a.store.SetMeta(ctx, m); err != nil {
		return fmt.Errorf("recording the verification: %w", err)
	}
	a.log.Info("snapshot verified: it loads into etcd", "snapshot", m.Key, "revision", m.Revision,
		"took", a.now().Sub(start).Round(time.Millisecond))
	return nil
}

// thinSnapshots drops the snapshots that retention no longer keeps.
func (a *Appliance) thinSnapshots(ctx context.Context) {
	snaps, err := a.store.List(ctx, a.clusterName())
	if err != nil {
		a.log.Warn("snapshot retention: listing the store", "err", err)
		return
	}
	_, drop := snapstore.Thin(snaps, a.now(), a.retention)
	for _, m := range drop {
		if err := a.store.Delete(ctx, m.Key); err != nil {
			a.log.Warn("snapshot retention: deleting", "snapshot", m.Key, "err", err)
			return
		}
		a.log.Info("snapshot dropped by retention", "snapshot", m.Key, "taken", m.Time)
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
