package appliance

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

func writeWAL(t *testing.T, d dataDir) {
	t.Helper()
	wal := filepath.Join(d.etcd(), "member", "wal")
	if err := os.MkdirAll(wal, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wal, "0000000000000000-0000000000000000.wal"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLocalDataStates(t *testing.T) {
	d := dataDir{root: t.TempDir()}
	ld, err := d.local()
	if err != nil || ld.Exists {
		t.Fatalf("empty dir: got %+v, %v; want no data", ld, err)
	}

	if err := os.MkdirAll(filepath.Join(d.etcd(), "member", "wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if ld, _ := d.local(); ld.Exists {
		t.Fatalf("empty wal dir counts as data: %+v", ld)
	}

	writeWAL(t, d)
	ld, err = d.local()
	if err != nil || !ld.Exists || ld.Known {
		t.Fatalf("wal without marker: got %+v, %v; want data of unknown identity", ld, err)
	}

	if err := d.writeMarker(marker{ClusterID: 0xabc, MemberID: 0x123, Name: "i-1", Revision: 42, Voters: []string{"i-1", "i-2"}}); err != nil {
		t.Fatal(err)
	}
	ld, err = d.local()
	want := cluster.LocalData{Exists: true, Known: true, ClusterID: 0xabc, MemberID: 0x123, Revision: 42, Voters: []string{"i-1", "i-2"}}
	if err != nil || !reflect.DeepEqual(ld, want) {
		t.Fatalf("wal with marker: got %+v, %v; want %+v", ld, err, want)
	}

	// A torn marker must read as unknown identity, never as an error that stops the appliance.
	if err := os.WriteFile(d.marker(), []byte("{\"cluster"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ld, err := d.local(); err != nil || !ld.Exists || ld.Known {
		t.Fatalf("torn marker: got %+v, %v; want data of unknown identity", ld, err)
	}
}

func TestWipeSetsDataAsideAndKeepsTheNewestCopy(t *testing.T) {
	d := dataDir{root: t.TempDir()}
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var asides []string
	for i := range 3 {
		writeWAL(t, d)
		if err := d.writeMarker(marker{ClusterID: 0x77, MemberID: cluster.ID(i + 1)}); err != nil {
			t.Fatal(err)
		}
		aside, err := d.wipe(base.Add(time.Duration(i)*time.Second), 0x77)
		if err != nil {
			t.Fatal(err)
		}
		asides = append(asides, aside)
		if ld, _ := d.local(); ld.Exists || ld.Known {
			t.Fatalf("after wipe %d the data dir still holds data: %+v", i, ld)
		}
		if _, err := os.Stat(filepath.Join(aside, "etcd", "member", "wal")); err != nil {
			t.Fatalf("wipe %d lost the data instead of setting it aside: %v", i, err)
		}
	}
	for _, old := range asides[:2] {
		if _, err := os.Stat(old); !os.IsNotExist(err) {
			t.Errorf("old copy %s kept; want only the newest %d", old, keptWipes)
		}
	}
	if _, err := os.Stat(filepath.Join(asides[2], "member.json")); err != nil {
		t.Errorf("newest copy lost its marker: %v", err)
	}
}

func TestInitialClusterNamesThisInstanceAndKeepsUnstartedMembers(t *testing.T) {
	ms := []cluster.Member{
		{ID: 1, Name: "i-a", PeerURLs: []string{"http://127.0.0.2:2380"}},
		{ID: 2, Name: "i-b", PeerURLs: []string{"http://127.0.0.3:2380"}},
		{ID: 3, PeerURLs: []string{"http://127.0.0.4:2380"}}, // this instance, added, not started
	}
	got := cluster.LaunchJoin(ms, "i-c", "http://127.0.0.4:2380", "token").InitialCluster
	if len(got) != 3 {
		t.Fatalf("got %d entries %+v; want every member, as etcd compares the count", len(got), got)
	}
	if got[2].Name != "i-c" || got[2].PeerURL != "http://127.0.0.4:2380" {
		t.Errorf("own entry = %+v; want i-c=http://127.0.0.4:2380", got[2])
	}
	if got[0].Name != "i-a" || got[1].Name != "i-b" {
		t.Errorf("other entries renamed: %+v", got)
	}
}

func TestWipeNeverPrunesDataOfAnotherCluster(t *testing.T) {
	d := dataDir{root: t.TempDir()}
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var asides []string
	for i, owner := range []cluster.ID{0x99, 0, 0x77, 0x77} {
		writeWAL(t, d)
		if owner != 0 {
			if err := d.writeMarker(marker{ClusterID: owner, MemberID: 1}); err != nil {
				t.Fatal(err)
			}
		}
		aside, err := d.wipe(base.Add(time.Duration(i)*time.Second), 0x77)
		if err != nil {
			t.Fatal(err)
		}
		asides = append(asides, aside)
	}
	for i, want := range []bool{true, true, false, true} {
		_, err := os.Stat(asides[i])
		if kept := err == nil; kept != want {
			t.Errorf("copy %d (%s): kept = %v, want %v", i, asides[i], kept, want)
		}
	}
}

func TestOfferIdentityMatchesEtcd(t *testing.T) {
	o := &cluster.BootstrapOffer{Token: "tok", Members: []cluster.NamedPeer{
		{Name: "i-a", PeerURL: "http://127.0.0.1:2380"}, {Name: "i-b", PeerURL: "http://127.0.0.2:2380"}}}
	cid, aid, err := offerIdentity(o, "i-a")
	if err != nil {
		t.Fatal(err)
	}
	cid2, bid, err := offerIdentity(o, "i-b")
	if err != nil || cid2 != cid || aid == bid || cid == 0 || aid == 0 {
		t.Fatalf("ids: cluster %s/%s, members %s %s, err %v", cid, cid2, aid, bid, err)
	}
	o2 := *o
	o2.Token = "other"
	if cid3, _, _ := offerIdentity(&o2, "i-a"); cid3 == cid {
		t.Errorf("another token gave the same cluster id %s", cid)
	}
	if _, _, err := offerIdentity(o, "i-z"); err == nil {
		t.Error("an instance outside the offer got an identity")
	}
}

// TestReplaceFile: a record is replaced through a temporary file and a
// rename, nothing is left behind, and a failing directory sync (the
// rename's durability) is an error, not a silent success.
func TestReplaceFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "member.json")
	synced := []string{}
	recordSync := func(d string) error { synced = append(synced, d); return nil }
	for _, content := range []string{"first", "second"} {
		if err := replaceFile(path, []byte(content), recordSync); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != content {
			t.Fatalf("after writing %q the file holds %q (%v)", content, b, err)
		}
	}
	if !reflect.DeepEqual(synced, []string{dir, dir}) {
		t.Errorf("directories synced: %v, want %v twice", synced, dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("the directory holds %v (%v), want only member.json", entries, err)
	}

	broken := errors.New("sync: input/output error")
	if err := replaceFile(path, []byte("third"), func(string) error { return broken }); !errors.Is(err, broken) {
		t.Errorf("a failing directory sync returned %v, want %v", err, broken)
	}
	if err := replaceFile(filepath.Join(dir, "gone", "member.json"), []byte("x"), recordSync); err == nil {
		t.Error("writing into a missing directory succeeded")
	}

	// The real thing syncs the directory and returns the sync's errors.
	d := dataDir{root: dir}
	if err := d.writeMarker(marker{Name: "i-1"}); err != nil {
		t.Fatal(err)
	}
	if err := syncDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("syncing a missing directory succeeded")
	}
}
