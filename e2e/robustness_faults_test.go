package e2e

// Faults of the robustness tier that need more than a signal or a cut: a
// member's disk filling up, and a member leaving while it is cut off (issue
// 12). They are methods of faultRun like the others in robustness_test.go.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/config"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

const (
	// diskHeadroom is the room a member's small disk has beyond the size
	// of the data copied onto it, for etcd to start before the filler
	// takes the rest: it preallocates the tail of its last WAL segment
	// again (64 MB, in case the copy left holes) and the next segment
	// (64 MB), and catches up.
	diskHeadroom = 160 << 20
	// diskSnapshotCount is the member's --snapshot-count while its disk is
	// small: the snapshot it writes every so many entries is what hits
	// the full disk first.
	diskSnapshotCount = 1000
	// biteTimeout bounds the wait for the full disk to make etcd exit:
	// diskSnapshotCount entries under the recorded load, with room for a
	// slow machine.
	biteTimeout = 30 * time.Second
	// leaveStopTimeout is how long a member cut off while it leaves may
	// take to stop. Its leave gives up at its first request (3 s), since
	// a linearizable member list needs the leader; at worst it is one
	// attempt (15 s) and a stop of etcd.
	leaveStopTimeout = 30 * time.Second
)

// diskFull fills the disk of id's data dir while the clients write, until
// its etcd exits with no space left, then frees the space: the member must
// come back on its own data, the same member, nothing wiped. The disk is a
// tmpfs mounted over the data dir, with the data copied onto it; it stays
// mounted until the test ends.
func (r *faultRun) diskFull(id string) error {
	inst := r.g.Instance(id)
	before, err := r.g.Peer(r.ctx, id)
	if err != nil {
		return err
	}
	if err := r.g.Kill(id); err != nil {
		return err
	}
	if err := r.moveToSmallDisk(inst); err != nil {
		return err
	}
	// The first write etcd makes outside its preallocated WAL is, under
	// this load, the snapshot file it writes every --snapshot-count
	// entries (bbolt's file is grown ahead): with etcd's 10000, a full
	// disk may go unnoticed for a minute.
	if err := r.startWithEnv(id, config.EnvPrefix+"ETCD_FLAG", fmt.Sprintf("--snapshot-count=%d", diskSnapshotCount)); err != nil {
		return err
	}
	// Full only once etcd runs again and serves: the disk fills up under
	// load, not at startup.
	if _, err := r.waitConverged(); err != nil {
		return fmt.Errorf("before filling the disk: %w", err)
	}
	filler := filepath.Join(inst.DataDir, "filler")
	n, err := fillDisk(filler)
	if err != nil {
		return fmt.Errorf("filling the disk of %s: %w", id, err)
	}
	r.t.Logf("disk of %s full: a filler of %d MB", id, n>>20)
	bit := time.Now()
	ctx, cancel := context.WithTimeout(r.ctx, biteTimeout)
	defer cancel()
	var exit string
	err = fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		p, err := r.g.Peer(ctx, id)
		if err != nil {
			return false, err.Error()
		}
		exit = p.LastExit
		return exit != "", fmt.Sprintf("the etcd of %s still runs on a full disk", id)
	})
	if err != nil {
		return fmt.Errorf("the full disk did not bite: %w", err)
	}
	if exit != string(etcd.ExitNoSpace) {
		return fmt.Errorf("the etcd of %s exited on a full disk, classified %q, want %q; log tail:\n%s",
			id, exit, etcd.ExitNoSpace, r.g.LogTail(id, 40))
	}
	r.t.Logf("the etcd of %s exited with no space left %s after the disk filled up", id, time.Since(bit).Round(time.Millisecond))
	if err := r.hold(); err != nil {
		return err
	}
	if err := os.Remove(filler); err != nil {
		return fmt.Errorf("freeing the disk of %s: %w", id, err)
	}
	after, err := r.waitConverged()
	if err != nil {
		return fmt.Errorf("after freeing the disk: %w", err)
	}
	for _, m := range after.Members {
		if m.Name == id && m.ID != before.MemberID {
			return fmt.Errorf("%s came back as member %s, was %s: its data was given up for a full disk", id, m.ID, before.MemberID)
		}
	}
	wiped, err := filepath.Glob(filepath.Join(inst.DataDir, "wiped-*"))
	if err != nil || len(wiped) > 0 {
		return fmt.Errorf("the data of %s was set aside for a full disk: %v (%v)", id, wiped, err)
	}
	return nil
}

// moveToSmallDisk puts the data dir of a stopped instance on a tmpfs just
// larger than its data (diskHeadroom): the data moves aside, the tmpfs is
// mounted in its place and the data copied onto it. The tmpfs is unmounted
// when the test ends, after the instance is killed.
func (r *faultRun) moveToSmallDisk(inst *fleet.Instance) error {
	aside := inst.DataDir + ".before-disk-full"
	used, err := diskUsage(inst.DataDir)
	if err != nil {
		return err
	}
	if err := os.Rename(inst.DataDir, aside); err != nil {
		return err
	}
	if err := os.Mkdir(inst.DataDir, 0o755); err != nil {
		return err
	}
	size := used + diskHeadroom
	if err := syscall.Mount("tmpfs", inst.DataDir, "tmpfs", 0, fmt.Sprintf("size=%dk", size>>10)); err != nil {
		return fmt.Errorf("mounting a tmpfs of %d MB on %s: %w", size>>20, inst.DataDir, err)
	}
	r.t.Cleanup(func() {
		if inst.Running() {
			if err := r.g.Kill(inst.ID); err != nil {
				r.t.Errorf("killing %s before unmounting its disk: %v", inst.ID, err)
			}
		}
		if err := syscall.Unmount(inst.DataDir, syscall.MNT_DETACH); err != nil {
			r.t.Errorf("unmounting the tmpfs on %s: %v", inst.DataDir, err)
		}
	})
	// cp keeps modes and times: etcd finds its files as it left them.
	if out, err := exec.CommandContext(r.ctx, "cp", "-a", aside+"/.", inst.DataDir+"/").CombinedOutput(); err != nil {
		return fmt.Errorf("copying the data of %s onto its tmpfs: %v: %s", inst.ID, err, out)
	}
	r.t.Logf("data dir of %s on a tmpfs of %d MB (data: %d MB)", inst.ID, size>>20, used>>20)
	return nil
}

// fillDisk writes path until its file system has no space left and returns
// how much it wrote.
func fillDisk(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Write(chunk)
		n += int64(k)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			return n, err
		}
	}
	// A page at a time for what a chunk did not fit in.
	for {
		k, err := f.Write(chunk[:os.Getpagesize()])
		n += int64(k)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			return n, err
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return n, err
	}
	if st.Bavail != 0 {
		return n, fmt.Errorf("%d blocks still free after the filler", st.Bavail)
	}
	return n, nil
}

// diskUsage is the bytes of the regular files under dir.
func diskUsage(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	return n, err
}

// partitionDuringLeave stops id with SIGTERM under
// --leave-on-shutdown=always while it is cut from the others: its leave
// cannot reach the cluster and must give up in bounded time (one attempt,
// 15 s) rather than hold the shutdown. Then the group terminates the
// instance, the network heals and a replacement joins: the leader must
// remove the member left behind.
func (r *faultRun) partitionDuringLeave(id string) error {
	// The group runs with the default --leave-on-shutdown=never; a
	// restart with ETCD_APPLIANCE_LEAVE_ON_SHUTDOWN makes this one leave.
	if err := r.g.Stop(r.ctx, id); err != nil {
		return err
	}
	if err := r.startWithEnv(id, config.EnvPrefix+"LEAVE_ON_SHUTDOWN", config.LeaveAlways); err != nil {
		return err
	}
	if _, err := r.waitConverged(); err != nil {
		return fmt.Errorf("before the leave: %w", err)
	}
	if err := r.g.Isolate(id); err != nil {
		return err
	}
	// Cut off for a while first, or only for the leave itself.
	if err := r.pause(r.between(0, 2*time.Second)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.ctx, leaveStopTimeout)
	defer cancel()
	began := time.Now()
	if err := r.g.Stop(ctx, id); err != nil {
		return fmt.Errorf("stopping %s cut off while it leaves: %w", id, err)
	}
	took := time.Since(began)
	log, err := os.ReadFile(r.g.Instance(id).LogPath)
	if err != nil {
		return err
	}
	// The first run's stop kept the membership without a word; this one
	// tried to leave and cannot have made it.
	if !strings.Contains(string(log), `msg="not leaving the cluster"`) || strings.Contains(string(log), "left_cluster=true") {
		return fmt.Errorf("%s stopped after %s without trying to leave, or left while cut off; log tail:\n%s",
			id, took, r.g.LogTail(id, 40))
	}
	r.t.Logf("%s, cut off, stopped %s after SIGTERM without leaving", id, took.Round(time.Millisecond))
	if err := r.g.SetState(id, cluster.InstanceTerminated); err != nil {
		return err
	}
	if err := r.g.HealAll(); err != nil {
		return err
	}
	_, err = r.g.Launch(r.ctx)
	return err
}

// startWithEnv starts id's appliance with key=value added to the
// environment it inherits from the test: how a fault sets a flag of one
// instance (ETCD_APPLIANCE_*) when the group's flags are the tier's.
func (r *faultRun) startWithEnv(id, key, value string) error {
	old, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		return err
	}
	// The appliance has its environment once Start returns: the fleet
	// execs it before waiting for /healthz.
	err := r.g.Start(r.ctx, id)
	if had {
		err = errors.Join(err, os.Setenv(key, old))
	} else {
		err = errors.Join(err, os.Unsetenv(key))
	}
	return err
}

// waitConverged waits for three healthy voters within convergeTimeout.
func (r *faultRun) waitConverged() (cluster.ClusterStatus, error) {
	ctx, cancel := context.WithTimeout(r.ctx, convergeTimeout)
	defer cancel()
	return r.g.WaitConverged(ctx, 3)
}
