package snapshot

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func openFileStore(t *testing.T, pageSize int) storeUnderTest {
	t.Helper()
	root := filepath.Join(t.TempDir(), "snapshots")
	s, err := Open(context.Background(), "file://"+root, Options{ListPageSize: pageSize})
	if err != nil {
		t.Fatal(err)
	}
	path := func(name string) string { return filepath.Join(root, filepath.FromSlash(name)) }
	return storeUnderTest{
		Store: s,
		write: func(name string, b []byte) {
			if err := os.MkdirAll(filepath.Dir(path(name)), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path(name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		read: func(name string) []byte {
			b, err := os.ReadFile(path(name))
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		remove: func(name string) {
			if err := os.Remove(path(name)); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func TestFileStore(t *testing.T) {
	testStoreContract(t, openFileStore)
}

func TestFileStoreKeepsItsFilesPrivate(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "snapshots")
	s, err := Open(context.Background(), "file://"+root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := put(t, s, meta("c", 0), payload(100, 1))
	for _, dir := range []string{filepath.Dir(root), root, filepath.Join(root, "c")} {
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want a directory 0700", dir, fi.Mode(), err)
		}
	}
	for _, name := range []string{m.Key, SidecarKey(m.Key)} {
		if fi, err := os.Stat(filepath.Join(root, name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want a file 0600", name, fi.Mode(), err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(root, "c"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"20260510T120000Z-r100.db", "20260510T120000Z-r100.db.json"}; !slices.Equal(names, want) {
		t.Errorf("the store holds %v, want %v (no temporary files left)", names, want)
	}
}

func TestFileStoreIgnoresLeftoverTemporaryFiles(t *testing.T) {
	s := openFileStore(t, 0)
	m := put(t, s, meta("c", 0), payload(100, 1))
	s.write("c/."+strings.TrimPrefix(m.Key, "c/")+".tmp-123", []byte("half a snapshot"))
	s.write("c/."+strings.TrimPrefix(SidecarKey(m.Key), "c/")+".tmp-456", []byte("{"))
	if got := keys(list(t, s, "c")); !slices.Equal(got, []string{m.Key}) {
		t.Errorf("List = %v, want only %s", got, m.Key)
	}
}

// TestFileStoreUnreadableIsAnErrorNotEmpty: a store that exists but cannot
// be read must not look empty, or recovery would start a new cluster.
func TestFileStoreUnreadableIsAnErrorNotEmpty(t *testing.T) {
	if os.Geteuid() == 0 {
		// Permissions do not stop root: a file in place of the directory
		// does.
		s := openFileStore(t, 0)
		s.write("c", []byte("not a directory"))
		if snaps, err := s.List(context.Background(), "c"); err == nil {
			t.Errorf("List of a cluster whose directory is a file = %v, nil; want an error", keys(snaps))
		}
		return
	}
	s := openFileStore(t, 0)
	m := put(t, s, meta("c", 0), payload(100, 1))
	dir := filepath.Dir(filepath.Join(strings.TrimPrefix(s.URL(), "file://"), m.Key))
	if err := os.Chmod(dir, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	snaps, err := s.List(context.Background(), "c")
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		t.Errorf("List of an unreadable store = %v, %v; want a permission error", keys(snaps), err)
	}
}
