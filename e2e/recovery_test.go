package e2e

// Disaster recovery (SPEC §4.6): quorum lost for good, recovered without
// manual surgery, from a survivor's data or from the snapshot store.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/snapshot"
)

// drGrace is the --dr-grace of these tests.
const drGrace = 3 * time.Second

// settled waits until every member has applied the same revision, so that
// no acknowledged write lives on a minority of the members only.
func settled(t *testing.T, ctx context.Context, g *fleet.Group, n int) cluster.ClusterStatus {
	t.Helper()
	var st cluster.ClusterStatus
	err := fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		var err error
		if st, err = g.Status(ctx); err != nil {
			return false, err.Error()
		}
		revs := map[int64]bool{}
		for _, m := range st.Members {
			revs[m.Revision] = true
		}
		return len(st.Members) == n && len(revs) == 1, fleet.Summarize(st)
	})
	if err != nil {
		t.Fatalf("members never agreed on a revision: %v", err)
	}
	return st
}

// waitCandidates waits until n appliances stand in line for the
// housekeeper role: each holds one key under /etcd-appliance/housekeeper/.
func waitCandidates(t *testing.T, ctx context.Context, g *fleet.Group, n int) {
	t.Helper()
	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := c.Get(gctx, "/etcd-appliance/housekeeper/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return false, err.Error()
		}
		return resp.Count == int64(n), fmt.Sprintf("%d of %d appliances in line for the housekeeper role", resp.Count, n)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMajorityLossRecoversFromSurvivor terminates two of three instances at
// once and launches two new ones: after --dr-grace the survivor makes its
// data a new one-member cluster, revisions bumped, and the new instances
// join it. Nothing that was acknowledged is lost.
func TestMajorityLossRecoversFromSurvivor(t *testing.T) {
	g := newGroup(t, "--dr-grace", drGrace.String())
	ctx := testContext(t, 3*time.Minute)
	insts, _ := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "acked", 200)
	before := settled(t, ctx, g, 3)

	survivor := insts[2]
	for _, inst := range insts[:2] {
		if err := g.Terminate(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
	}
	lost := time.Now()
	if _, err := g.LaunchN(ctx, 2); err != nil {
		t.Fatal(err)
	}
	after := waitConverged(t, ctx, g, 3)
	t.Logf("quorum lost; serving 3 voters again %s after the loss (--dr-grace %s)", time.Since(lost).Round(time.Millisecond), drGrace)
	// The survivor's data became a new cluster, its revisions bumped past
	// any the lost members may have handed out.
	if after.ClusterID == before.ClusterID {
		t.Errorf("cluster id %s kept: the recovered cluster is a new one", after.ClusterID)
	}
	memberByName(t, after, survivor.ID)
	for _, m := range after.Members {
		if m.Revision < 1_000_000_000 {
			t.Errorf("member %s at revision %d: revisions were not bumped past the lost cluster's", m.Name, m.Revision)
		}
	}
	checkKeysOnEach(t, ctx, g, "acked", 200)
	if log := g.LogTail(survivor.ID, 400); !strings.Contains(log, "recovering the cluster from this instance's data") {
		t.Errorf("the survivor did not log its recovery:\n%s", log)
	}
}

// TestNoRecoveryWhileQuorumCanComeBack stops (not terminates) two of three
// instances: their instances can come back, so nobody recovers, however
// long they are away; started again, the old cluster is whole again.
func TestNoRecoveryWhileQuorumCanComeBack(t *testing.T) {
	g := newGroup(t, "--dr-grace", "1s")
	ctx := testContext(t, 3*time.Minute)
	insts, before := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "acked", 50)
	settled(t, ctx, g, 3)
	for _, inst := range insts[:2] {
		if err := g.Stop(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
		if err := g.SetState(inst.ID, cluster.InstanceStopped); err != nil {
			t.Fatal(err)
		}
	}
	// Five times the grace: the survivor must stay a member of the old
	// cluster, without a leader, and never start a new one.
	deadline := time.Now().Add(5 * time.Second)
	err := fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		if log := g.LogTail(insts[2].ID, 400); strings.Contains(log, "recovering the cluster") {
			t.Fatalf("recovered while the quorum's instances were only stopped:\n%s", log)
		}
		return time.Now().After(deadline), "waiting out five graces"
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, inst := range insts[:2] {
		if err := g.SetState(inst.ID, cluster.InstanceRunning); err != nil {
			t.Fatal(err)
		}
		if err := g.Start(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
	}
	after := waitConverged(t, ctx, g, 3)
	assertSameMembers(t, before, after)
	checkKeysOnEach(t, ctx, g, "acked", 50)
}

// storeFlags point a group at a file store in dir with a fast schedule.
func storeFlags(dir string) []string {
	return []string{"--store", "file://" + dir, "--backup-interval", "1s", "--dr-grace", drGrace.String()}
}

// waitSnapshot waits until the store holds a snapshot of the group's cluster
// at revision rev or later, and returns the newest.
func waitSnapshot(t *testing.T, ctx context.Context, store snapshot.Store, name string, rev int64) snapshot.Meta {
	t.Helper()
	var newest snapshot.Meta
	err := fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		snaps, err := store.List(ctx, name)
		if err != nil {
			return false, err.Error()
		}
		if len(snaps) == 0 {
			return false, "no snapshot yet"
		}
		newest = snaps[0]
		return newest.Revision >= rev, fmt.Sprintf("newest snapshot %s at revision %d, want %d", newest.Key, newest.Revision, rev)
	})
	if err != nil {
		t.Fatal(err)
	}
	return newest
}

func openStore(t *testing.T, ctx context.Context, dir string) snapshot.Store {
	t.Helper()
	s, err := snapshot.Open(ctx, "file://"+dir, snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// assertCompactedThrough checks that a restored cluster starts at rev or
// later: a restore marks every revision below its first one compacted, so
// a read at rev-1 must answer "compacted" (not a value, nor "future
// revision"), and every member is at rev or later.
func assertCompactedThrough(t *testing.T, ctx context.Context, g *fleet.Group, st cluster.ClusterStatus, rev int64) {
	t.Helper()
	for _, m := range st.Members {
		if m.Revision < rev {
			t.Errorf("member %s at revision %d, want %d or later", m.Name, m.Revision, rev)
		}
	}
	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Get(ctx, "/e2e/", clientv3.WithPrefix(), clientv3.WithRev(rev-1)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("reading at revision %d: %v, want %v: the restore did not start at revision %d", rev-1, err, rpctypes.ErrCompacted, rev)
	}
}

// replaceAll terminates every instance of the group and launches n new
// ones: a total loss, as when the whole Auto Scaling group is replaced.
func replaceAll(t *testing.T, ctx context.Context, g *fleet.Group, n int) {
	t.Helper()
	for _, inst := range g.Running() {
		if err := g.Terminate(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := g.LaunchN(ctx, n); err != nil {
		t.Fatal(err)
	}
}

// TestTotalLossRestoresFromStore loses every instance: the new group
// restores the newest snapshot. A corrupt newest snapshot is reported and
// the one before it is used; only the writes after it are lost.
func TestTotalLossRestoresFromStore(t *testing.T) {
	dir := t.TempDir()
	g := newGroup(t, storeFlags(dir)...)
	ctx := testContext(t, 4*time.Minute)
	startConverged(t, ctx, g, 3)
	store := openStore(t, ctx, dir)

	putKeys(t, ctx, g, "first", 100)
	st := settled(t, ctx, g, 3)
	good := waitSnapshot(t, ctx, store, g.Name(), st.Members[0].Revision)
	putKeys(t, ctx, g, "second", 20)
	st = settled(t, ctx, g, 3)
	bad := waitSnapshot(t, ctx, store, g.Name(), st.Members[0].Revision)
	if bad.Key == good.Key {
		t.Fatalf("no second snapshot: %s", bad.Key)
	}
	// Corrupt the newest snapshot: flip a byte in the middle.
	path := filepath.Join(dir, filepath.FromSlash(bad.Key))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	replaceAll(t, ctx, g, 3)
	after := waitConverged(t, ctx, g, 3)
	if after.ClusterID == st.ClusterID {
		t.Errorf("restored cluster kept id %s: a restore creates a new cluster", after.ClusterID)
	}
	checkKeysOnEach(t, ctx, g, "first", 100)
	// Revisions start past the newest the store knows of, the corrupt
	// snapshot's included: its history never outranks the restored one.
	assertCompactedThrough(t, ctx, g, after, bad.Revision+cluster.RestoreMargin)
	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Get(ctx, "second", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("%d keys of the corrupt snapshot were restored", resp.Count)
	}
	var restorer string
	for _, inst := range g.Running() {
		if strings.Contains(g.LogTail(inst.ID, 400), "snapshot restored") {
			restorer = inst.ID
		}
	}
	if restorer == "" {
		t.Fatal("no instance logged the restore")
	}
	log := g.LogTail(restorer, 400)
	if !strings.Contains(log, "snapshot unusable") || !strings.Contains(log, bad.Key) {
		t.Errorf("the corrupt snapshot %s was not reported:\n%s", bad.Key, log)
	}
	if !strings.Contains(log, good.Key) {
		t.Errorf("the restore does not name the good snapshot %s:\n%s", good.Key, log)
	}
	// The writes after the good snapshot are lost, and the report says how
	// many revisions: the corrupt snapshot's sidecar still tells how far
	// the cluster had come.
	if want := fmt.Sprintf("lost_revisions=%d", bad.Revision-good.Revision); !strings.Contains(log, want) {
		t.Errorf("the restore does not report %s:\n%s", want, log)
	}
}

// TestEmptyStoreBootstrapsEmpty: a new group whose store holds nothing
// creates an empty cluster, and then snapshots it, once: no snapshot is
// taken while the revision does not move. The snapshot is verified in a
// throwaway etcd.
func TestEmptyStoreBootstrapsEmpty(t *testing.T) {
	dir := t.TempDir()
	g := newGroup(t, storeFlags(dir)...)
	ctx := testContext(t, 2*time.Minute)
	startConverged(t, ctx, g, 3)
	// The appliances write keys of their own once, as they line up for the
	// housekeeper role (§4.4); the revision then stays put.
	waitCandidates(t, ctx, g, 3)
	putKeys(t, ctx, g, "k", 10)
	st := settled(t, ctx, g, 3)
	store := openStore(t, ctx, dir)
	first := waitSnapshot(t, ctx, store, g.Name(), st.Members[0].Revision)

	// Nothing is written: the housekeeper, wherever the role is, skips its
	// next snapshots.
	skipped := regexp.MustCompile(`etcd_appliance_snapshots_total\{outcome="skipped"\} (\d+)`)
	err := fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		n := 0
		for _, m := range st.Members {
			_, body, err := g.Get(ctx, m.Name, "/metrics")
			if err != nil {
				return false, err.Error()
			}
			if found := skipped.FindSubmatch(body); found != nil {
				k, _ := strconv.Atoi(string(found[1]))
				n += k
			}
		}
		return n >= 2, fmt.Sprintf("%d skipped snapshots, waiting for 2", n)
	})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := store.List(ctx, g.Name())
	if err != nil || len(snaps) != 1 || snaps[0].Key != first.Key {
		t.Fatalf("with the revision unchanged the store holds %v (err %v), want only %s: nothing before the first write, nothing after", snaps, err, first.Key)
	}
	// The first snapshot a leader takes is restored into a throwaway etcd,
	// and its sidecar says it loaded.
	err = fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		snaps, err := store.List(ctx, g.Name())
		if err != nil || len(snaps) == 0 {
			return false, fmt.Sprintf("listing: %v", err)
		}
		return snaps[0].Verified && !snaps[0].VerifiedAt.IsZero(), fmt.Sprintf("%s not verified yet", snaps[0].Key)
	})
	if err != nil {
		t.Error(err)
	}
}

// TestManualBackupAndRestore takes a snapshot by hand, writes more, and
// restores the whole group from the snapshot by hand: the data is the
// snapshot's, the later writes are gone, and the bad inputs of restore get
// clear errors.
func TestManualBackupAndRestore(t *testing.T) {
	dir := t.TempDir()
	g := newGroup(t, "--store", "file://"+dir, "--backup-interval", "1h")
	ctx := testContext(t, 3*time.Minute)
	insts, _ := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "kept", 50)

	out, errOut, code, err := g.Command(ctx, insts[1].ID, "backup")
	if err != nil || code != 0 {
		t.Fatalf("backup: exit %d, err %v\n%s", code, err, errOut)
	}
	var backup struct {
		Object   string `json:"object"`
		Revision int64  `json:"revision"`
	}
	if err := json.Unmarshal(out, &backup); err != nil || backup.Object == "" || backup.Revision == 0 {
		t.Fatalf("backup printed %q (%v), want its object and revision", out, err)
	}
	putKeys(t, ctx, g, "lost", 10)
	// A newer backup, of the history the restore abandons.
	out, errOut, code, err = g.Command(ctx, insts[1].ID, "backup")
	if err != nil || code != 0 {
		t.Fatalf("second backup: exit %d, err %v\n%s", code, err, errOut)
	}
	var newer struct {
		Revision int64 `json:"revision"`
	}
	if err := json.Unmarshal(out, &newer); err != nil || newer.Revision <= backup.Revision {
		t.Fatalf("second backup printed %q (%v), want a revision past %d", out, err, backup.Revision)
	}

	// Restoring next to a running etcd is refused.
	if _, errOut, code, _ := g.Command(ctx, insts[0].ID, "restore", "--from", backup.Object, "--yes"); code == 0 || !strings.Contains(string(errOut), "stop the appliance") {
		t.Errorf("restore while running: exit %d, stderr %s; want a refusal", code, errOut)
	}
	if err := g.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		args []string
		says string
	}{
		{[]string{"--from", backup.Object}, "--yes"},
		{[]string{"--from", strings.Replace(backup.Object, ".db", "0.db", 1), "--yes"}, "not in the store"},
		{[]string{"--from", "not a key", "--yes"}, "snapshot"},
	} {
		if _, errOut, code, _ := g.Command(ctx, insts[0].ID, "restore", bad.args...); code == 0 || !strings.Contains(string(errOut), bad.says) {
			t.Errorf("restore %v: exit %d, stderr %s; want an error saying %q", bad.args, code, errOut, bad.says)
		}
	}
	if _, errOut, code, _ := g.Command(ctx, insts[0].ID, "restore", "--from", backup.Object, "--yes"); code != 0 {
		t.Fatalf("restore: exit %d\n%s", code, errOut)
	}
	for _, inst := range insts[1:] {
		if _, errOut, code, _ := g.Command(ctx, inst.ID, "restore", "--set-aside", "--yes"); code != 0 {
			t.Fatalf("restore --set-aside on %s: exit %d\n%s", inst.ID, code, errOut)
		}
	}
	for _, inst := range insts {
		if err := g.Start(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
	}
	after := waitConverged(t, ctx, g, 3)
	checkKeysOnEach(t, ctx, g, "kept", 50)
	// The restored revisions start past the newer backup's: a later
	// recovery never takes the abandoned history for the newest data.
	assertCompactedThrough(t, ctx, g, after, newer.Revision+cluster.RestoreMargin)
	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Get(ctx, "lost", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Errorf("after the restore, %v keys written after the backup remain (err %v)", resp, err)
	}
}

// TestRecoveryAfterTheSurvivorRestarted: the survivor's appliance restarts
// after the loss, so its etcd starts on its data and never serves (it
// publishes itself only through a quorum); the survivor still recovers.
func TestRecoveryAfterTheSurvivorRestarted(t *testing.T) {
	g := newGroup(t, "--dr-grace", drGrace.String())
	ctx := testContext(t, 3*time.Minute)
	insts, _ := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "acked", 50)
	settled(t, ctx, g, 3)
	for _, inst := range insts[:2] {
		if err := g.Terminate(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
	}
	survivor := insts[2]
	if err := g.Restart(ctx, survivor.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := g.LaunchN(ctx, 2); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ctx, g, 3)
	checkKeysOnEach(t, ctx, g, "acked", 50)
}

// TestNoRecoveryPastAStoppedVoter: five voters A..E. A's appliance stops
// first, so A lacks the writes that follow; B, C, D and E acknowledge
// them. Then B's instance stops and C, D and E are terminated: the quorum
// is lost for good, but B can come back with the newest data, so A must
// not recover on its older data, however long B is away. Once B runs
// again, B recovers the cluster and every acknowledged write is there.
func TestNoRecoveryPastAStoppedVoter(t *testing.T) {
	g := newGroup(t, "--dr-grace", drGrace.String())
	ctx := testContext(t, 4*time.Minute)
	insts, _ := startConverged(t, ctx, g, 5)
	a, b := insts[0], insts[1]
	putKeys(t, ctx, g, "acked", 50)
	settled(t, ctx, g, 5)
	// Every member saw its cluster lead and dropped the bootstrap offer:
	// an instance stopped before that publishes the offer until it sees a
	// leader again, and recovery waits on it (not the subject here).
	err := fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		for _, inst := range insts {
			ps, err := g.Peer(ctx, inst.ID)
			if err != nil {
				return false, err.Error()
			}
			if ps.Offer != nil || !ps.HasLeader {
				return false, fmt.Sprintf("%s: offer %v, leader %v", inst.ID, ps.Offer != nil, ps.HasLeader)
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}

	// A stops (its instance stays in the group: not stale); the writes
	// that follow reach B, C, D and E only.
	if err := g.Stop(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	putKeys(t, ctx, g, "late", 50)
	// A linearizable read through B proves B applied every late write;
	// B's recorded revision then proves B will publish it when it starts
	// again, before its etcd runs.
	c, err := g.Client(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(ctx, keyName("late", 49))
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	checkKeys(t, ctx, g, "late", 50, b.ID)
	lateRev := resp.Header.Revision
	err = fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		raw, err := os.ReadFile(filepath.Join(b.DataDir, "member.json"))
		if err != nil {
			return false, err.Error()
		}
		var m struct {
			Revision int64 `json:"revision"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return false, err.Error()
		}
		return m.Revision >= lateRev, fmt.Sprintf("%s recorded revision %d, want %d", b.ID, m.Revision, lateRev)
	})
	if err != nil {
		t.Fatal(err)
	}

	// B's appliance stops first, while its instance still counts in the
	// group: no housekeeper removes B as stale while a quorum remains.
	if err := g.Stop(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	for _, inst := range insts[2:] {
		if err := g.Terminate(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.SetState(b.ID, cluster.InstanceStopped); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx, a.ID); err != nil {
		t.Fatal(err)
	}

	// Four graces: A must not recover, no cluster serves, and A says why.
	waitReason := fmt.Sprintf("voter %s's instance is stopped", b.ID)
	deadline := time.Now().Add(4 * drGrace)
	err = fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		if log := g.LogTail(a.ID, 400); strings.Contains(log, "recovering the cluster") || strings.Contains(log, "snapshot restored") {
			t.Fatalf("%s recovered while voter %s, holding newer data, was only stopped:\n%s", a.ID, b.ID, log)
		}
		if ps, err := g.Peer(ctx, a.ID); err == nil && ps.HasLeader {
			t.Fatalf("%s serves a cluster (%s) while voter %s is stopped", a.ID, ps.ClusterID, b.ID)
		}
		return time.Now().After(deadline), "waiting out four graces"
	})
	if err != nil {
		t.Fatal(err)
	}
	if log := g.LogTail(a.ID, 2000); !strings.Contains(log, waitReason) {
		t.Errorf("%s does not log why it waits (%q):\n%s", a.ID, waitReason, log)
	}

	// B runs again: it holds the newest data, so B recovers and A joins.
	if err := g.SetState(b.ID, cluster.InstanceRunning); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ctx, g, 2)
	if log := g.LogTail(b.ID, 2000); !strings.Contains(log, "recovering the cluster from this instance's data") {
		t.Errorf("%s, holding the newest data, did not recover:\n%s", b.ID, log)
	}
	if log := g.LogTail(a.ID, 2000); strings.Contains(log, "recovering the cluster from this instance's data") {
		t.Errorf("%s recovered on its older data:\n%s", a.ID, log)
	}
	checkKeysOnEach(t, ctx, g, "acked", 50)
	checkKeysOnEach(t, ctx, g, "late", 50)
}

// TestRecoveryKeepsASurvivorNewerThanItsMarker: a survivor that restarts
// after the loss publishes the revision its marker recorded, which can be
// 10 s old, since its etcd never serves again without a quorum. A snapshot
// newer than that revision but older than the survivor's data must not be
// restored over it: survivors and snapshots compare by raft index. The
// marker is set back to before the snapshot, as a refresh every 10 s
// leaves it; the recovery keeps every acknowledged write.
func TestRecoveryKeepsASurvivorNewerThanItsMarker(t *testing.T) {
	dir := t.TempDir()
	// The schedule never snapshots within the test: the one snapshot is
	// the backup taken below, before the late writes.
	g := newGroup(t, "--store", "file://"+dir, "--backup-interval", "1h", "--dr-grace", drGrace.String())
	ctx := testContext(t, 3*time.Minute)
	insts, _ := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "early", 20)
	out, errOut, code, err := g.Command(ctx, insts[0].ID, "backup")
	if err != nil || code != 0 {
		t.Fatalf("backup: exit %d, err %v\n%s", code, err, errOut)
	}
	var backup struct {
		Revision int64 `json:"revision"`
	}
	if err := json.Unmarshal(out, &backup); err != nil || backup.Revision == 0 {
		t.Fatalf("backup printed %q (%v), want its revision", out, err)
	}
	putKeys(t, ctx, g, "late", 30)
	st := settled(t, ctx, g, 3)

	// The survivor is a follower, so no leader change (which may snapshot)
	// happens before the others are gone.
	var survivor *fleet.Instance
	for _, m := range st.Members {
		if !m.Leader && survivor == nil {
			survivor = g.Instance(m.Name)
		}
	}
	if survivor == nil {
		t.Fatalf("no follower in %+v", st.Members)
	}
	if err := g.Kill(survivor.ID); err != nil {
		t.Fatal(err)
	}
	setMarkerRevision(t, survivor, backup.Revision-1)
	for _, inst := range insts {
		if inst.ID != survivor.ID {
			if err := g.Terminate(ctx, inst.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := g.Start(ctx, survivor.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := g.LaunchN(ctx, 2); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ctx, g, 3)
	checkKeysOnEach(t, ctx, g, "early", 20)
	checkKeysOnEach(t, ctx, g, "late", 30)
	if log := g.LogTail(survivor.ID, 400); !strings.Contains(log, "holds the newest data") {
		t.Errorf("the survivor did not recover from its own data; its log:\n%s", log)
	}
}

// setMarkerRevision rewrites the revision in inst's member marker, its
// other fields kept, while its appliance does not run.
func setMarkerRevision(t *testing.T, inst *fleet.Instance, rev int64) {
	t.Helper()
	path := filepath.Join(inst.DataDir, "member.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["revision"] = rev
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRecoveryPastAStrandedLearner: a member that is a learner when the
// quorum is lost for good must not hold the recovery. A learner never
// campaigns, so its etcd names the lost leader forever; an appliance that
// took that for a leader would never look at the group again and would
// publish its old view of it, while a recovery waits for one agreed view.
// Three voters and a learner D: the leader and a follower are terminated, a
// new instance is launched, the other follower recovers from its data, D
// and the new instance join it, and every acknowledged write is there.
//
// A joiner is a learner for a few hundred milliseconds only: its appliance
// promotes it as soon as its etcd serves, and the housekeeper promotes any
// learner that serves. The network holds D there instead of a timing. D's
// peer port is cut while it joins, so its etcd can neither catch up nor
// publish itself, and it serves nothing before it has. Once the join has
// started etcd for the last time, that etcd is stopped (SIGSTOP) while the
// peer cut gives way to client-port cuts: D's appliance can't reach the
// voters to promote it, the voters can't reach D to find it healthy. D's
// etcd continues, publishes itself as a learner, and D's appliance is
// killed and started again on its data, a plain restart that never
// promotes. The client cuts stay until the quorum is gone.
func TestRecoveryPastAStrandedLearner(t *testing.T) {
	g := newNetnsGroup(t, "--dr-grace", drGrace.String())
	ctx := testContext(t, 4*time.Minute)
	voters, _ := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "acked", 100)
	before := settled(t, ctx, g, 3)
	// The survivor is a follower: the leader D names is among the lost.
	var survivor *fleet.Instance
	var lost []*fleet.Instance
	for _, m := range before.Members {
		if !m.Leader && survivor == nil {
			survivor = g.Instance(m.Name)
		} else {
			lost = append(lost, g.Instance(m.Name))
		}
	}
	if survivor == nil || len(lost) != 2 {
		t.Fatalf("no follower to survive in %s", fleet.Summarize(before))
	}

	added, err := g.Add(1)
	if err != nil {
		t.Fatal(err)
	}
	d := added[0]
	client, peer := cluster.DefaultPorts.Client, cluster.DefaultPorts.Peer
	for _, v := range voters {
		if err := g.CutBoth(d.ID, v.ID, peer); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Start(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	c, err := g.Client(ctx, ids(voters)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// D is added as a learner, and its etcd, which could not publish itself
	// within the join's grace, was started the second and last time: the
	// join now only waits for it to serve, to promote it.
	var etcdPID int
	err = fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		m, err := memberAt(ctx, c, d.PeerURL())
		if err != nil || m == nil {
			return false, fmt.Sprintf("%s not added yet (%v)", d, err)
		}
		etcdPID, _ = d.EtcdPID()
		n := etcdLaunches(t, d)
		return n >= 2 && etcdPID != 0, fmt.Sprintf("learner %x added; etcd launched %d times, pid %d", m.ID, n, etcdPID)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(etcdPID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := g.HealAll(); err != nil {
		t.Fatal(err)
	}
	for _, v := range voters {
		if err := g.CutBoth(d.ID, v.ID, client); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(etcdPID, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// D's etcd catches up and publishes itself, a learner that follows the
	// leader.
	var learner *etcdserverpb.Member
	err = fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		m, err := memberAt(ctx, c, d.PeerURL())
		if err != nil || m == nil {
			return false, fmt.Sprintf("%s not listed (%v)", d, err)
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		dst, err := c.Status(sctx, d.ClientURL())
		if err != nil {
			return false, fmt.Sprintf("%s's etcd: %v", d, err)
		}
		learner = m
		return m.Name == d.ID && m.IsLearner && dst.Leader != 0,
			fmt.Sprintf("member %x name %q learner %t, leader %x", m.ID, m.Name, m.IsLearner, dst.Leader)
	})
	if err != nil {
		t.Fatal(err)
	}
	// A restart on its data starts a member, which never promotes. The
	// client cuts stay until the quorum is gone: the killed appliance's
	// promotion requests, queued in its sockets, outlive it.
	if err := g.Kill(d.ID); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	dc, err := g.Client(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	// D's appliance watches its etcd, which serves again: it published
	// itself anew through the leader.
	err = fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		ps, err := g.Peer(ctx, d.ID)
		if err != nil {
			return false, err.Error()
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		dst, err := dc.Status(sctx, d.ClientURL())
		if err != nil {
			return false, fmt.Sprintf("%s's etcd: %v", d, err)
		}
		return ps.Phase == cluster.PhaseRunning && ps.MemberID == cluster.ID(learner.ID) && dst.Leader != 0,
			fmt.Sprintf("%s: phase %s, member %s, etcd's leader %x", d.ID, ps.Phase, ps.MemberID, dst.Leader)
	})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := memberAt(ctx, c, d.PeerURL()); err != nil || m == nil || !m.IsLearner {
		t.Fatalf("%s before the loss: member %v (err %v), want a learner: something promoted it, and the test no longer strands a learner", d, m, err)
	}

	for _, inst := range lost {
		if err := g.Terminate(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
	}
	lostAt := time.Now()
	// The loss left D a learner of the lost cluster whose etcd still names
	// a leader: the case under test.
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	dst, err := dc.Status(sctx, d.ClientURL())
	cancel()
	if err != nil || !dst.IsLearner || dst.Leader == 0 {
		t.Fatalf("%s's etcd after the loss: %v (err %v), want a learner that names a leader", d, dst, err)
	}
	sc, err := g.Client(ctx, survivor.ID)
	if err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	resp, err := sc.MemberList(lctx, clientv3.WithSerializable())
	cancel()
	sc.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range resp.Members {
		if m.Name == d.ID && !m.IsLearner {
			t.Fatalf("the survivor %s lists %s as a voter of the lost cluster: the test no longer strands a learner", survivor.ID, d.ID)
		}
	}
	t.Logf("quorum lost: %s and %s terminated; %s is a learner whose etcd names leader %x", lost[0].ID, lost[1].ID, d.ID, dst.Leader)
	if err := g.HealAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Launch(ctx); err != nil {
		t.Fatal(err)
	}
	// D's appliance no longer takes its etcd's word for a leader: it takes
	// part in the recovery.
	nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = fleet.Poll(nctx, 100*time.Millisecond, func() (bool, string) {
		ps, err := g.Peer(nctx, d.ID)
		if err != nil {
			return false, err.Error()
		}
		return !ps.HasLeader, fmt.Sprintf("%s still reports a leader, its etcd's lost leader %x", d.ID, dst.Leader)
	})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	after := waitConverged(t, ctx, g, 3)
	t.Logf("serving 3 voters again %s after the loss (--dr-grace %s)", time.Since(lostAt).Round(time.Millisecond), drGrace)
	if after.ClusterID == before.ClusterID {
		t.Errorf("cluster id %s kept: the recovered cluster is a new one", after.ClusterID)
	}
	memberByName(t, after, survivor.ID)
	memberByName(t, after, d.ID)
	checkKeysOnEach(t, ctx, g, "acked", 100)
	if log := g.LogTail(survivor.ID, 2000); !strings.Contains(log, "recovering the cluster from this instance's data") {
		t.Errorf("the survivor %s did not recover from its data:\n%s", survivor.ID, log)
	}
}

// memberAt returns the member with peerURL, from a linearizable member
// list; nil when none has it.
func memberAt(ctx context.Context, c *clientv3.Client, peerURL string) (*etcdserverpb.Member, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := c.MemberList(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range resp.Members {
		if slices.Contains(m.PeerURLs, peerURL) {
			return m, nil
		}
	}
	return nil, nil
}

// etcdLaunches counts the times inst's appliance started etcd, by its log.
func etcdLaunches(t *testing.T, inst *fleet.Instance) int {
	t.Helper()
	raw, err := os.ReadFile(inst.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(raw), `msg="starting etcd"`)
}
