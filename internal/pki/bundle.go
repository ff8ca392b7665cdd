package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// Bundle is the set of CAs a member trusts: its own signer and, during a
// rotation, the one it replaces, so that certificates of both verify until
// every member has renewed under the new one. A Bundle is never modified
// once made.
type Bundle struct {
	certs []*x509.Certificate
	pool  *x509.CertPool
}

// NewBundle trusts certs, the duplicates (same DER) once.
func NewBundle(certs ...*x509.Certificate) *Bundle {
	b := &Bundle{pool: x509.NewCertPool()}
	for _, c := range certs {
		if b.contains(c) {
			continue
		}
		b.certs = append(b.certs, c)
		b.pool.AddCert(c)
	}
	return b
}

// ParseBundle reads every CERTIFICATE of a PEM text (an operator's CA file,
// or Bundle.PEM's); other blocks are ignored. A text without a certificate
// is an error: an empty bundle trusts nobody.
func ParseBundle(data []byte) (*Bundle, error) {
	certs, err := parseCertificates(data)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE block: a CA bundle must hold at least one CA")
	}
	return NewBundle(certs...), nil
}

// Certificates are the trusted CAs, in the order given.
func (b *Bundle) Certificates() []*x509.Certificate {
	return append([]*x509.Certificate(nil), b.certs...)
}

// Pool is the bundle as crypto/tls takes it (RootCAs, ClientCAs).
func (b *Bundle) Pool() *x509.CertPool {
	return b.pool
}

// PEM is the bundle as etcd's --trusted-ca-file and --peer-trusted-ca-file
// read it: the certificates one after another.
func (b *Bundle) PEM() []byte {
	var buf bytes.Buffer
	for _, c := range b.certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// Verify checks that leaf chains, through intermediates, to a CA of the
// bundle at now and may be used for usage, and returns its chains.
func (b *Bundle) Verify(leaf *x509.Certificate, intermediates []*x509.Certificate, usage x509.ExtKeyUsage, now time.Time) ([][]*x509.Certificate, error) {
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	return leaf.Verify(x509.VerifyOptions{
		Roots:         b.pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
}

// Equal says whether b and o trust the same CAs, in any order.
func (b *Bundle) Equal(o *Bundle) bool {
	if b == nil || o == nil {
		return b == o
	}
	if len(b.certs) != len(o.certs) {
		return false
	}
	for _, c := range o.certs {
		if !b.contains(c) {
			return false
		}
	}
	return true
}

func (b *Bundle) contains(c *x509.Certificate) bool {
	for _, have := range b.certs {
		if have.Equal(c) {
			return true
		}
	}
	return false
}

// ClusterCA is the cluster's certificate authority as it is stored (Store):
// the authority that signs members' and users' certificates, and the
// bundle every member trusts.
//
// A rotation has three steps, each rolled out to every member (SetCA on
// their Renewer, a restart of etcd for the bundle, see the package doc)
// before the next:
//  1. Introduce(next): next is trusted, the old signer still signs. Every
//     member learns to trust next before any certificate of it exists.
//  2. Promote: next signs; members renew under it, old certificates still
//     verify.
//  3. Retire: once no certificate of the old CA is in use (a certificate
//     lifetime after the last member renewed), only next is trusted.
//
// Skipping step 1 breaks the cluster for a while: a member that renewed
// under next is refused by every member that does not trust next yet.
type ClusterCA struct {
	Signer *Authority
	// Next is the authority introduced for a rotation and not signing yet;
	// nil outside a rotation's first step.
	Next  *Authority
	Trust *Bundle
}

// LogValue is the signer, the next one and the number of trusted CAs,
// never a key.
func (c *ClusterCA) LogValue() slog.Value {
	if c == nil {
		return slog.StringValue("<none>")
	}
	attrs := []slog.Attr{slog.Any("signer", c.Signer), slog.Int("trusted", len(c.Trust.certs))}
	if c.Next != nil {
		attrs = append(attrs, slog.Any("next", c.Next))
	}
	return slog.GroupValue(attrs...)
}

// NewClusterCA is a new cluster CA of one authority named name.
func NewClusterCA(name string, now time.Time, lifetime time.Duration) (*ClusterCA, error) {
	a, err := NewAuthority(name, now, lifetime)
	if err != nil {
		return nil, err
	}
	return &ClusterCA{Signer: a, Trust: NewBundle(a.Cert)}, nil
}

// Issue signs a certificate with the current signer.
func (c *ClusterCA) Issue(req LeafRequest, now time.Time) (*KeyPair, error) {
	return c.Signer.Issue(req, now)
}

// Introduce is the first step of a rotation: c with next trusted too, the
// signer unchanged.
func (c *ClusterCA) Introduce(next *Authority) *ClusterCA {
	return &ClusterCA{Signer: c.Signer, Next: next, Trust: NewBundle(append(c.Trust.Certificates(), next.Cert)...)}
}

// Promote is the second step: the introduced authority signs, every CA c
// trusts stays trusted. Without an introduced authority it is an error.
func (c *ClusterCA) Promote() (*ClusterCA, error) {
	if c.Next == nil {
		return nil, errors.New("no CA was introduced to promote: Introduce one and roll it out first")
	}
	return &ClusterCA{Signer: c.Next, Trust: NewBundle(append([]*x509.Certificate{c.Next.Cert}, c.Trust.certs...)...)}, nil
}

// Retire is the last step: c trusting only its signer.
func (c *ClusterCA) Retire() *ClusterCA {
	return &ClusterCA{Signer: c.Signer, Trust: NewBundle(c.Signer.Cert)}
}

// MarshalPEM is the stored form of c, as a store keeps it: the signer's
// certificate and private key (PKCS #8), the introduced authority's
// certificate and key when there is one, then the other trusted CAs'
// certificates. It holds CA keys: keep it in a Store or a 0600 file.
func (c *ClusterCA) MarshalPEM() ([]byte, error) {
	var buf bytes.Buffer
	written := []*x509.Certificate{}
	for _, a := range []*Authority{c.Signer, c.Next} {
		if a == nil {
			continue
		}
		key, err := marshalKey(a.key)
		if err != nil {
			return nil, err
		}
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: a.Cert.Raw})
		buf.Write(key)
		written = append(written, a.Cert)
	}
	for _, t := range c.Trust.certs {
		if NewBundle(written...).contains(t) {
			continue
		}
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: t.Raw})
	}
	return buf.Bytes(), nil
}

// ErrBadCA says that stored CA material does not parse or is not a CA; the
// error it wraps tells why, without quoting the material.
var ErrBadCA = errors.New("unusable cluster CA")

// ParseClusterCA reads MarshalPEM's form: the first certificate is the
// signer and its key must be there; another certificate whose key is there
// is the introduced one; every certificate must be a CA, and every key
// must belong to one.
func ParseClusterCA(data []byte) (*ClusterCA, error) {
	certs, err := parseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCA, err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no CERTIFICATE block", ErrBadCA)
	}
	for _, c := range certs {
		if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
			return nil, fmt.Errorf("%w: certificate %q (serial %x) is not a CA", ErrBadCA, c.Subject.CommonName, c.SerialNumber)
		}
	}
	keys, err := parseKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCA, err)
	}
	ca := &ClusterCA{Trust: NewBundle(certs...)}
	for _, key := range keys {
		i := slices.IndexFunc(certs, func(c *x509.Certificate) bool { return publicKeysEqual(c.PublicKey, key.Public()) })
		switch {
		case i < 0:
			return nil, fmt.Errorf("%w: a private key belongs to none of the CA certificates", ErrBadCA)
		case i == 0:
			ca.Signer = &Authority{Cert: certs[0], key: key}
		case ca.Next != nil:
			return nil, fmt.Errorf("%w: keys of more than two CAs", ErrBadCA)
		default:
			ca.Next = &Authority{Cert: certs[i], key: key}
		}
	}
	if ca.Signer == nil {
		return nil, fmt.Errorf("%w: no private key of the signer %q", ErrBadCA, certs[0].Subject.CommonName)
	}
	return ca, nil
}

// Fingerprint is the SHA-256 of a certificate's DER, in hex: how status
// reports and the `ca` command name a CA.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// Fingerprints are those of the bundle's CAs, in its order.
func (b *Bundle) Fingerprints() []string {
	out := make([]string, 0, len(b.certs))
	for _, c := range b.certs {
		out = append(out, Fingerprint(c))
	}
	return out
}
