package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// benchGrace is the --dr-grace of the recovery figures: the figure is
// timed from its expiry, so its length does not change the result.
const benchGrace = 5 * time.Second

// measureRecovery measures §4.6: a majority loss with a survivor and a
// total loss restored from the store, each from --dr-grace expiry (or, for
// a new group, from its start) to a serving cluster; and the snapshot and
// restore times of 100 MB of data.
func measureRecovery(ctx context.Context, binary string, runs int) ([]figure, error) {
	survivor := figure{name: "majority lost, survivor's data → serving (writes accepted)", target: "≤ 30 s", unit: "s",
		note: "timed from --dr-grace expiry (the survivor's \"quorum lost for good\" log line + the grace)"}
	survivorAll := figure{name: "majority lost, survivor's data → 3 healthy voters again", target: "—", unit: "s",
		note: "two new instances join the recovered member one at a time"}
	restored := figure{name: "every instance lost, new group restores the store's snapshot → serving", target: "≤ 30 s", unit: "s",
		note: "timed from the new group's start: a group without data waits for no grace"}
	for i := range runs {
		s, all, err := measureSurvivorRecovery(ctx, binary)
		if err != nil {
			return nil, fmt.Errorf("survivor recovery, run %d: %w", i, err)
		}
		survivor.samples = append(survivor.samples, s.Seconds())
		survivorAll.samples = append(survivorAll.samples, all.Seconds())
		r, err := measureStoreRestore(ctx, binary)
		if err != nil {
			return nil, fmt.Errorf("restore from the store, run %d: %w", i, err)
		}
		restored.samples = append(restored.samples, r.Seconds())
		log.Printf("recovery: run %d done", i)
	}
	snap, restore, err := measureSnapshot100MB(ctx, binary)
	if err != nil {
		return nil, fmt.Errorf("100 MB snapshot: %w", err)
	}
	return []figure{survivor, survivorAll, restored, snap, restore}, nil
}

func newStoreGroup(binary string, extra ...string) (*fleet.Group, string, func(), error) {
	dir, err := os.MkdirTemp("", "etcd-appliance-bench-")
	if err != nil {
		return nil, "", nil, err
	}
	store := filepath.Join(dir, "store")
	args := append(append([]string(nil), applianceArgs...), "--store", "file://"+store)
	g, err := fleet.New(fleet.Options{Binary: binary, Dir: dir, Args: append(args, extra...)})
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", nil, err
	}
	return g, store, func() { g.Close(); os.RemoveAll(dir) }, nil
}

// measureSurvivorRecovery terminates two of three instances and launches
// two new ones.
func measureSurvivorRecovery(ctx context.Context, binary string) (serving, all time.Duration, err error) {
	g, _, done, err := newStoreGroup(binary, "--dr-grace", benchGrace.String())
	if err != nil {
		return 0, 0, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	insts, err := g.LaunchN(ctx, 3)
	if err != nil {
		return 0, 0, err
	}
	if _, err := g.WaitConverged(ctx, 3); err != nil {
		return 0, 0, err
	}
	time.Sleep(settle)
	for _, inst := range insts[:2] {
		if err := g.Terminate(ctx, inst.ID); err != nil {
			return 0, 0, err
		}
	}
	if _, err := g.LaunchN(ctx, 2); err != nil {
		return 0, 0, err
	}
	survivor := insts[2]
	if err := waitWritable(ctx, survivor.ClientURL()); err != nil {
		return 0, 0, err
	}
	served := time.Now()
	if _, err := g.WaitConverged(ctx, 3); err != nil {
		return 0, 0, err
	}
	converged := time.Now()
	lost, err := logTime(survivor.LogPath, "quorum lost for good: a majority of the voters' instances are gone from the group")
	if err != nil {
		return 0, 0, err
	}
	expiry := lost.Add(benchGrace)
	return served.Sub(expiry), converged.Sub(expiry), nil
}

// measureStoreRestore writes to a group, waits for its snapshot, replaces
// every instance and times the new group to its first accepted write.
func measureStoreRestore(ctx context.Context, binary string) (time.Duration, error) {
	g, _, done, err := newStoreGroup(binary, "--backup-interval", "1s")
	if err != nil {
		return 0, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if _, err := g.LaunchN(ctx, 3); err != nil {
		return 0, err
	}
	if _, err := g.WaitConverged(ctx, 3); err != nil {
		return 0, err
	}
	c, err := g.Client(ctx)
	if err != nil {
		return 0, err
	}
	for i := range 1000 {
		if _, err := c.Put(ctx, fmt.Sprintf("k%04d", i), "v"); err != nil {
			c.Close()
			return 0, err
		}
	}
	st, err := c.Status(ctx, c.Endpoints()[0])
	c.Close()
	if err != nil {
		return 0, err
	}
	if err := waitSnapshotLogged(ctx, g, st.Header.Revision); err != nil {
		return 0, err
	}
	for _, inst := range g.Running() {
		if err := g.Terminate(ctx, inst.ID); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	insts, err := g.LaunchN(ctx, 3)
	if err != nil {
		return 0, err
	}
	var urls []string
	for _, inst := range insts {
		urls = append(urls, inst.ClientURL())
	}
	if err := waitWritable(ctx, urls...); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// waitSnapshotLogged waits until a member logged a snapshot at rev or later.
func waitSnapshotLogged(ctx context.Context, g *fleet.Group, rev int64) error {
	return fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		for _, inst := range g.Running() {
			lines, _ := logLines(inst.LogPath, "snapshot stored")
			for _, l := range lines {
				if r, ok := l["revision"].(float64); ok && int64(r) >= rev {
					return true, ""
				}
			}
		}
		return false, fmt.Sprintf("no snapshot at revision %d yet", rev)
	})
}

// measureSnapshot100MB fills a cluster with 100 MB and times `backup`
// (snapshot, checks, upload to a file store) and `restore --from`
// (fetch with checksum, restore into a data dir).
func measureSnapshot100MB(ctx context.Context, binary string) (figure, figure, error) {
	snap := figure{name: "etcd-appliance backup of 100 MB (snapshot, integrity checks, upload to a file store)", target: "—", unit: "s"}
	restore := figure{name: "etcd-appliance restore --from of 100 MB (fetch with checksum, restore into the data dir)", target: "—", unit: "s"}
	g, _, done, err := newStoreGroup(binary, "--backup-interval", "1h")
	if err != nil {
		return snap, restore, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	insts, err := g.LaunchN(ctx, 3)
	if err != nil {
		return snap, restore, err
	}
	if _, err := g.WaitConverged(ctx, 3); err != nil {
		return snap, restore, err
	}
	c, err := g.Client(ctx)
	if err != nil {
		return snap, restore, err
	}
	value := make([]byte, 512<<10)
	for i := range 200 {
		_, _ = rand.Read(value)
		if _, err := c.Put(ctx, fmt.Sprintf("blob%03d", i), string(value)); err != nil {
			c.Close()
			return snap, restore, err
		}
	}
	c.Close()
	start := time.Now()
	out, errOut, code, err := g.Command(ctx, insts[0].ID, "backup")
	if err != nil || code != 0 {
		return snap, restore, fmt.Errorf("backup: exit %d, %v: %s", code, err, errOut)
	}
	snap.samples = append(snap.samples, time.Since(start).Seconds())
	var b struct {
		Object string `json:"object"`
		Bytes  int64  `json:"bytes"`
	}
	if err := json.Unmarshal(out, &b); err != nil {
		return snap, restore, err
	}
	snap.note = fmt.Sprintf("snapshot of %.0f MB", float64(b.Bytes)/1e6)
	if err := g.StopAll(ctx); err != nil {
		return snap, restore, err
	}
	start = time.Now()
	if _, errOut, code, err := g.Command(ctx, insts[0].ID, "restore", "--from", b.Object, "--yes"); err != nil || code != 0 {
		return snap, restore, fmt.Errorf("restore: exit %d, %v: %s", code, err, errOut)
	}
	restore.samples = append(restore.samples, time.Since(start).Seconds())
	return snap, restore, nil
}

// waitWritable polls until a write through any of urls succeeds.
func waitWritable(ctx context.Context, urls ...string) error {
	c, err := clientv3.New(clientv3.Config{Endpoints: urls, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer c.Close()
	return fleet.Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		if _, err := c.Put(pctx, "bench-probe", "x"); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// logTime is the time of the first JSON log line of path whose msg is msg.
func logTime(path, msg string) (time.Time, error) {
	lines, err := logLines(path, msg)
	if err != nil {
		return time.Time{}, err
	}
	if len(lines) == 0 {
		return time.Time{}, fmt.Errorf("%s: no line %q", path, msg)
	}
	ts, _ := lines[0]["time"].(string)
	return time.Parse(time.RFC3339Nano, ts)
}

// logLines returns the JSON log lines of path whose msg is msg.
func logLines(path, msg string) ([]map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return nil, err
	}
	return out, nil
}
