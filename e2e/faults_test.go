package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLeaveOnShutdownAlways stops the leader with SIGTERM under
// --leave-on-shutdown=always: it hands leadership over, removes its own
// member and exits; the two others keep serving every key.
func TestLeaveOnShutdownAlways(t *testing.T) {
	g := newGroup(t, "--leave-on-shutdown", "always")
	ctx := testContext(t, 3*time.Minute)
	_, st := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "leave", 50)

	leaver := leaderOf(t, st)
	if err := g.Stop(ctx, leaver.Name); err != nil {
		t.Fatalf("stopping %s: %v", leaver.Name, err)
	}
	after := waitConverged(t, ctx, g, 2)
	for _, m := range after.Members {
		if m.ID == leaver.ID {
			t.Errorf("member %s (%s) still listed after leaving", leaver.ID, leaver.Name)
		}
	}
	if after.ClusterID != st.ClusterID {
		t.Errorf("cluster id changed from %s to %s", st.ClusterID, after.ClusterID)
	}
	checkKeysOnEach(t, ctx, g, "leave", 50)
}

// TestCorruptDataDirRejoins corrupts the bolt database of a stopped member:
// etcd refuses the data, the appliance sets it aside (never deletes it) and
// rejoins the live cluster as a new member with every key.
func TestCorruptDataDirRejoins(t *testing.T) {
	g := newGroup(t)
	ctx := testContext(t, 3*time.Minute)
	insts, st := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "corrupt", 100)

	victim := insts[2]
	oldMember := memberByName(t, st, victim.ID)
	if err := g.Kill(victim.ID); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(victim.DataDir, "etcd", "member", "snap", "db")
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, fi.Size())
	for i := range garbage {
		garbage[i] = 0xA5
	}
	if err := os.WriteFile(db, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.Restart(ctx, victim.ID); err != nil {
		t.Fatal(err)
	}

	after := waitConverged(t, ctx, g, 3)
	m := memberByName(t, after, victim.ID)
	if m.ID == oldMember.ID {
		t.Errorf("%s kept member id %s on corrupt data; want a new member after the rejoin", victim.ID, m.ID)
	}
	if after.ClusterID != st.ClusterID {
		t.Errorf("cluster id changed from %s to %s", st.ClusterID, after.ClusterID)
	}
	checkKeys(t, ctx, g, "corrupt", 100, victim.ID)

	aside, err := filepath.Glob(filepath.Join(victim.DataDir, "wiped-*", "etcd", "member", "snap", "db"))
	if err != nil || len(aside) != 1 {
		t.Fatalf("corrupt data not set aside: %v %v", aside, err)
	}
	if b, err := os.ReadFile(aside[0]); err != nil || len(b) != len(garbage) || b[0] != 0xA5 {
		t.Errorf("the set-aside copy is not the original corrupt db (len %d, err %v)", len(b), err)
	}
}

// TestExternalEtcdBinary runs the group with --etcd-binary: the appliance
// starts that program with etcd's flags instead of its bundled etcd.
func TestExternalEtcdBinary(t *testing.T) {
	wrapper := filepath.Join(t.TempDir(), "external-etcd")
	script := "#!/bin/sh\nexec " + binary + " etcd \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	g := newGroup(t, "--etcd-binary", wrapper)
	ctx := testContext(t, 3*time.Minute)
	insts, _ := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "external", 20)
	checkKeysOnEach(t, ctx, g, "external", 20)
	for _, inst := range insts {
		log, err := os.ReadFile(inst.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), "bin="+wrapper) {
			t.Errorf("%s did not start the external etcd %s", inst.ID, wrapper)
		}
	}
}
