package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// storeUnderTest is a fresh, empty Store of one kind, with the means to
// reach behind it and damage what it holds, by name relative to its root.
type storeUnderTest struct {
	Store
	write  func(name string, b []byte)
	read   func(name string) []byte
	remove func(name string)
	// listRequests counts the store's listing requests so far; nil where
	// there is nothing to count.
	listRequests func() int
}

// openStore opens a fresh, empty store that lists pageSize names a page
// (0: the default).
type openStore func(t *testing.T, pageSize int) storeUnderTest

// payload is n reproducible bytes, different for each seed.
func payload(n int, seed uint64) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

var contractStart = time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)

// meta is the n-th snapshot of cluster: n minutes after contractStart,
// revision 100+n.
func meta(cluster string, n int) Meta {
	return Meta{
		Cluster:     cluster,
		ClusterID:   "cdf818194e3a8c32",
		Time:        contractStart.Add(time.Duration(n)*time.Minute + 250*time.Millisecond),
		Revision:    int64(100 + n),
		RaftIndex:   uint64(200 + n),
		RaftTerm:    2,
		EtcdVersion: "3.6.16",
	}
}

func put(t *testing.T, s Store, m Meta, content []byte) Meta {
	t.Helper()
	got, err := s.Put(context.Background(), m, bytes.NewReader(content))
	if err != nil {
		t.Fatalf("Put %+v: %v", m, err)
	}
	if got.Key != Key(m.Cluster, m.Time, m.Revision) || got.Size != int64(len(content)) || got.SHA256 != sha(content) {
		t.Fatalf("Put returned %+v, want key %s, size %d, sha256 %s", got, Key(m.Cluster, m.Time, m.Revision), len(content), sha(content))
	}
	return got
}

// get reads a snapshot to its end, as a restore does.
func get(s Store, key string) ([]byte, Meta, error) {
	rc, m, err := s.Get(context.Background(), key)
	if err != nil {
		return nil, Meta{}, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return b, m, err
}

func list(t *testing.T, s Store, cluster string) []Meta {
	t.Helper()
	snaps, err := s.List(context.Background(), cluster)
	if err != nil {
		t.Fatalf("List %s: %v", cluster, err)
	}
	return snaps
}

func keys(snaps []Meta) []string {
	out := []string{}
	for _, m := range snaps {
		out = append(out, m.Key)
	}
	return out
}

func sameMeta(a, b Meta) bool {
	return a.Key == b.Key && a.Cluster == b.Cluster && a.ClusterID == b.ClusterID && a.Time.Equal(b.Time) &&
		a.Revision == b.Revision && a.RaftIndex == b.RaftIndex && a.RaftTerm == b.RaftTerm && a.Size == b.Size && a.SHA256 == b.SHA256 && a.EtcdVersion == b.EtcdVersion &&
		a.Verified == b.Verified && a.VerifiedAt.Equal(b.VerifiedAt)
}

// testStoreContract is what every Store does, whatever holds the bytes.
func testStoreContract(t *testing.T, open openStore) {
	ctx := context.Background()

	t.Run("a store that holds nothing yet lists nothing", func(t *testing.T) {
		s := open(t, 0)
		if snaps := list(t, s, "c"); len(snaps) != 0 {
			t.Errorf("List = %v, want none", keys(snaps))
		}
	})

	t.Run("put, list, get, set meta, delete", func(t *testing.T) {
		s := open(t, 0)
		var stored []Meta
		for i, n := range []int{0, 5, 10} {
			stored = append(stored, put(t, s, meta("c", n), payload(1000+i, uint64(n))))
		}
		// Same second as the last, a higher revision: newer.
		m := meta("c", 10)
		m.Revision++
		stored = append(stored, put(t, s, m, payload(7, 99)))
		snaps := list(t, s, "c")
		want := slices.Clone(stored)
		slices.Reverse(want)
		if !slices.EqualFunc(snaps, want, sameMeta) {
			t.Fatalf("List = %+v\nwant newest first %+v", snaps, want)
		}

		b, got, err := get(s, stored[1].Key)
		if err != nil || !bytes.Equal(b, payload(1001, 5)) || !sameMeta(got, stored[1]) {
			t.Fatalf("Get %s = %d bytes, %+v, %v", stored[1].Key, len(b), got, err)
		}

		verified := stored[1]
		verified.Verified, verified.VerifiedAt = true, contractStart.Add(time.Hour)
		if err := s.SetMeta(ctx, verified); err != nil {
			t.Fatal(err)
		}
		if snaps := list(t, s, "c"); !sameMeta(snaps[2], verified) {
			t.Errorf("after SetMeta List has %+v, want %+v", snaps[2], verified)
		}
		if _, got, err := get(s, verified.Key); err != nil || !sameMeta(got, verified) {
			t.Errorf("after SetMeta Get = %+v, %v", got, err)
		}

		if err := s.Delete(ctx, verified.Key); err != nil {
			t.Fatal(err)
		}
		if snaps := list(t, s, "c"); !slices.Equal(keys(snaps), []string{want[0].Key, want[1].Key, want[3].Key}) {
			t.Errorf("after Delete List = %v", keys(snaps))
		}
		if _, _, err := get(s, verified.Key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get of a deleted snapshot: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, verified.Key); err != nil {
			t.Errorf("deleting a deleted snapshot again: %v, want done", err)
		}
		if _, _, err := get(s, "c/20260510T120000Z-r1.db"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get of a snapshot never stored: %v, want ErrNotFound", err)
		}
		if _, _, err := get(s, "c/README"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get of a name that is no snapshot key: %v, want ErrNotFound", err)
		}
	})

	t.Run("a listing of many pages", func(t *testing.T) {
		s := open(t, 3)
		const n = 10
		for i := range n {
			put(t, s, meta("c", i), payload(10, uint64(i)))
		}
		s.write("c/not-a-snapshot", []byte("x"))
		before := 0
		if s.listRequests != nil {
			before = s.listRequests()
		}
		snaps := list(t, s, "c")
		if len(snaps) != n {
			t.Fatalf("List = %d snapshots %v, want %d", len(snaps), keys(snaps), n)
		}
		for i, m := range snaps {
			if m.Revision != int64(100+n-1-i) {
				t.Errorf("List[%d] = %s, want revision %d", i, m.Key, 100+n-1-i)
			}
		}
		// 21 names (10 objects, 10 sidecars, 1 foreign), 3 a page.
		if s.listRequests != nil {
			if pages := s.listRequests() - before; pages != 7 {
				t.Errorf("List read %d pages, want 7", pages)
			}
		}
	})

	t.Run("a snapshot of many parts streams through", func(t *testing.T) {
		s := open(t, 0)
		content := payload(2*partSize+12345, 7)
		m := put(t, s, meta("c", 0), content)
		b, _, err := get(s, m.Key)
		if err != nil || !bytes.Equal(b, content) {
			t.Fatalf("Get = %d bytes, %v; want the %d bytes put", len(b), err, len(content))
		}
	})

	t.Run("a flipped byte is corrupt", func(t *testing.T) {
		s := open(t, 0)
		m := put(t, s, meta("c", 0), payload(5000, 1))
		b := s.read(m.Key)
		b[2500] ^= 0x01
		s.write(m.Key, b)
		if len(list(t, s, "c")) != 1 {
			t.Errorf("a corrupt object is still a snapshot: List must show it, so that thinning can delete it")
		}
		if _, _, err := get(s, m.Key); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Get of a flipped byte: %v, want ErrCorrupt", err)
		}
	})

	t.Run("a truncated object is corrupt", func(t *testing.T) {
		s := open(t, 0)
		m := put(t, s, meta("c", 0), payload(5000, 1))
		s.write(m.Key, s.read(m.Key)[:4999])
		if _, _, err := get(s, m.Key); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Get of a truncated object: %v, want ErrCorrupt", err)
		}
	})

	t.Run("an object longer than its sidecar says is corrupt", func(t *testing.T) {
		s := open(t, 0)
		m := put(t, s, meta("c", 0), payload(5000, 1))
		s.write(m.Key, append(s.read(m.Key), 0))
		if _, _, err := get(s, m.Key); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Get of a longer object: %v, want ErrCorrupt", err)
		}
	})

	t.Run("an object without sidecar is not listed", func(t *testing.T) {
		s := open(t, 0)
		m := put(t, s, meta("c", 0), payload(100, 1))
		kept := put(t, s, meta("c", 1), payload(100, 2))
		s.remove(SidecarKey(m.Key))
		if got := keys(list(t, s, "c")); !slices.Equal(got, []string{kept.Key}) {
			t.Errorf("List = %v, want only %s", got, kept.Key)
		}
		if _, _, err := get(s, m.Key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get without sidecar: %v, want ErrNotFound", err)
		}
	})

	t.Run("a sidecar without object is not listed", func(t *testing.T) {
		s := open(t, 0)
		m := put(t, s, meta("c", 0), payload(100, 1))
		s.remove(m.Key)
		if got := list(t, s, "c"); len(got) != 0 {
			t.Errorf("List = %v, want none", keys(got))
		}
		if _, _, err := get(s, m.Key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get without object: %v, want ErrNotFound", err)
		}
	})

	t.Run("a sidecar that does not parse is not listed and corrupt", func(t *testing.T) {
		s := open(t, 0)
		m := put(t, s, meta("c", 0), payload(100, 1))
		other := put(t, s, meta("c", 1), payload(100, 2))
		s.write(SidecarKey(m.Key), []byte("{not json"))
		// A sidecar copied from another snapshot vouches for other bytes.
		s.write(SidecarKey(other.Key), s.read(SidecarKey(put(t, s, meta("c", 2), payload(100, 3)).Key)))
		if got := keys(list(t, s, "c")); !slices.Equal(got, []string{Key("c", meta("c", 2).Time, 102)}) {
			t.Errorf("List = %v, want only the intact snapshot", got)
		}
		for _, key := range []string{m.Key, other.Key} {
			if _, _, err := get(s, key); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Get %s with a bad sidecar: %v, want ErrCorrupt", key, err)
			}
		}
	})

	t.Run("foreign objects are ignored", func(t *testing.T) {
		s := open(t, 0)
		m := put(t, s, meta("c", 0), payload(100, 1))
		for _, name := range []string{
			"README", "c/README", "c/notes.db", "c/20260510T120000Z-r7.db.bak", "c/20260510T120000Z-r07.db",
			"c/20260510T120000Z-r07.db.json", "c/sub/20260510T120000Z-r7.db", "c/sub/20260510T120000Z-r7.db.json",
		} {
			s.write(name, []byte("{}"))
		}
		if got := keys(list(t, s, "c")); !slices.Equal(got, []string{m.Key}) {
			t.Errorf("List = %v, want only %s", got, m.Key)
		}
	})

	t.Run("another cluster's snapshots are not listed", func(t *testing.T) {
		s := open(t, 0)
		a := put(t, s, meta("etcd", 0), payload(100, 1))
		b := put(t, s, meta("etcd-2", 1), payload(100, 2))
		if got := keys(list(t, s, "etcd")); !slices.Equal(got, []string{a.Key}) {
			t.Errorf("List etcd = %v, want only %s", got, a.Key)
		}
		if got := keys(list(t, s, "etcd-2")); !slices.Equal(got, []string{b.Key}) {
			t.Errorf("List etcd-2 = %v, want only %s", got, b.Key)
		}
	})

	t.Run("put replaces a snapshot of the same name", func(t *testing.T) {
		s := open(t, 0)
		put(t, s, meta("c", 0), payload(100, 1))
		m := put(t, s, meta("c", 0), payload(200, 2))
		if snaps := list(t, s, "c"); len(snaps) != 1 || !sameMeta(snaps[0], m) {
			t.Errorf("List = %+v, want only %+v", snaps, m)
		}
		if b, _, err := get(s, m.Key); err != nil || !bytes.Equal(b, payload(200, 2)) {
			t.Errorf("Get = %d bytes, %v; want the second put's", len(b), err)
		}
	})

	t.Run("set meta records verification only", func(t *testing.T) {
		s := open(t, 0)
		m := put(t, s, meta("c", 0), payload(100, 1))
		for _, change := range []func(*Meta){
			func(m *Meta) { m.SHA256 = sha([]byte("other")) },
			func(m *Meta) { m.Size++ },
			func(m *Meta) { m.Revision++ },
		} {
			bad := m
			change(&bad)
			if err := s.SetMeta(ctx, bad); err == nil {
				t.Errorf("SetMeta %+v succeeded, want an error", bad)
			}
		}
		gone := meta("c", 1)
		gone.Key = Key(gone.Cluster, gone.Time, gone.Revision)
		if err := s.SetMeta(ctx, gone); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetMeta of a snapshot never stored: %v, want ErrNotFound", err)
		}
		if _, got, err := get(s, m.Key); err != nil || !sameMeta(got, m) {
			t.Errorf("after refused SetMeta Get = %+v, %v; want %+v", got, err, m)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		s := open(t, 0)
		for _, m := range []Meta{
			{Cluster: "", Time: contractStart, Revision: 1},
			{Cluster: "a/b", Time: contractStart, Revision: 1},
			{Cluster: "c", Revision: 1},
			{Cluster: "c", Time: contractStart},
		} {
			if _, err := s.Put(ctx, m, bytes.NewReader(nil)); err == nil {
				t.Errorf("Put %+v succeeded, want an error", m)
			}
		}
		if _, err := s.List(ctx, "../c"); err == nil {
			t.Errorf("List of cluster ../c succeeded, want an error")
		}
		if err := s.Delete(ctx, "../c/x"); err == nil {
			t.Errorf("Delete ../c/x succeeded, want an error")
		}
	})

	t.Run("a failing reader fails the put and stores nothing", func(t *testing.T) {
		s := open(t, 0)
		broken := io.MultiReader(bytes.NewReader(payload(partSize+10, 1)), iotestErrReader{})
		if _, err := s.Put(ctx, meta("c", 0), broken); err == nil {
			t.Fatalf("Put of a failing reader succeeded")
		}
		if got := list(t, s, "c"); len(got) != 0 {
			t.Errorf("List after a failed put = %v, want none", keys(got))
		}
	})
}

// iotestErrReader fails every read, as a snapshot stream from a dying etcd.
type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("etcd went away") }
