package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
	snapstore "github.com/etcd-appliance/etcd-appliance/internal/snapshot"
)

// restoreRevisionBump is added to the revision of a restored snapshot, and
// the revisions below it are marked compacted: clients that watched the
// lost cluster get "compacted" and re-list instead of silently missing the
// writes the restore lost (etcd's own advice for restores).
const restoreRevisionBump = 1_000_000_000

// storeListEvery bounds how often a starting instance lists the store.
const storeListEvery = 5 * time.Second

// drMemory is what the appliance keeps between cycles for disaster recovery.
type drMemory struct {
	// lostSince is when this instance first saw the quorum lost for good.
	lostSince time.Time
	// bad are the snapshots that failed their checksum: never planned again.
	bad map[string]bool
	// listed and listedAt cache the store's listing; listErr its failure.
	listed   []snapstore.Meta
	listedAt time.Time
	listErr  error
}

// recoveryInputs adds to in what disaster recovery and restores need: the
// store's newest good snapshot, and how long the quorum has been lost.
// The store is read only when no live cluster answers.
func (a *Appliance) recoveryInputs(ctx context.Context, in *cluster.StartupInputs) {
	now := a.now()
	r := &in.Recovery
	r.Now, r.DRGrace = now, a.cfg.DRGrace
	if loss, ok := cluster.QuorumLost(*in); ok && loss.Lost() && in.Cluster == nil {
		if a.dr.lostSince.IsZero() {
			a.dr.lostSince = now
			a.log.Warn("quorum lost for good: a majority of the voters' instances are gone from the group",
				"cluster", loss.ClusterID, "voters", loss.Voters, "gone", loss.Gone, "recover_after", a.cfg.DRGrace)
		}
	} else {
		a.dr.lostSince = time.Time{}
	}
	r.LostSince = a.dr.lostSince
	if a.store == nil || in.Cluster != nil {
		return
	}
	snaps, err := a.storeListing(ctx)
	if err != nil {
		r.StoreErr = err.Error()
		return
	}
	r.StoreSnapshots = len(snaps)
	// The newest data is the highest revision, whatever the clocks that
	// named the snapshots said; the newest time breaks ties.
	for _, m := range snaps {
		r.KnownRevision = max(r.KnownRevision, m.Revision)
		if a.dr.bad[m.Key] || (r.Snapshot != nil && m.Revision <= r.Snapshot.Revision) {
			continue
		}
		var id cluster.ID
		_ = id.UnmarshalText([]byte(m.ClusterID))
		r.Snapshot = &cluster.SnapshotRef{Key: m.Key, ClusterID: id, Revision: m.Revision, Time: m.Time}
	}
}

// storeListing lists the cluster's snapshots, at most every storeListEvery.
func (a *Appliance) storeListing(ctx context.Context) ([]snapstore.Meta, error) {
	if now := a.now(); a.dr.listedAt.IsZero() || now.Sub(a.dr.listedAt) >= storeListEvery {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		a.dr.listed, a.dr.listErr = a.store.List(lctx, a.clusterName())
		cancel()
		a.dr.listedAt = now
		if a.dr.listErr != nil {
			a.log.Warn("listing the snapshot store", "store", a.store.URL(), "err", a.dr.listErr)
		}
	}
	return a.dr.listed, a.dr.listErr
}

// recover starts a new one-member cluster on the local data, the newest
// there is after the quorum was lost for good: etcd's --force-new-cluster
// keeps the data and the cluster id and makes this the only member; the
// other instances then join it.
func (a *Appliance) recover(ctx context.Context, plan cluster.StartupPlan, spec etcd.ServerSpec) (*etcd.Process, error) {
	a.log.Warn("recovering the cluster from this instance's data", "lost_revisions", plan.LostRevisions, "reason", plan.Reason)
	// First as a one-member cluster of the old one: etcd applies all that
	// its log holds, and a graceful stop flushes it into the database.
	forced := spec
	forced.ForceNewCluster = true
	proc, err := a.launch(ctx, forced)
	if err != nil {
		return nil, err
	}
	revision, err := a.waitLeading(ctx, proc)
	if stopErr := proc.Stop(a.cfg.StopTimeout); err == nil {
		err = stopErr
	}
	if err != nil {
		return nil, fmt.Errorf("recovering on the local data: %w", err)
	}
	// Then the database becomes a new cluster whose revisions jump past
	// any that the lost members may have handed out: clients watching
	// from those get "compacted" and list again, rather than silently
	// missing writes under reused revisions.
	db := filepath.Join(a.data.etcd(), "member", "snap", "db")
	offer, err := a.restoreFile(ctx, db, revision, true, "this instance's data")
	if err != nil {
		return nil, err
	}
	a.metrics.recoveries.WithLabelValues("local-data").Inc()
	a.metrics.lostRevisions.Set(float64(plan.LostRevisions))
	spec.InitialCluster = []etcd.NamedPeer{{Name: a.self.ID, PeerURL: a.peerURL()}}
	spec.InitialClusterState = etcd.StateNew
	spec.ClusterToken = offer.Token
	return a.launch(ctx, spec)
}

// waitLeading waits until the local etcd leads (a one-member cluster does
// at once) and returns its revision.
func (a *Appliance) waitLeading(ctx context.Context, proc *etcd.Process) (int64, error) {
	c, err := newClient([]string{a.clientURL()})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	st, err := awaitStatus(ctx, c, a.clientURL(), proc, etcdReadyTimeout, func(st *clientv3.StatusResponse) bool {
		return st.Leader == st.Header.MemberId
	})
	if err != nil {
		return 0, fmt.Errorf("etcd did not lead its one-member cluster: %w", err)
	}
	return st.Header.Revision, nil
}

// restore restores the plan's snapshot into a new one-member cluster and
// starts it; the other instances then join it. A snapshot whose checksum
// fails is reported, remembered as bad and the plan fails: the next plan
// takes the previous good one.
func (a *Appliance) restore(ctx context.Context, in cluster.StartupInputs, plan cluster.StartupPlan, spec etcd.ServerSpec) (*etcd.Process, error) {
	key := plan.Snapshot.Key
	a.log.Warn("restoring the cluster from the store", "snapshot", key, "revision", plan.Snapshot.Revision,
		"lost_revisions", plan.LostRevisions, "reason", plan.Reason)
	offer, err := a.restoreSnapshot(ctx, key, plan.Snapshot.Revision)
	if err != nil {
		// Only the store's verdicts condemn a snapshot; a failure of this
		// instance (a full disk) is tried again.
		if errors.Is(err, snapstore.ErrCorrupt) || errors.Is(err, snapstore.ErrNotFound) {
			if a.dr.bad == nil {
				a.dr.bad = map[string]bool{}
			}
			a.dr.bad[key] = true
			a.metrics.badSnapshots.Inc()
			a.log.Error("snapshot unusable: planning again with the previous one", "snapshot", key, "err", err)
		}
		return nil, err
	}
	a.metrics.recoveries.WithLabelValues("snapshot").Inc()
	a.metrics.lostRevisions.Set(float64(plan.LostRevisions))
	spec.InitialCluster = []etcd.NamedPeer{{Name: a.self.ID, PeerURL: a.peerURL()}}
	spec.InitialClusterState = etcd.StateNew
	spec.ClusterToken = offer.Token
	return a.launch(ctx, spec)
}

// errSnapshotUnloadable: a snapshot passed its checksum but etcd's restore
// refused it.
var errSnapshotUnloadable = errors.New("snapshot does not load")

// restoreSnapshot fetches a snapshot (checking its checksum), sets the
// local data aside and restores the snapshot in its place as a new
// one-member cluster of this instance, with the revisions bumped past any
// the lost cluster may have reached. It returns the new cluster's offer.
func (a *Appliance) restoreSnapshot(ctx context.Context, key string, revision int64) (*cluster.BootstrapOffer, error) {
	if a.store == nil {
		return nil, errNoStore
	}
	file, err := a.fetchSnapshot(ctx, key)
	if err != nil {
		return nil, err
	}
	defer os.Remove(file)
	return a.restoreFile(ctx, file, revision, false, key)
}

// restoreFile restores an etcd database (a snapshot; with rawDB, a
// member's own snap/db, which has no checksum trailer) as a new one-member
// cluster of this instance, revisions bumped, and only then sets the local
// data aside and moves the restored data in place: a failure or a crash
// before that leaves the local data as it was.
func (a *Appliance) restoreFile(ctx context.Context, file string, revision int64, rawDB bool, what string) (*cluster.BootstrapOffer, error) {
	scratch := a.data.restoreScratch()
	if err := os.RemoveAll(scratch); err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	offer := &cluster.BootstrapOffer{Token: clusterToken(a.clusterName()),
		Members: []cluster.NamedPeer{{Name: a.self.ID, PeerURL: a.peerURL()}}}
	err := snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath:        file,
		Name:                a.self.ID,
		OutputDataDir:       scratch,
		PeerURLs:            []string{a.peerURL()},
		InitialCluster:      a.self.ID + "=" + a.peerURL(),
		InitialClusterToken: offer.Token,
		SkipHashCheck:       rawDB,
		RevisionBump:        restoreRevisionBump,
		MarkCompacted:       true,
	})
	if err != nil {
		return nil, fmt.Errorf("restoring %s: %w: %v", what, errSnapshotUnloadable, err)
	}
	if ld, err := a.data.local(); err != nil {
		return nil, err
	} else if ld.Exists || ld.Known {
		aside, err := a.data.wipe(a.now(), 0)
		if err != nil {
			return nil, err
		}
		a.log.Info("local data set aside for the restore", "to", aside)
	}
	if err := os.RemoveAll(a.data.etcd()); err != nil {
		return nil, err
	}
	if err := os.Rename(scratch, a.data.etcd()); err != nil {
		return nil, fmt.Errorf("moving the restored data in place: %w", err)
	}
	cid, mid, err := offerIdentity(offer, a.self.ID)
	if err != nil {
		return nil, err
	}
	if err := a.data.writeMarker(marker{ClusterID: cid, MemberID: mid, Name: a.self.ID,
		Revision: revision + restoreRevisionBump, UpdatedAt: a.now(), Voters: []string{a.self.ID}}); err != nil {
		return nil, err
	}
	a.log.Info("snapshot restored", "from", what, "cluster", cid, "member", mid, "revision", revision+restoreRevisionBump)
	return offer, nil
}

// errNoStore: a snapshot operation without --store.
var errNoStore = errors.New("no snapshot store: set --store to file:///dir or s3://bucket/prefix")

// fetchSnapshot downloads a snapshot into the data dir, verifying its
// checksum on the way, and returns the file's path.
func (a *Appliance) fetchSnapshot(ctx context.Context, key string) (string, error) {
	return a.fetchSnapshotTo(ctx, key, a.cfg.DataDir)
}

func (a *Appliance) fetchSnapshotTo(ctx context.Context, key, dir string) (string, error) {
	r, _, err := a.store.Get(ctx, key)
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

// mustRecover reports whether the startup plan, on fresh inputs, has this
// instance recover or restore the cluster: its running etcd, without a
// leader, must then stop so that the plan can be applied.
func (a *Appliance) mustRecover(ctx context.Context) bool {
	in, err := a.gatherStartup(ctx)
	if err != nil {
		return false
	}
	plan := cluster.DecideStartup(in)
	if plan.Action != cluster.Recover && plan.Action != cluster.Restore {
		a.log.Debug("no leader; no recovery by this instance", "plan", plan.Action, "reason", plan.Reason)
		return false
	}
	a.log.Warn("stopping etcd to recover the cluster", "action", plan.Action, "reason", plan.Reason)
	return true
}

// localVoters lists the voters of the local member's cluster as the member
// itself knows them (a serializable read: it works without quorum), started
// or not: members of a bootstrap are named before they start. On failure it
// returns the voters recorded before.
func (a *Appliance) localVoters(ctx context.Context, c *clientv3.Client) []string {
	lctx, cancel := context.WithTimeout(ctx, requestTimout)
	resp, err := c.MemberList(lctx, clientv3.WithSerializable())
	cancel()
	if err != nil {
		return a.recordedVoters()
	}
	if voters := voterNames(members(resp.Members)); voters != nil {
		return voters
	}
	return a.recordedVoters()
}

// recordedVoters are the voters the marker holds (written when the member
// was created, refreshed while it runs).
func (a *Appliance) recordedVoters() []string {
	if m, ok, err := a.data.readMarker(); err == nil && ok {
		return m.Voters
	}
	return nil
}

// voterNames are the sorted names of the voters among ms, nil when a voter
// has no name: it could not be matched with an instance, and a list that
// omits it would undercount the voters.
func voterNames(ms []cluster.Member) []string {
	var voters []string
	for _, m := range ms {
		if m.IsLearner {
			continue
		}
		if m.Name == "" {
			return nil
		}
		voters = append(voters, m.Name)
	}
	sort.Strings(voters)
	return voters
}
