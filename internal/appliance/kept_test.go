package appliance

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestKeptRelease: the launcher records the release that starts on the
// data, keeps a byte-identical executable copy of the current one in the
// background and records it, and a swap's prune leaves only the version
// named.
func TestKeptRelease(t *testing.T) {
	a := testAppliance(t)
	src := filepath.Join(t.TempDir(), "etcd-appliance")
	content := bytes.Repeat([]byte("etcd"), 1<<16)
	if err := os.WriteFile(src, content, 0o755); err != nil {
		t.Fatal(err)
	}
	l := &launcher{node: a.node, current: etcdRelease{Version: "3.6.16", Command: []string{src, "etcd"}}}
	if err := l.record(l.current); err != nil {
		t.Fatal(err)
	}
	if r, ok, err := a.data.lastRelease(); err != nil || !ok || r.Version != "3.6.16" || len(r.Command) != 0 {
		t.Fatalf("recorded %+v, %v, %v: want 3.6.16 without a copy yet", r, ok, err)
	}
	l.keepCurrent()
	waitFor(t, func() bool {
		r, ok, _ := a.data.lastRelease()
		return ok && len(r.Command) == 2
	})
	r, _, _ := a.data.lastRelease()
	if r.Command[1] != "etcd" || filepath.Dir(filepath.Dir(r.Command[0])) != a.data.keptDir() {
		t.Fatalf("kept command %q, want a copy under %s with the leading arguments", r.Command, a.data.keptDir())
	}
	got, err := os.ReadFile(r.Command[0])
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("the copy differs from the binary (%v)", err)
	}
	if fi, err := os.Stat(r.Command[0]); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("the copy is not executable: %v %v", fi, err)
	}
	if kept, ok := a.data.keptRelease(etcdRelease{Version: "3.6.16", Command: []string{src}}); !ok || kept.Command[0] != r.Command[0] {
		t.Errorf("keptRelease = %+v, %v", kept, ok)
	}
	// Another version kept beside it goes on prune.
	if _, err := a.data.keep(etcdRelease{Version: "3.5.36", Command: []string{src}}); err != nil {
		t.Fatal(err)
	}
	if got := a.data.keptVersions(); !slices.Equal(got, []string{"3.5.36", "3.6.16"}) {
		t.Fatalf("kept %q", got)
	}
	if err := a.data.pruneKept("3.6.16"); err != nil {
		t.Fatal(err)
	}
	if got := a.data.keptVersions(); !slices.Equal(got, []string{"3.6.16"}) {
		t.Errorf("after prune, kept %q", got)
	}
}

// TestLastReleaseTorn: a torn record is no release, never an error that
// stops the member from starting.
func TestLastReleaseTorn(t *testing.T) {
	a := testAppliance(t)
	if err := os.WriteFile(a.data.releaseFile(), []byte(`{"version":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if r, ok, err := a.data.lastRelease(); err != nil || ok {
		t.Errorf("lastRelease = %+v, %v, %v; want none", r, ok, err)
	}
}
