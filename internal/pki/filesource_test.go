package pki_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// writeOperatorFiles writes a pair and bundle as an operator's tool would:
// in place, separate files.
func writeOperatorFiles(t *testing.T, files pki.KeyPairFiles, kp *pki.KeyPair, trust *pki.Bundle) {
	t.Helper()
	key, err := kp.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string][]byte{files.Cert: kp.CertPEM(), files.Key: key, files.CA: trust.PEM()} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// --tls files: the operator's files are read again when their content
// changes, even in place with the same size; unusable content leaves the
// last good one in use.
func TestFileSourceReloads(t *testing.T) {
	dir := t.TempDir()
	files := pki.KeyPairFiles{Cert: filepath.Join(dir, "server.crt"), Key: filepath.Join(dir, "server.key"), CA: filepath.Join(dir, "ca.crt")}
	ca := newCA(t, "operator-ca", t0)
	first := issue(t, ca, memberRequest("i-1", time.Hour), t0)
	writeOperatorFiles(t, files, first, ca.Trust)

	clock := newFakeClock(t0)
	var logs logBuffer
	s, err := pki.NewFileSource(pki.FileSourceConfig{Files: files, Interval: time.Minute, After: clock.After, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Current().Cert.Equal(first.Cert) || !s.Trust().Equal(ca.Trust) {
		t.Fatal("NewFileSource did not load the files")
	}
	if changed, err := s.Reload(); changed || err != nil {
		t.Errorf("Reload of unchanged files: changed %v, %v", changed, err)
	}

	// A renewal by the operator: new certificate and key, same sizes.
	second := issue(t, ca, memberRequest("i-1", time.Hour), t0)
	writeOperatorFiles(t, files, second, ca.Trust)
	if changed, err := s.Reload(); !changed || err != nil {
		t.Fatalf("Reload after the files changed: changed %v, %v", changed, err)
	}
	if c, _ := s.GetCertificate(nil); !c.Leaf.Equal(second.Cert) {
		t.Error("GetCertificate does not serve the new certificate")
	}

	// A certificate whose key has not been written yet: kept the last good.
	third := issue(t, ca, memberRequest("i-1", time.Hour), t0)
	if err := os.WriteFile(files.Cert, third.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Reload(); changed || err == nil {
		t.Errorf("Reload of a certificate with another's key: changed %v, %v; want an error", changed, err)
	}
	if !s.Current().Cert.Equal(second.Cert) {
		t.Error("an unusable certificate replaced the last good one")
	}
	// A certificate of a CA the bundle does not hold: refused too.
	foreign := issue(t, newCA(t, "foreign", t0), memberRequest("i-1", time.Hour), t0)
	writeOperatorFiles(t, files, foreign, ca.Trust)
	if _, err := s.Reload(); err == nil || !strings.Contains(err.Error(), "not signed by a CA") {
		t.Errorf("Reload of a certificate from a foreign CA: %v", err)
	}

	// Run polls: the next good content is taken at the next look.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Run(ctx) }()
	fourth := issue(t, ca, memberRequest("i-1", time.Hour), t0)
	writeOperatorFiles(t, files, fourth, ca.Trust)
	w := clock.nextWait(t)
	if w.d != time.Minute {
		t.Errorf("Run waits %v between looks, want the interval 1m", w.d)
	}
	w.fire <- t0
	waitFor(t, "reload by Run", func() bool { return s.Current().Cert.Equal(fourth.Cert) })
	if out := logs.String(); strings.Contains(out, "PRIVATE") {
		t.Errorf("logs hold a key: %s", out)
	}
}

func TestFileSourceRefusesUnusableFiles(t *testing.T) {
	dir := t.TempDir()
	files := pki.KeyPairFiles{Cert: filepath.Join(dir, "c"), Key: filepath.Join(dir, "k"), CA: filepath.Join(dir, "ca")}
	if _, err := pki.NewFileSource(pki.FileSourceConfig{Files: files}); err == nil {
		t.Error("missing files accepted")
	}
	ca := newCA(t, "ca", t0)
	writeOperatorFiles(t, files, issue(t, ca, memberRequest("i-1", time.Hour), t0), ca.Trust)
	if _, err := pki.NewFileSource(pki.FileSourceConfig{Files: pki.KeyPairFiles{Cert: files.Cert, Key: files.Key}}); err == nil {
		t.Error("no CA file accepted")
	}
	if err := os.WriteFile(files.CA, []byte("no certificates here"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.NewFileSource(pki.FileSourceConfig{Files: files}); err == nil || !strings.Contains(err.Error(), files.CA) {
		t.Errorf("an empty CA file: %v, want an error naming it", err)
	}
}
