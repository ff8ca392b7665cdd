package pki_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// Keys are 0600, certificates 0644, created directories 0700, whatever the
// umask; no temporary file stays behind.
func TestWriteKeyPairPermissions(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })

	ca := newCA(t, "ca", t0)
	kp := issue(t, ca, memberRequest("i-1", time.Hour), t0)
	root := t.TempDir()

	t.Run("separate files", func(t *testing.T) {
		dir := filepath.Join(root, "separate", "tls")
		files := pki.KeyPairFiles{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), CA: filepath.Join(dir, "ca.pem")}
		if err := pki.WriteKeyPair(files, kp, ca.Trust); err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]os.FileMode{
			files.Key: 0o600, files.Cert: 0o644, files.CA: 0o644, dir: 0o700, filepath.Dir(dir): 0o700,
		} {
			if got := mode(t, path); got != want {
				t.Errorf("%s: mode %o, want %o", path, got, want)
			}
		}
		if _, err := tls.LoadX509KeyPair(files.Cert, files.Key); err != nil {
			t.Errorf("Go's TLS cannot load the pair: %v", err)
		}
		onlyFiles(t, dir, "ca.pem", "cert.pem", "key.pem")
	})

	t.Run("combined file", func(t *testing.T) {
		dir := filepath.Join(root, "combined")
		pair := filepath.Join(dir, "member.pem")
		files := pki.KeyPairFiles{Cert: pair, Key: pair}
		if err := pki.WriteKeyPair(files, kp, ca.Trust); err != nil {
			t.Fatal(err)
		}
		if got := mode(t, pair); got != 0o600 {
			t.Errorf("combined file mode %o, want 0600: it holds the key", got)
		}
		// etcd's --cert-file and --key-file may name it both.
		if _, err := tls.LoadX509KeyPair(pair, pair); err != nil {
			t.Errorf("Go's TLS cannot load the combined file: %v", err)
		}
		onlyFiles(t, dir, "member.pem")
	})

	t.Run("an existing public file becomes 0600 when it takes a key", func(t *testing.T) {
		path := filepath.Join(root, "was-public.pem")
		if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteKeyPair(pki.KeyPairFiles{Cert: path, Key: path}, kp, nil); err != nil {
			t.Fatal(err)
		}
		if got := mode(t, path); got != 0o600 {
			t.Errorf("mode %o, want 0600", got)
		}
	})
}

func onlyFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if len(got) != len(want) {
		t.Errorf("%s holds %v, want %v", dir, got, want)
	}
}

// Of instances racing to create the local CA, one creates it and all end
// with it; the file is 0600 in a 0700 directory.
func TestDirStoreEnsureCARace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	store := pki.DirStore{Dir: dir}
	ctx := context.Background()
	if _, err := store.Load(ctx); !errors.Is(err, pki.ErrNoCA) {
		t.Fatalf("Load of an empty store: %v, want ErrNoCA", err)
	}

	const racers = 8
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		cas     [racers]*pki.ClusterCA
		created [racers]bool
		errs    [racers]error
	)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			cas[i], created[i], errs[i] = pki.EnsureCA(ctx, store, func() (*pki.ClusterCA, error) {
				return pki.NewClusterCA("local-ca", t0, pki.DefaultCALifetime)
			}, nil)
		}()
	}
	close(start)
	wg.Wait()
	winners := 0
	for i := range racers {
		if errs[i] != nil {
			t.Fatalf("racer %d: %v", i, errs[i])
		}
		if created[i] {
			winners++
		}
		if !cas[i].Signer.Cert.Equal(cas[0].Signer.Cert) {
			t.Errorf("racer %d ended with CA serial %x, racer 0 with %x", i, cas[i].Signer.Cert.SerialNumber, cas[0].Signer.Cert.SerialNumber)
		}
	}
	if winners != 1 {
		t.Errorf("%d racers created the CA, want 1", winners)
	}
	if got := mode(t, filepath.Join(dir, "ca.pem")); got != 0o600 {
		t.Errorf("ca.pem mode %o, want 0600", got)
	}
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("CA dir mode %o, want 0700", got)
	}
	onlyFiles(t, dir, "ca.pem")

	// Later starts read it; a rotation replaces it.
	again, created2, err := pki.EnsureCA(ctx, store, func() (*pki.ClusterCA, error) {
		t.Error("generated a CA although one is stored")
		return nil, errors.New("no")
	}, nil)
	if err != nil || created2 || !again.Signer.Cert.Equal(cas[0].Signer.Cert) {
		t.Errorf("EnsureCA on a stored CA: created %v, err %v", created2, err)
	}
	next, _ := pki.NewAuthority("local-ca-2", t0, pki.DefaultCALifetime)
	material, _ := again.Introduce(next).MarshalPEM()
	previous, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Replace(ctx, previous, material); err != nil {
		t.Fatal(err)
	}
	// A second operator who decided on what was stored before is refused.
	other, _ := pki.NewAuthority("local-ca-3", t0, pki.DefaultCALifetime)
	clobber, _ := again.Introduce(other).MarshalPEM()
	if err := store.Replace(ctx, previous, clobber); !errors.Is(err, pki.ErrCAChanged) {
		t.Errorf("Replace on a CA read before another Replace: %v, want ErrCAChanged", err)
	}
	rotated, _, err := pki.EnsureCA(ctx, store, nil, nil)
	if err != nil || !rotated.Signer.Cert.Equal(again.Signer.Cert) || !rotated.Next.Cert.Equal(next.Cert) || len(rotated.Trust.Certificates()) != 2 {
		t.Errorf("after Replace: %v", err)
	}
	if got := mode(t, filepath.Join(dir, "ca.pem")); got != 0o600 {
		t.Errorf("replaced ca.pem mode %o, want 0600", got)
	}
}

// A stored CA that does not parse stops the start; it is never replaced by
// a new one behind the operator's back.
func TestEnsureCACorruptStore(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := pki.EnsureCA(context.Background(), pki.DirStore{Dir: dir}, func() (*pki.ClusterCA, error) {
		t.Error("generated a CA over a corrupt one")
		return nil, errors.New("no")
	}, nil)
	if !errors.Is(err, pki.ErrBadCA) {
		t.Errorf("err = %v, want ErrBadCA", err)
	}
}

// What etcd does at every handshake — open the certificate path, then the
// key path, and pair them — never fails during renewals that keep the key,
// with one file or two. With a new key each time it may (the reads can
// straddle a rename); how often is logged, not asserted.
func TestRenewalSeenHalfDone(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name    string
		files   pki.KeyPairFiles
		keepKey bool
	}{
		{"two files, key kept", pki.KeyPairFiles{Cert: filepath.Join(dir, "a.crt"), Key: filepath.Join(dir, "a.key")}, true},
		{"one file, key kept", pki.KeyPairFiles{Cert: filepath.Join(dir, "b.pem"), Key: filepath.Join(dir, "b.pem")}, true},
		{"two files, new keys", pki.KeyPairFiles{Cert: filepath.Join(dir, "c.crt"), Key: filepath.Join(dir, "c.key")}, false},
		{"one file, new keys", pki.KeyPairFiles{Cert: filepath.Join(dir, "d.pem"), Key: filepath.Join(dir, "d.pem")}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			r, err := pki.NewRenewer(pki.RenewerConfig{
				CA: newCA(t, "ca", t0), Request: memberRequest("i-1", time.Hour), Files: c.files, KeepKey: c.keepKey,
				Now: clock.Now, After: clock.After,
			})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			result := make(chan [2]int)
			go func() {
				reads, failures := 0, 0
				for {
					select {
					case <-done:
						result <- [2]int{reads, failures}
						return
					default:
					}
					if _, err := tls.LoadX509KeyPair(c.files.Cert, c.files.Key); err != nil {
						failures++
					}
					reads++
				}
			}()
			first := r.Current()
			for range 50 {
				clock.Set(clock.Now().Add(40 * time.Minute))
				if renewed, err := r.RenewIfDue(); err != nil || !renewed {
					t.Fatalf("renewed %v, %v", renewed, err)
				}
			}
			close(done)
			got := <-result
			sameKey := first.Cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(r.Current().Cert.PublicKey)
			if sameKey != c.keepKey {
				t.Errorf("the last certificate has the first one's key: %v, want %v", sameKey, c.keepKey)
			}
			if c.keepKey && got[1] != 0 {
				t.Errorf("%d of %d reads during 50 renewals failed", got[1], got[0])
			}
			t.Logf("%d of %d reads during 50 renewals failed", got[1], got[0])
		})
	}
}

// Without a generator, an empty store is ErrNoCA, not a new CA.
func TestEnsureCAReadOnly(t *testing.T) {
	_, _, err := pki.EnsureCA(context.Background(), pki.DirStore{Dir: t.TempDir()}, nil, nil)
	if !errors.Is(err, pki.ErrNoCA) {
		t.Errorf("err = %v, want ErrNoCA", err)
	}
}
