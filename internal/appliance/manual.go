package appliance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
	snapstore "github.com/etcd-appliance/etcd-appliance/internal/snapshot"
)

// The by-hand operations of §4.6: `etcd-appliance backup` and
// `etcd-appliance restore`, run on an instance with the daemon's flags.

// identifyOnce sets the instance's identity, asking the provider once.
func (a *Appliance) identifyOnce(ctx context.Context) error {
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	self, err := a.ident.Self(ictx)
	if err != nil {
		return fmt.Errorf("who is this instance: %w", err)
	}
	a.identified(self)
	if a.tls == nil {
		// With TLS, etcd is reached over https with a certificate of the
		// cluster CA, and restored data names https peer URLs.
		t, err := a.setUpTLS(ctx, a.caStore, a.dnsSpec, true)
		if err != nil {
			return err
		}
		a.tls = t
	}
	return nil
}

// Backup takes a snapshot of the cluster now, through this instance's
// etcd, and stores it.
func (a *Appliance) Backup(ctx context.Context) (snapstore.Meta, error) {
	if a.snapshots.store == nil {
		return snapstore.Meta{}, errNoStore
	}
	if err := a.identifyOnce(ctx); err != nil {
		return snapstore.Meta{}, err
	}
	c, err := a.dial([]string{a.clientURL()})
	if err != nil {
		return snapstore.Meta{}, err
	}
	defer c.Close()
	if _, err := c.Status(ctx, a.clientURL()); err != nil {
		return snapstore.Meta{}, fmt.Errorf("etcd does not answer on %s (is the appliance running here?): %w", a.clientURL(), err)
	}
	// A linearizable read proves this member is part of a quorum now: a
	// member without one may lag, and its snapshot would look newer (by
	// time) than the cluster's data it lacks.
	if _, err := c.Members(ctx); err != nil {
		return snapstore.Meta{}, fmt.Errorf("the cluster has no quorum through %s: no backup of possibly stale data: %w", a.clientURL(), err)
	}
	return a.snapshots.take(ctx, c)
}

// ClusterName is the cluster's name, which prefixes its snapshots in the
// store: --cluster-name, or the group's.
func (a *Appliance) ClusterName() string { return a.clusterName() }

// Snapshots lists the cluster's snapshots in the store, newest first.
func (a *Appliance) Snapshots(ctx context.Context) ([]snapstore.Meta, error) {
	if a.snapshots.store == nil {
		return nil, errNoStore
	}
	return a.snapshots.store.List(ctx, a.clusterName())
}

// RestoreLocal restores a snapshot into this instance's data dir as a new
// one-member cluster, setting the old data aside; the appliance must not
// run here. Started again, the instance serves the snapshot's data, and
// instances without data join it. Instances that still hold the old
// cluster's data must have it set aside too (SetAsideLocal) before they
// start, or they would resume the old cluster next to the restored one.
func (a *Appliance) RestoreLocal(ctx context.Context, key string) (snapstore.Meta, error) {
	if a.snapshots.store == nil {
		return snapstore.Meta{}, errNoStore
	}
	if err := a.data.ensure(); err != nil {
		return snapstore.Meta{}, err
	}
	release, err := a.takeDataDir()
	if err != nil {
		return snapstore.Meta{}, err
	}
	defer release()
	if err := a.identifyOnce(ctx); err != nil {
		return snapstore.Meta{}, err
	}
	m, err := snapstore.ParseKey(key)
	if err != nil {
		return snapstore.Meta{}, err
	}
	known, err := a.knownRevision(ctx)
	if err != nil {
		return snapstore.Meta{}, err
	}
	if _, err := a.recovery.restoreSnapshot(ctx, key, m.Revision, known); err != nil {
		return snapstore.Meta{}, err
	}
	return m, nil
}

// knownRevision is the newest revision a by-hand restore knows of: the
// store's snapshots of the cluster (newer ones than the one restored, of
// an abandoned history, must never outrank it in a later recovery) and the
// local data it sets aside. The survivors are not asked: the appliances do
// not run.
func (a *Appliance) knownRevision(ctx context.Context) (int64, error) {
	snaps, err := a.snapshots.store.List(ctx, a.clusterName())
	if err != nil {
		return 0, fmt.Errorf("listing the store for the newest revision known: %w", err)
	}
	ld, err := a.data.local()
	if err != nil {
		return 0, err
	}
	_, known := cluster.NewestGoodSnapshot(snapshotRefs(snaps), nil)
	return max(known, ld.Revision), nil
}

// SetAsideLocal moves this instance's data aside (never deleting it), so
// that it joins whatever cluster is live when it starts again.
func (a *Appliance) SetAsideLocal() (string, error) {
	if err := a.data.ensure(); err != nil {
		return "", err
	}
	release, err := a.takeDataDir()
	if err != nil {
		return "", err
	}
	defer release()
	ld, err := a.data.local()
	if err != nil {
		return "", err
	}
	if !ld.Exists {
		return "", errors.New("this instance holds no etcd data")
	}
	return a.data.wipe(a.now(), 0)
}

// takeDataDir takes the data dir from the daemon's hands: it fails when the
// appliance runs here, or an etcd of this data dir still does.
func (a *Appliance) takeDataDir() (release func(), err error) {
	release, err = a.data.lock()
	if errors.Is(err, errDataDirBusy) {
		return nil, fmt.Errorf("the appliance runs on %s: stop the appliance on this instance first", a.cfg.DataDir)
	}
	if err != nil {
		return nil, err
	}
	if pid, alive := etcd.Running(a.data.pidFile(), a.data.etcd()); alive {
		release()
		return nil, fmt.Errorf("etcd (pid %d) runs on %s: stop the appliance on this instance first", pid, a.cfg.DataDir)
	}
	return release, nil
}
