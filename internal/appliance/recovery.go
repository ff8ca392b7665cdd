package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	snapstore "github.com/etcd-appliance/etcd-appliance/internal/snapshot"
)

// storeListEvery bounds how often a starting instance lists the store.
const storeListEvery = 5 * time.Second

// etcdReadyTimeout bounds how long a recovering etcd may take to lead its
// one-member cluster.
const etcdReadyTimeout = 60 * time.Second

// errNoStore: a snapshot operation without --store.
var errNoStore = errors.New("no snapshot store: set --store to file:///dir or s3://bucket/prefix")

// errSnapshotUnloadable: a snapshot passed its checksum but etcd's restore
// refused it.
var errSnapshotUnloadable = errors.New("snapshot does not load")

// recovery is disaster recovery (§4.6): the inputs the startup plan needs
// (the quorum-loss clock, the store's snapshots) and the plans Recover and
// Restore. It remembers, between cycles, the loss clock and the snapshots
// found bad.
type recovery struct {
	*node
	launcher *launcher
	store    snapstore.Store // nil: no snapshots, recovery only from survivors' data

	// lostSince is when this instance first saw the quorum lost for good.
	lostSince time.Time
	// bad are the snapshots that failed their checksum: never planned again.
	bad map[string]bool
	// listed and listedAt cache the store's listing; listErr its failure.
	listed   []snapstore.Meta
	listedAt time.Time
	listErr  error
}

// leaderSeen ends a loss: the next one gets its full grace.
func (r *recovery) leaderSeen() { r.lostSince = time.Time{} }

// inputs are the recovery inputs of the startup plan: how long the quorum
// has been lost, and the store's newest good snapshot. The store is read
// only when no live cluster answers.
func (r *recovery) inputs(ctx context.Context, in cluster.StartupInputs) cluster.RecoveryInputs {
	now := r.now()
	out := cluster.RecoveryInputs{Now: now, DRGrace: r.cfg.DRGrace}
	next, loss, started := cluster.TrackLoss(r.lostSince, now, in)
	if started {
		r.log.Warn("quorum lost for good: a majority of the voters' instances are gone from the group",
			"cluster", loss.ClusterID, "voters", loss.Voters, "gone", loss.Gone, "recover_after", r.cfg.DRGrace)
	}
	r.lostSince, out.LostSince = next, next
	if r.store == nil || in.Cluster != nil {
		return out
	}
	snaps, err := r.storeListing(ctx)
	if err != nil {
		out.StoreErr = err.Error()
		return out
	}
	out.StoreSnapshots = len(snaps)
	out.Snapshot, out.KnownRevision = cluster.NewestGoodSnapshot(snapshotRefs(snaps), r.bad)
	return out
}

func snapshotRefs(snaps []snapstore.Meta) []cluster.SnapshotRef {
	refs := make([]cluster.SnapshotRef, 0, len(snaps))
	for _, m := range snaps {
		var id cluster.ID
		_ = id.UnmarshalText([]byte(m.ClusterID))
		refs = append(refs, cluster.SnapshotRef{Key: m.Key, ClusterID: id, Revision: m.Revision, Time: m.Time,
			Log: cluster.LogPosition{Term: m.RaftTerm, Index: m.RaftIndex}})
	}
	return refs
}

// storeListing lists the cluster's snapshots, at most every storeListEvery.
func (r *recovery) storeListing(ctx context.Context) ([]snapstore.Meta, error) {
	if now := r.now(); r.listedAt.IsZero() || now.Sub(r.listedAt) >= storeListEvery {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r.listed, r.listErr = r.store.List(lctx, r.clusterName())
		cancel()
		r.listedAt = now
		if r.listErr != nil {
			r.log.Warn("listing the snapshot store", "store", r.store.URL(), "err", r.listErr)
		}
	}
	return r.listed, r.listErr
}

// recover starts a new one-member cluster on the local data, the newest
// there is after the quorum was lost for good. First as a one-member
// cluster of the old one (--force-new-cluster): etcd applies all that its
// log holds, and a graceful stop flushes it into the database. Then the
// database becomes a new cluster whose revisions jump past any that the
// lost members may have handed out: clients watching from those get
// "compacted" and list again, rather than silently missing writes under
// reused revisions, and past known, the newest revision known anywhere
// (cluster.NewestKnownRevision). The other instances then join it.
func (r *recovery) recover(ctx context.Context, plan cluster.StartupPlan, known int64) (etcdProcess, error) {
	r.log.Warn("recovering the cluster from this instance's data", "lost_revisions", plan.LostRevisions, "reason", plan.Reason)
	kept, err := keepWALTail(r.data.walDir())
	if err != nil {
		return nil, fmt.Errorf("recovering on the local data: %w", err)
	}
	if kept > 0 {
		r.log.Warn("keeping the raft log's entries past its recorded commit index: a majority may have acknowledged them",
			"entries", kept)
	}
	// The forced etcd is a cluster of one on data that may lack writes the
	// lost members acknowledged: it must serve no client, so it listens on
	// a port of its own, which only this appliance knows.
	port, err := freePort(r.bindAddress())
	if err != nil {
		return nil, fmt.Errorf("recovering on the local data: %w", err)
	}
	launch := cluster.LaunchForced(r.self.ID, r.peerURL(), r.clusterName())
	launch.ClientPort = port
	proc, err := r.launcher.launch(ctx, launch)
	if err != nil {
		return nil, err
	}
	err = r.waitLeading(ctx, proc, r.launcher.spec(launch).ClientURL())
	if stopErr := proc.Stop(r.cfg.StopTimeout); err == nil {
		err = stopErr
	}
	if err != nil {
		return nil, fmt.Errorf("recovering on the local data: %w", err)
	}
	db := filepath.Join(r.data.etcd(), "member", "snap", "db")
	// The revision of the stopped etcd's database, not the one it had
	// when it first led: it applied more since (expired leases at least).
	st, err := snapshot.NewV3(zap.NewNop()).Status(db)
	if err != nil {
		return nil, fmt.Errorf("recovering on the local data: reading %s: %w", db, err)
	}
	revision := st.Revision
	offer, err := r.restoreFile(ctx, db, revision, known, true, "this instance's data")
	if err != nil {
		return nil, err
	}
	r.metrics.recoveries.WithLabelValues(recoveredLocalData).Inc()
	// The data's revision is known exactly now; the plan's figure was
	// from the revision the survivor published, which may be older.
	lost := max(0, known-revision)
	r.metrics.lostRevisions.Set(float64(lost))
	r.log.Warn("recovered on this instance's data", "revision", revision, "lost_revisions", lost)
	return r.launcher.launch(ctx, cluster.LaunchNewCluster(r.self.ID, r.peerURL(), offer.Token))
}

// waitLeading waits until the local etcd, serving on url, leads (a
// one-member cluster does at once): it then applied all its log holds.
func (r *recovery) waitLeading(ctx context.Context, proc etcdProcess, url string) error {
	c, err := r.dial([]string{url})
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := awaitStatus(ctx, c, url, proc, etcdReadyTimeout, etcdStatus.Leads); err != nil {
		return fmt.Errorf("etcd did not lead its one-member cluster: %w", err)
	}
	return nil
}

// freePort is a TCP port free on address now.
func freePort(address string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(address, "0"))
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// restore restores the plan's snapshot into a new one-member cluster, its
// revisions bumped past known, and starts it; the other instances then
// join it. A snapshot whose checksum
// fails is reported, remembered as bad and the plan fails: the next plan
// takes the previous good one.
func (r *recovery) restore(ctx context.Context, plan cluster.StartupPlan, known int64) (etcdProcess, error) {
	key := plan.Snapshot.Key
	r.log.Warn("restoring the cluster from the store", "snapshot", key, "revision", plan.Snapshot.Revision,
		"lost_revisions", plan.LostRevisions, "reason", plan.Reason)
	offer, err := r.restoreSnapshot(ctx, key, plan.Snapshot.Revision, known)
	if err != nil {
		// Only the store's verdicts condemn a snapshot; a failure of this
		// instance (a full disk) is tried again.
		if errors.Is(err, snapstore.ErrCorrupt) || errors.Is(err, snapstore.ErrNotFound) {
			if r.bad == nil {
				r.bad = map[string]bool{}
			}
			r.bad[key] = true
			r.metrics.badSnapshots.Inc()
			r.log.Error("snapshot unusable: planning again with the previous one", "snapshot", key, "err", err)
		}
		return nil, err
	}
	r.metrics.recoveries.WithLabelValues(recoveredSnapshot).Inc()
	r.metrics.lostRevisions.Set(float64(plan.LostRevisions))
	return r.launcher.launch(ctx, cluster.LaunchNewCluster(r.self.ID, r.peerURL(), offer.Token))
}

// restoreSnapshot fetches a snapshot (checking its checksum), sets the
// local data aside and restores the snapshot in its place as a new
// one-member cluster of this instance, with the revisions bumped past
// known, the newest revision known anywhere, by cluster.RestoreMargin. It
// returns the new cluster's offer.
func (r *recovery) restoreSnapshot(ctx context.Context, key string, revision, known int64) (*cluster.BootstrapOffer, error) {
	if r.store == nil {
		return nil, errNoStore
	}
	file, err := fetchSnapshot(ctx, r.store, key, r.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	defer os.Remove(file)
	return r.restoreFile(ctx, file, revision, known, false, key)
}

// restoreFile restores an etcd database (a snapshot; with rawDB, a
// member's own snap/db, which has no checksum trailer) at revision as a new
// one-member cluster of this instance, revisions bumped past known
// (cluster.RestoreBump) and the ones below marked compacted: clients that
// watched a lost cluster get "compacted" and list again instead of silently
// missing the writes the restore lost (etcd's own advice for restores).
// Only then it sets the local
// data aside and moves the restored data in place: a failure or a crash
// before that leaves the local data as it was.
func (r *recovery) restoreFile(ctx context.Context, file string, revision, known int64, rawDB bool, what string) (*cluster.BootstrapOffer, error) {
	bump := cluster.RestoreBump(revision, known)
	scratch := r.data.restoreScratch()
	if err := os.RemoveAll(scratch); err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	offer := &cluster.BootstrapOffer{Token: clusterToken(r.clusterName()),
		Members: []cluster.NamedPeer{{Name: r.self.ID, PeerURL: r.peerURL()}}}
	err := snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath:        file,
		Name:                r.self.ID,
		OutputDataDir:       scratch,
		PeerURLs:            []string{r.peerURL()},
		InitialCluster:      r.self.ID + "=" + r.peerURL(),
		InitialClusterToken: offer.Token,
		SkipHashCheck:       rawDB,
		RevisionBump:        uint64(bump),
		MarkCompacted:       true,
	})
	if err != nil {
		return nil, fmt.Errorf("restoring %s: %w: %v", what, errSnapshotUnloadable, err)
	}
	if err := r.moveInPlace(scratch); err != nil {
		return nil, err
	}
	cid, mid, err := offerIdentity(offer, r.self.ID)
	if err != nil {
		return nil, err
	}
	if err := r.data.writeMarker(marker{ClusterID: cid, MemberID: mid, Name: r.self.ID,
		Revision: revision + bump, UpdatedAt: r.now(), Voters: []string{r.self.ID}, PeerURL: r.peerURL()}); err != nil {
		return nil, err
	}
	r.log.Info("snapshot restored", "from", what, "cluster", cid, "member", mid, "revision", revision+bump,
		"revision_bump", bump, "newest_known_revision", known)
	return offer, nil
}

// moveInPlace sets the local data aside, if any, and moves the restored
// data dir in its place.
func (r *recovery) moveInPlace(restored string) error {
	if ld, err := r.data.local(); err != nil {
		return err
	} else if ld.Exists || ld.Known {
		aside, err := r.data.wipe(r.now(), 0)
		if err != nil {
			return err
		}
		r.log.Info("local data set aside for the restore", "to", aside)
	}
	if err := os.RemoveAll(r.data.etcd()); err != nil {
		return err
	}
	if err := os.Rename(restored, r.data.etcd()); err != nil {
		return fmt.Errorf("moving the restored data in place: %w", err)
	}
	// The rename is the restore's commit point; the marker written next
	// must never survive a power loss that undoes it.
	if err := syncDir(r.data.root); err != nil {
		return fmt.Errorf("moving the restored data in place: %w", err)
	}
	return nil
}

// fetchSnapshot downloads a snapshot into dir, verifying its checksum on
// the way, and returns the file's path.
func fetchSnapshot(ctx context.Context, store snapstore.Store, key, dir string) (string, error) {
	r, _, err := store.Get(ctx, key)
	if err != nil {
		return "", fmt.Errorf("fetching snapshot %s: %w", key, err)
	}
	defer r.Close()
	f, err := os.CreateTemp(dir, "restore-*.db")
	if err != nil {
		return "", err
	}
	path := filepath.Clean(f.Name())
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("fetching snapshot %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return "", err
	}
	return path, nil
}
