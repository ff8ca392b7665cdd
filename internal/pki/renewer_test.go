package pki_test

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

func combinedFiles(t *testing.T) pki.KeyPairFiles {
	dir := filepath.Join(t.TempDir(), "tls")
	pair := filepath.Join(dir, "member.pem")
	return pki.KeyPairFiles{Cert: pair, Key: pair, CA: filepath.Join(dir, "ca.pem")}
}

// onDisk is the certificate etcd would load from files now.
func onDisk(t *testing.T, files pki.KeyPairFiles) *pki.KeyPair {
	t.Helper()
	certPEM, err := os.ReadFile(files.Cert)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(files.Key)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := pki.ParseKeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// With a 2-minute lifetime, the certificate is renewed once two thirds of
// its validity have passed, well before it expires, and the renewal reaches
// both the handshake callbacks and the files; the clock is the test's.
func TestRenewerRenewsBeforeExpiry(t *testing.T) {
	clock := newFakeClock(t0)
	ca := newCA(t, "ca", t0)
	files := combinedFiles(t)
	var logs logBuffer
	r, err := pki.NewRenewer(pki.RenewerConfig{
		CA: ca, Request: memberRequest("i-1", 2*time.Minute), Files: files,
		Now: clock.Now, After: clock.After, Logger: logs.logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	first := r.Current()
	if !onDisk(t, files).Cert.Equal(first.Cert) {
		t.Fatal("the first certificate is not on disk")
	}
	// Valid 30 s before the issue to 2 min after: due at 2/3 of 150 s,
	// 70 s after the issue, 50 s before the expiry.
	due := t0.Add(70 * time.Second)

	for _, at := range []time.Time{t0, t0.Add(time.Minute), due.Add(-time.Second)} {
		clock.Set(at)
		if renewed, err := r.RenewIfDue(); err != nil || renewed {
			t.Fatalf("at issue+%v: renewed %v (%v), want not yet", at.Sub(t0), renewed, err)
		}
	}
	clock.Set(due)
	renewed, err := r.RenewIfDue()
	if err != nil || !renewed {
		t.Fatalf("at issue+70s: renewed %v (%v), want renewed", renewed, err)
	}
	second := r.Current()
	if second.Cert.SerialNumber.Cmp(first.Cert.SerialNumber) == 0 {
		t.Fatal("renewed to the same serial")
	}
	if !due.Before(first.Cert.NotAfter) {
		t.Errorf("renewed at %v, after the old certificate expired at %v", due, first.Cert.NotAfter)
	}
	if !second.Cert.NotAfter.Equal(due.Add(2 * time.Minute)) {
		t.Errorf("new NotAfter %v, want %v", second.Cert.NotAfter, due.Add(2*time.Minute))
	}
	if !onDisk(t, files).Cert.Equal(second.Cert) {
		t.Error("the renewed certificate is not on disk")
	}
	for name, get := range map[string]func() (*tls.Certificate, error){
		"GetCertificate":       func() (*tls.Certificate, error) { return r.GetCertificate(nil) },
		"GetClientCertificate": func() (*tls.Certificate, error) { return r.GetClientCertificate(nil) },
	} {
		c, err := get()
		if err != nil || !c.Leaf.Equal(second.Cert) {
			t.Errorf("%s after the renewal: not the new certificate (%v)", name, err)
		}
	}
	if out := logs.String(); strings.Contains(out, "PRIVATE") || !strings.Contains(out, "issued the member certificate") {
		t.Errorf("logs: %s", out)
	}
}

// Run sleeps until the certificate is due, renews it, and sleeps again;
// a failed renewal is retried every RetryInterval. No real waiting: the
// test moves the clock and fires the timers.
func TestRenewerRun(t *testing.T) {
	clock := newFakeClock(t0)
	// The CA ends 5 minutes in: the third certificate would outlive it.
	ca, err := pki.NewClusterCA("short-ca", t0, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	files := combinedFiles(t)
	r, err := pki.NewRenewer(pki.RenewerConfig{
		CA: ca, Request: memberRequest("i-1", 2*time.Minute), Files: files,
		RetryInterval: 5 * time.Second, Now: clock.Now, After: clock.After,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	// Issued at t0, due 70 s later; renewed at t0+70s, due at t0+140s.
	for i, wantWait := range []time.Duration{70 * time.Second, 70 * time.Second} {
		before := r.Current()
		w := clock.nextWait(t)
		if w.d != wantWait {
			t.Fatalf("renewal %d: Run waits %v, want %v", i+1, w.d, wantWait)
		}
		clock.Set(clock.Now().Add(w.d))
		w.fire <- clock.Now()
		waitFor(t, "renewal", func() bool { return r.Current() != before })
		if !onDisk(t, files).Cert.Equal(r.Current().Cert) {
			t.Errorf("renewal %d not on disk", i+1)
		}
	}
	// At t0+210s the next certificate would end at t0+330s, past the CA:
	// the renewal fails, the current certificate stays, a retry follows.
	w := clock.nextWait(t)
	current := r.Current()
	clock.Set(clock.Now().Add(w.d))
	w.fire <- clock.Now()
	retry := clock.nextWait(t)
	if retry.d != 5*time.Second {
		t.Errorf("after a failed renewal Run waits %v, want the retry interval 5s", retry.d)
	}
	if r.Current() != current {
		t.Error("a failed renewal replaced the certificate")
	}

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// A rotation through a renewer: Introduce trusts and writes the two-CA
// bundle without renewing; Promote renews under the new signer; Retire
// shrinks the bundle without renewing.
func TestRenewerSetCA(t *testing.T) {
	clock := newFakeClock(t0)
	old := newCA(t, "ca-1", t0)
	files := combinedFiles(t)
	r, err := pki.NewRenewer(pki.RenewerConfig{
		CA: old, Request: memberRequest("i-1", time.Hour), Files: files, Now: clock.Now, After: clock.After,
	})
	if err != nil {
		t.Fatal(err)
	}
	first := r.Current()
	next, err := pki.NewAuthority("ca-2", t0, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	introduced := old.Introduce(next)
	if err := r.SetCA(introduced); err != nil {
		t.Fatal(err)
	}
	if r.Current() != first {
		t.Error("Introduce renewed the certificate; the signer did not change")
	}
	if !r.Trust().Equal(introduced.Trust) || len(r.Trust().Certificates()) != 2 {
		t.Error("after Introduce the renewer does not trust both CAs")
	}
	rotated, err := introduced.Promote()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetCA(rotated); err != nil {
		t.Fatal(err)
	}
	if err := r.Current().Cert.CheckSignatureFrom(next.Cert); err != nil {
		t.Errorf("after SetCA the certificate is not the new signer's: %v", err)
	}
	if !r.Trust().Equal(rotated.Trust) {
		t.Error("after SetCA the renewer does not trust the rotation bundle")
	}
	caPEM, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	onFile, err := pki.ParseBundle(caPEM)
	if err != nil || !onFile.Equal(rotated.Trust) {
		t.Errorf("the CA file is not the rotation bundle (%v)", err)
	}
	// The old certificate still verifies under the new bundle: peers that
	// have not renewed yet are still accepted.
	if _, err := r.Trust().Verify(first.Cert, nil, 0, t0); err != nil {
		t.Errorf("the old CA's certificate no longer verifies: %v", err)
	}

	// Retire: same signer, no renewal, the CA file shrinks.
	current := r.Current()
	if err := r.SetCA(rotated.Retire()); err != nil {
		t.Fatal(err)
	}
	if r.Current() != current {
		t.Error("Retire renewed the certificate; its signer did not change")
	}
	caPEM, _ = os.ReadFile(files.CA)
	if onFile, _ := pki.ParseBundle(caPEM); onFile == nil || len(onFile.Certificates()) != 1 {
		t.Error("after Retire the CA file still holds the old CA")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("no %s within 30 s", what)
		case <-poll.C:
		}
	}
}
