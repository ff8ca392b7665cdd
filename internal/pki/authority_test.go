package pki_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// A member's certificate names exactly the caller's addresses and names,
// serves and is a client, and is valid for the lifetime asked from (a little
// before) its issue.
func TestIssueMember(t *testing.T) {
	ca := newCA(t, "cluster-ca", t0)
	req := pki.LeafRequest{
		Kind:       pki.Member,
		CommonName: "i-0abc",
		IPs:        []net.IP{net.ParseIP("10.0.1.5"), net.ParseIP("2001:db8::5")},
		DNSNames:   []string{"i-0abc.orders.example.com", "orders.example.com"},
		Lifetime:   72 * time.Hour,
	}
	kp := issue(t, ca, req, t0)
	c := kp.Cert

	if c.Subject.CommonName != "i-0abc" {
		t.Errorf("CN = %q, want i-0abc", c.Subject.CommonName)
	}
	if !slices.EqualFunc(c.IPAddresses, req.IPs, net.IP.Equal) {
		t.Errorf("IP SANs = %v, want %v", c.IPAddresses, req.IPs)
	}
	if want := append(slices.Clone(req.DNSNames), pki.MemberHostname); !slices.Equal(c.DNSNames, want) {
		t.Errorf("DNS SANs = %v, want %v", c.DNSNames, want)
	}
	if want := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}; !slices.Equal(c.ExtKeyUsage, want) {
		t.Errorf("ExtKeyUsage = %v, want server and client auth", c.ExtKeyUsage)
	}
	if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("IsCA = %v, KeyUsage = %v: want a leaf for signatures only", c.IsCA, c.KeyUsage)
	}
	if !c.NotAfter.Equal(t0.Add(72 * time.Hour)) {
		t.Errorf("NotAfter = %v, want issue + 72h = %v", c.NotAfter, t0.Add(72*time.Hour))
	}
	if !c.NotBefore.Equal(t0.Add(-time.Minute)) {
		t.Errorf("NotBefore = %v, want a minute before the issue", c.NotBefore)
	}
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", c.PublicKey)
	}
	if err := c.CheckSignatureFrom(ca.Signer.Cert); err != nil {
		t.Errorf("not signed by the CA: %v", err)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := ca.Trust.Verify(c, nil, usage, t0); err != nil {
			t.Errorf("Verify(%v): %v", usage, err)
		}
	}
	for _, host := range []string{"10.0.1.5", "2001:db8::5", "orders.example.com"} {
		if err := c.VerifyHostname(host); err != nil {
			t.Errorf("VerifyHostname(%s): %v", host, err)
		}
	}
	if err := c.VerifyHostname("10.0.1.6"); err == nil {
		t.Error("the certificate names 10.0.1.6, which was not asked for")
	}

	// A short lifetime is backdated by at most a quarter of it, so that
	// renewal at two thirds stays after the issue.
	short := issue(t, ca, memberRequest("i-short", 2*time.Minute), t0)
	if got := t0.Sub(short.Cert.NotBefore); got != 30*time.Second {
		t.Errorf("a 2-minute certificate starts %v before its issue, want 30s", got)
	}
	if due := pki.RenewAt(short.Cert.NotBefore, short.Cert.NotAfter, pki.DefaultRenewFraction); !due.After(t0) || !due.Before(short.Cert.NotAfter) {
		t.Errorf("renewal due %v, want between the issue %v and the expiry %v", due, t0, short.Cert.NotAfter)
	}
}

// A user's certificate is a client certificate only, its CN the etcd user.
func TestIssueUser(t *testing.T) {
	ca := newCA(t, "cluster-ca", t0)
	kp := issue(t, ca, pki.LeafRequest{Kind: pki.User, CommonName: "alice", Lifetime: time.Hour}, t0)
	if kp.Cert.Subject.CommonName != "alice" {
		t.Errorf("CN = %q, want alice", kp.Cert.Subject.CommonName)
	}
	if !slices.Equal(kp.Cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage = %v, want client auth only", kp.Cert.ExtKeyUsage)
	}
	if _, err := ca.Trust.Verify(kp.Cert, nil, x509.ExtKeyUsageServerAuth, t0); err == nil {
		t.Error("a user certificate verifies as a server's")
	}
	chains, err := ca.Trust.Verify(kp.Cert, nil, x509.ExtKeyUsageClientAuth, t0)
	if err != nil {
		t.Fatal(err)
	}
	if pki.IsMemberCertificate(chains, ca.Trust) {
		t.Error("a user certificate passes as a member's")
	}
}

func TestIssueRefuses(t *testing.T) {
	ca := newCA(t, "cluster-ca", t0) // valid for 30 days
	for name, req := range map[string]pki.LeafRequest{
		"no common name":      {Kind: pki.Member, IPs: []net.IP{net.ParseIP("10.0.0.1")}, Lifetime: time.Hour},
		"no lifetime":         {Kind: pki.Member, CommonName: "i-1", IPs: []net.IP{net.ParseIP("10.0.0.1")}},
		"member without SANs": {Kind: pki.Member, CommonName: "i-1", Lifetime: time.Hour},
		"unknown kind":        {Kind: "admin", CommonName: "i-1", Lifetime: time.Hour},
		"outliving the CA":    memberRequest("i-1", 31*24*time.Hour),
	} {
		if _, err := ca.Issue(req, t0); err == nil {
			t.Errorf("%s: issued", name)
		}
	}
}

func TestKeyPairPEM(t *testing.T) {
	ca := newCA(t, "cluster-ca", t0)
	kp := issue(t, ca, memberRequest("i-1", time.Hour), t0)
	key, err := kp.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(key, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Errorf("key PEM starts %q, want PKCS #8", key[:30])
	}
	back, err := pki.ParseKeyPair(kp.CertPEM(), key)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Cert.Equal(kp.Cert) {
		t.Error("the certificate read back differs")
	}
	// One text holding both, as the combined file; and what Go's TLS reads.
	both := append(kp.CertPEM(), key...)
	if _, err := pki.ParseKeyPair(both, both); err != nil {
		t.Errorf("combined: %v", err)
	}
	if _, err := tls.X509KeyPair(both, both); err != nil {
		t.Errorf("tls.X509KeyPair on the combined text (what etcd calls): %v", err)
	}

	other := issue(t, ca, memberRequest("i-2", time.Hour), t0)
	otherKey, _ := other.KeyPEM()
	if _, err := pki.ParseKeyPair(kp.CertPEM(), otherKey); err == nil {
		t.Error("a certificate with another's key parsed")
	} else if strings.Contains(err.Error(), "PRIVATE") || strings.Contains(err.Error(), string(otherKey[30:60])) {
		t.Errorf("the error quotes the key: %v", err)
	}
}

// Logging an authority or a key pair shows its subject, never its key.
func TestKeysNeverLogged(t *testing.T) {
	ca := newCA(t, "cluster-ca", t0)
	kp := issue(t, ca, memberRequest("i-1", time.Hour), t0)
	material, err := ca.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	key, _ := kp.KeyPEM()
	var text, js bytes.Buffer
	for _, log := range []*slog.Logger{slog.New(slog.NewTextHandler(&text, nil)), slog.New(slog.NewJSONHandler(&js, nil))} {
		log.Info("x", "ca", ca.Signer, "kp", kp, "cluster", ca)
	}
	for name, out := range map[string]string{"text": text.String(), "json": js.String()} {
		if !strings.Contains(out, "i-1") || !strings.Contains(out, "cluster-ca") {
			t.Errorf("%s log lacks the subjects: %s", name, out)
		}
		if strings.Contains(out, "PRIVATE") {
			t.Errorf("%s log holds a key: %s", name, out)
		}
	}
	// The private scalar, in any base, must not appear either.
	d := kp.TLSCertificate().PrivateKey.(*ecdsa.PrivateKey).D
	for _, s := range []string{d.String(), d.Text(16)} {
		if strings.Contains(text.String()+js.String(), s) {
			t.Error("a log holds the private scalar")
		}
	}
	if raw, _ := json.Marshal(kp); bytes.Contains(raw, key[30:60]) || bytes.Contains(raw, material[len(material)/2:len(material)/2+30]) {
		t.Error("json.Marshal of a key pair holds its key")
	}
}

// TestMemberHostnameOnlyOnMembers: every member certificate carries
// pki.MemberHostname, which etcd's --peer-cert-allowed-hostname admits, and no
// user certificate may.
func TestMemberHostnameOnlyOnMembers(t *testing.T) {
	now := time.Now()
	ca, err := pki.NewClusterCA("test", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ca.Issue(pki.LeafRequest{Kind: pki.Member, CommonName: "i-1", DNSNames: []string{"i-1.example.org"}, Lifetime: time.Minute}, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Cert.VerifyHostname(pki.MemberHostname); err != nil {
		t.Errorf("a member certificate does not name %s: %v", pki.MemberHostname, err)
	}
	if err := m.Cert.VerifyHostname("i-1.example.org"); err != nil {
		t.Errorf("a member certificate lost its own name: %v", err)
	}
	u, err := ca.Issue(pki.LeafRequest{Kind: pki.User, CommonName: "alice", Lifetime: time.Minute}, now)
	if err != nil {
		t.Fatal(err)
	}
	if u.Cert.VerifyHostname(pki.MemberHostname) == nil {
		t.Errorf("a user certificate names %s", pki.MemberHostname)
	}
	if _, err := ca.Issue(pki.LeafRequest{Kind: pki.User, CommonName: "mallory", DNSNames: []string{pki.MemberHostname}, Lifetime: time.Minute}, now); err == nil {
		t.Errorf("a user certificate naming %s was issued", pki.MemberHostname)
	}
}
