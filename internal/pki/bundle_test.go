package pki_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// A rotation with overlap: Introduce trusts the new CA without signing with
// it; after Promote certificates of the old CA and of the new one verify
// under the bundle, a foreign CA's never; after Retire only the new CA's do.
// Each step survives the stored form.
func TestRotationOverlap(t *testing.T) {
	old := newCA(t, "ca-2026", t0)
	next, err := pki.NewAuthority("ca-2027", t0, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	introduced := roundTrip(t, old.Introduce(next))
	if !introduced.Signer.Cert.Equal(old.Signer.Cert) || !introduced.Next.Cert.Equal(next.Cert) {
		t.Fatal("Introduce changed the signer, or lost the next CA")
	}
	if _, err := old.Promote(); err == nil {
		t.Error("Promote without an introduced CA succeeded")
	}
	rotated, err := introduced.Promote()
	if err != nil {
		t.Fatal(err)
	}
	rotated = roundTrip(t, rotated)
	foreign := newCA(t, "someone-else", t0)

	fromOld := issue(t, introduced, memberRequest("i-old", time.Hour), t0)
	fromNew := issue(t, rotated, memberRequest("i-new", time.Hour), t0)
	fromForeign := issue(t, foreign, memberRequest("i-foreign", time.Hour), t0)
	if err := fromOld.Cert.CheckSignatureFrom(old.Signer.Cert); err != nil {
		t.Fatalf("after Introduce the old CA does not sign: %v", err)
	}
	if err := fromNew.Cert.CheckSignatureFrom(next.Cert); err != nil {
		t.Fatalf("after Promote the new CA does not sign: %v", err)
	}

	verifies := func(b *pki.Bundle, kp *pki.KeyPair) bool {
		_, err := b.Verify(kp.Cert, nil, x509.ExtKeyUsageClientAuth, t0)
		return err == nil
	}
	for _, c := range []struct {
		name   string
		bundle *pki.Bundle
		leaf   *pki.KeyPair
		want   bool
	}{
		{"old bundle, old leaf", old.Trust, fromOld, true},
		{"old bundle, new leaf", old.Trust, fromNew, false},
		{"introduced bundle, old leaf", introduced.Trust, fromOld, true},
		{"introduced bundle, new leaf", introduced.Trust, fromNew, true},
		{"introduced bundle, foreign leaf", introduced.Trust, fromForeign, false},
		{"rotation bundle, old leaf", rotated.Trust, fromOld, true},
		{"rotation bundle, new leaf", rotated.Trust, fromNew, true},
		{"rotation bundle, foreign leaf", rotated.Trust, fromForeign, false},
		{"retired bundle, old leaf", roundTrip(t, rotated.Retire()).Trust, fromOld, false},
		{"retired bundle, new leaf", roundTrip(t, rotated.Retire()).Trust, fromNew, true},
	} {
		if got := verifies(c.bundle, c.leaf); got != c.want {
			t.Errorf("%s: verifies = %v, want %v", c.name, got, c.want)
		}
	}

	if !rotated.Signer.Cert.Equal(next.Cert) || rotated.Next != nil || len(rotated.Trust.Certificates()) != 2 {
		t.Errorf("promoted: signer %q, %d trusted; want ca-2027 and 2 trusted", rotated.Signer.Cert.Subject.CommonName, len(rotated.Trust.Certificates()))
	}
	// And the bundle's PEM is what etcd's --trusted-ca-file takes.
	b, err := pki.ParseBundle(rotated.Trust.PEM())
	if err != nil || !b.Equal(rotated.Trust) {
		t.Errorf("bundle PEM read back: %v", err)
	}
}

func TestParseClusterCARefuses(t *testing.T) {
	ca := newCA(t, "ca", t0)
	good, err := ca.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	other := newCA(t, "other", t0)
	otherPEM, _ := other.MarshalPEM()
	leaf := issue(t, ca, memberRequest("i-1", time.Hour), t0)
	leafKey, _ := leaf.KeyPEM()
	certOnly := ca.Trust.PEM()
	keyOf := func(material []byte) []byte {
		i := bytes.Index(material, []byte("-----BEGIN PRIVATE KEY"))
		j := bytes.Index(material, []byte("-----END PRIVATE KEY-----\n"))
		return material[i : j+len("-----END PRIVATE KEY-----\n")]
	}
	for name, data := range map[string][]byte{
		"empty":                    nil,
		"garbage":                  []byte("not a CA at all"),
		"no key":                   certOnly,
		"another CA's key":         append(append([]byte(nil), certOnly...), keyOf(otherPEM)...),
		"a leaf, not a CA":         append(leaf.CertPEM(), leafKey...),
		"a truncated key":          good[:len(good)-40],
		"certificate corrupted":    bytes.Replace(good, []byte("MII"), []byte("XII"), 1),
		"a signer and a stray key": append(append([]byte(nil), good...), keyOf(otherPEM)...),
	} {
		_, err := pki.ParseClusterCA(data)
		if !errors.Is(err, pki.ErrBadCA) {
			t.Errorf("%s: err = %v, want ErrBadCA", name, err)
			continue
		}
		if strings.Contains(err.Error(), "PRIVATE KEY-----") || strings.Contains(err.Error(), string(keyOf(good)[40:70])) {
			t.Errorf("%s: the error quotes the key: %v", name, err)
		}
	}
	if _, err := pki.ParseBundle([]byte("nothing")); err == nil {
		t.Error("an empty bundle parsed")
	}
}

// roundTrip is ca through its stored form.
func roundTrip(t *testing.T, ca *pki.ClusterCA) *pki.ClusterCA {
	t.Helper()
	material, err := ca.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	back, err := pki.ParseClusterCA(material)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Signer.Cert.Equal(ca.Signer.Cert) || !back.Trust.Equal(ca.Trust) || (back.Next == nil) != (ca.Next == nil) {
		t.Fatalf("stored form read back differs: %v, want %v", back.LogValue(), ca.LogValue())
	}
	if ca.Next != nil && !back.Next.Cert.Equal(ca.Next.Cert) {
		t.Fatal("stored form read back has another next CA")
	}
	return back
}
