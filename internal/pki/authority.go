package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
)

const (
	// DefaultCALifetime is how long a cluster CA generated without a
	// lifetime of its own is valid. Members' certificates are short-lived;
	// the CA is replaced by a rotation (ClusterCA.Introduce), long before this.
	DefaultCALifetime = 10 * 365 * 24 * time.Hour
	// maxBackdate is how far before its issue a certificate becomes valid,
	// so that a peer whose clock lags accepts a fresh certificate.
	maxBackdate = time.Minute

	// memberUnit and userUnit are the organizational units of what an
	// Authority issues: readable in `openssl x509 -text`, never relied on
	// (files-mode certificates lack them); IsMemberCertificate goes by the
	// extended key usages.
	memberUnit = "etcd-appliance member"
	userUnit   = "etcd-appliance user"

	// MemberHostname is a DNS name every member certificate the cluster CA
	// issues carries and no user certificate may: etcd's
	// --peer-cert-allowed-hostname takes it to admit members only on the
	// peer port (--peer-client-cert-auth alone admits any certificate of
	// the CA). Under .invalid (RFC 6761), it never resolves.
	MemberHostname = "member.etcd-appliance.invalid"
)

// Kind is what a certificate is for.
type Kind string

const (
	// Member is an instance's certificate: server and client
	// authentication, since etcd peers use one certificate both ways and
	// the appliance both serves and asks its peers.
	Member Kind = "member"
	// User is a client certificate for a person or program; its common name
	// is the etcd user name under RBAC.
	User Kind = "user"
)

// Authority is a certificate authority that signs: its certificate and
// private key. It logs (slog.LogValuer) as its subject, serial and expiry,
// never its key.
type Authority struct {
	Cert *x509.Certificate
	key  crypto.Signer
}

// NewAuthority generates a self-signed CA named name, with a new ECDSA P-256
// key, valid from now (a little before, see maxBackdate) for lifetime.
// ECDSA P-256 rather than Ed25519: every TLS stack etcd clients use
// (Go, OpenSSL, grpc-java, browsers for the gateway) accepts it.
func NewAuthority(name string, now time.Time, lifetime time.Duration) (*Authority, error) {
	if name == "" {
		return nil, errors.New("a CA needs a name")
	}
	if lifetime <= 0 {
		return nil, fmt.Errorf("CA lifetime %v: must be positive", lifetime)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-backdate(lifetime)),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("signing the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the CA certificate: %w", err)
	}
	return &Authority{Cert: cert, key: key}, nil
}

// LogValue keeps the key out of logs.
func (a *Authority) LogValue() slog.Value {
	if a == nil {
		return slog.StringValue("<none>")
	}
	return certLogValue(a.Cert)
}

// LeafRequest is what a certificate says. The caller names the subject; the
// authority chooses the key, serial and validity start.
type LeafRequest struct {
	Kind Kind
	// CommonName is the etcd user name: MemberCommonName for members
	// (the appliances' user), the person's or program's for a user (etcd
	// takes a client certificate's CN as its user under --client-cert-auth
	// with auth enabled; see etcdauth.go).
	CommonName string
	// IPs and DNSNames are the member's addresses and names, as its peers
	// and clients dial it. A member needs at least one; a user none.
	IPs      []net.IP
	DNSNames []string
	// Lifetime is how long the certificate is valid from its issue: days
	// for members, minutes in tests.
	Lifetime time.Duration
}

// Issue signs a new certificate for req with a fresh ECDSA P-256 key, valid
// from now (a little before, see backdate) for req.Lifetime. A certificate
// that would outlive the authority is refused: rotate the CA first.
func (a *Authority) Issue(req LeafRequest, now time.Time) (*KeyPair, error) {
	return a.issue(req, nil, now)
}

// issue signs a certificate for req's subject and key, a new key when key
// is nil.
func (a *Authority) issue(req LeafRequest, key crypto.Signer, now time.Time) (*KeyPair, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	notAfter := now.Add(req.Lifetime)
	if notAfter.After(a.Cert.NotAfter) {
		return nil, fmt.Errorf("a certificate for %q until %s would outlive its CA %q (until %s): rotate the CA",
			req.CommonName, notAfter.UTC().Format(time.RFC3339), a.Cert.Subject.CommonName, a.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generating a key for %q: %w", req.CommonName, err)
		}
		key = k
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.CommonName},
		NotBefore:             now.Add(-backdate(req.Lifetime)),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IPAddresses:           req.IPs,
		DNSNames:              slices.Clone(req.DNSNames),
	}
	switch req.Kind {
	case Member:
		if !slices.Contains(tmpl.DNSNames, MemberHostname) {
			tmpl.DNSNames = append(tmpl.DNSNames, MemberHostname)
		}
		tmpl.Subject.OrganizationalUnit = []string{memberUnit}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case User:
		tmpl.Subject.OrganizationalUnit = []string{userUnit}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, key.Public(), a.key)
	if err != nil {
		return nil, fmt.Errorf("signing a certificate for %q: %w", req.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the certificate for %q: %w", req.CommonName, err)
	}
	return &KeyPair{Cert: cert, key: key}, nil
}

func (req LeafRequest) validate() error {
	if req.CommonName == "" {
		return errors.New("a certificate needs a common name")
	}
	if req.Lifetime <= 0 {
		return fmt.Errorf("certificate lifetime %v for %q: must be positive", req.Lifetime, req.CommonName)
	}
	switch req.Kind {
	case Member:
		if len(req.IPs) == 0 && len(req.DNSNames) == 0 {
			return fmt.Errorf("a member certificate for %q needs its addresses or DNS names", req.CommonName)
		}
	case User:
		if slices.Contains(req.DNSNames, MemberHostname) {
			return fmt.Errorf("a user certificate for %q must not carry %s, the member certificates' name", req.CommonName, MemberHostname)
		}
	default:
		return fmt.Errorf("certificate kind %q for %q: want %q or %q", req.Kind, req.CommonName, Member, User)
	}
	return nil
}

// backdate is how long before its issue a certificate of lifetime becomes
// valid: a minute, at most a quarter of the lifetime so that renewal at a
// fraction of the validity stays after the issue (see renewAt).
func backdate(lifetime time.Duration) time.Duration {
	return min(maxBackdate, lifetime/4)
}

// newSerial is a random positive 127-bit serial number (RFC 5280: at most
// 20 octets, unpredictable).
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("drawing a serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// KeyPair is a certificate with its private key. It logs (slog.LogValuer)
// as its subject, serial and expiry, never its key.
type KeyPair struct {
	Cert *x509.Certificate
	key  crypto.Signer
}

// LogValue keeps the key out of logs.
func (k *KeyPair) LogValue() slog.Value {
	if k == nil {
		return slog.StringValue("<none>")
	}
	return certLogValue(k.Cert)
}

// CertPEM is the certificate, PEM-encoded.
func (k *KeyPair) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.Cert.Raw})
}

// KeyPEM is the private key, PEM-encoded PKCS #8 ("PRIVATE KEY"), which
// etcd, Go, OpenSSL and etcdctl all read. It is secret: write it only with
// WriteSecretFile.
func (k *KeyPair) KeyPEM() ([]byte, error) {
	return marshalKey(k.key)
}

// TLSCertificate is the pair as crypto/tls uses it.
func (k *KeyPair) TLSCertificate() *tls.Certificate {
	return &tls.Certificate{Certificate: [][]byte{k.Cert.Raw}, PrivateKey: k.key, Leaf: k.Cert}
}

// ParseKeyPair reads a certificate and its key from PEM (the two may be one
// text: a certificate followed by its key, as WriteKeyPair writes a combined
// file). Further certificates after the first are ignored.
func ParseKeyPair(certPEM, keyPEM []byte) (*KeyPair, error) {
	certs, err := parseCertificates(certPEM)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE block")
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(certs[0].PublicKey, key.Public()) {
		return nil, fmt.Errorf("the private key does not belong to certificate %q (serial %x)", certs[0].Subject.CommonName, certs[0].SerialNumber)
	}
	return &KeyPair{Cert: certs[0], key: key}, nil
}

func marshalKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding a private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseKey reads the first private key block of data: PKCS #8, or the
// SEC 1 ("EC PRIVATE KEY") and PKCS #1 ("RSA PRIVATE KEY") forms operators'
// tools write. The error never quotes the data.
func parseKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PRIVATE KEY block")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing the %s block: %w", block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("a %T private key cannot sign", key)
		}
		return signer, nil
	}
}

// parseKeys reads every private key block of data.
func parseKeys(data []byte) ([]crypto.Signer, error) {
	var keys []crypto.Signer
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return keys, nil
		}
		if block.Type != "PRIVATE KEY" && !strings.HasSuffix(block.Type, " PRIVATE KEY") {
			continue
		}
		key, err := parseKey(pem.EncodeToMemory(block))
		if err != nil {
			return nil, err
		}
		keys = append(keys, key)
	}
}

// parseCertificates reads every CERTIFICATE block of data, skipping others.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return certs, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

func certLogValue(c *x509.Certificate) slog.Value {
	if c == nil {
		return slog.StringValue("<none>")
	}
	return slog.GroupValue(
		slog.String("subject", c.Subject.CommonName),
		slog.String("serial", fmt.Sprintf("%x", c.SerialNumber)),
		slog.Time("not_after", c.NotAfter),
	)
}
