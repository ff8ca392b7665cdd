package main

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// TestClientCert: client-cert writes a user certificate of the cluster CA,
// its key 0600 and the CA bundle; it refuses without a CA, and never creates
// one.
func TestClientCert(t *testing.T) {
	caDir, out := t.TempDir(), filepath.Join(t.TempDir(), "alice")
	if code := runClientCert(t.Context(), []string{"--name", "alice", "--out", out, "--tls-ca-dir", caDir}, &bytes.Buffer{}); code != 1 {
		t.Errorf("client-cert without a CA stored: exit %d, want 1", code)
	}
	if _, err := os.Stat(filepath.Join(caDir, "ca.pem")); err == nil {
		t.Error("client-cert created a CA")
	}
	if code := runClientCert(t.Context(), []string{"--name", "alice", "--out", out}, &bytes.Buffer{}); code != exitUsage {
		t.Errorf("client-cert without a CA source: exit %d, want %d", code, exitUsage)
	}
	ca, _, err := pki.EnsureCA(t.Context(), pki.DirStore{Dir: caDir}, func() (*pki.ClusterCA, error) {
		return pki.NewClusterCA("test", time.Now(), time.Hour)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if code := runClientCert(t.Context(), []string{"--name", "alice", "--out", out, "--tls-ca-dir", caDir, "--ttl", "30m"}, &stdout); code != 0 {
		t.Fatalf("client-cert: exit %d", code)
	}
	certPEM, err := os.ReadFile(filepath.Join(out, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(out, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(out, "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem mode %v (err %v), want 0600", fi.Mode().Perm(), err)
	}
	kp, err := pki.ParseKeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if kp.Cert.Subject.CommonName != "alice" || time.Until(kp.Cert.NotAfter) > 31*time.Minute {
		t.Errorf("certificate %q until %s, want alice for 30m", kp.Cert.Subject.CommonName, kp.Cert.NotAfter)
	}
	bundle, err := os.ReadFile(filepath.Join(out, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	trust, err := pki.ParseBundle(bundle)
	if err != nil || !trust.Equal(ca.Trust) {
		t.Fatalf("ca.pem is not the cluster's bundle (err %v)", err)
	}
	chains, err := trust.Verify(kp.Cert, nil, x509.ExtKeyUsageClientAuth, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if pki.IsMemberCertificate(chains, trust) {
		t.Error("a client certificate passes for a member's")
	}
}
