package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// Credentials are what one end of a mutual-TLS connection shows and trusts,
// as of each handshake: a Renewer (--tls auto) or a FileSource (--tls
// files).
type Credentials interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	Trust() *Bundle
}

// ServerTLS is the appliance API's server side: it shows c's current
// certificate and requires a client certificate that verifies under c's
// current bundle, both taken afresh at every handshake, so that a renewal
// or a CA rotation needs no restart. Which clients are members is then
// IsMemberCertificate's to say.
func ServerTLS(c Credentials) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return &tls.Config{
				MinVersion:     tls.VersionTLS12,
				GetCertificate: c.GetCertificate,
				ClientAuth:     tls.RequireAndVerifyClientCert,
				ClientCAs:      c.Trust().Pool(),
			}, nil
		},
	}
}

// ClientTLS is the client side towards the member reached at host (its
// address or DNS name, as dialled): it shows c's current certificate and
// accepts only a server certificate that verifies under c's current bundle,
// names host and is a member's (IsMemberCertificate).
//
// The bundle is taken at every handshake: crypto/tls fixes RootCAs for a
// config, so the chain is verified here, in VerifyConnection, and the
// library's own verification is off (InsecureSkipVerify: it skips nothing
// that VerifyConnection does not do). Make one config per host; an
// http.Transport for several hosts dials with DialTLSContext.
func ClientTLS(c Credentials, host string) *tls.Config {
	serverName := host
	if net.ParseIP(host) != nil {
		serverName = "" // no SNI for addresses
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		ServerName:           serverName,
		GetClientCertificate: c.GetClientCertificate,
		InsecureSkipVerify:   true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(c.Trust(), cs.PeerCertificates, host, time.Now())
		},
	}
}

// verifyServer is the verification ClientTLS does at each handshake.
func verifyServer(trust *Bundle, certs []*x509.Certificate, host string, now time.Time) error {
	if len(certs) == 0 {
		return errors.New("the server showed no certificate")
	}
	chains, err := trust.Verify(certs[0], certs[1:], x509.ExtKeyUsageServerAuth, now)
	if err != nil {
		return fmt.Errorf("the server's certificate: %w", err)
	}
	if err := certs[0].VerifyHostname(host); err != nil {
		return fmt.Errorf("the server's certificate: %w", err)
	}
	if !IsMemberCertificate(chains, trust) {
		return fmt.Errorf("the server's certificate %q is not a cluster member's", certs[0].Subject.CommonName)
	}
	return nil
}

// IsMemberCertificate says whether a peer's verified chains (as crypto/tls
// gives them, tls.ConnectionState.VerifiedChains) prove a cluster member:
// a chain ending at a CA of trust, whose leaf may serve and be a client, as
// every member certificate (Issue's Member kind, or an operator's etcd peer
// certificate) does and a user's (client only) does not. A /v1/peer answer
// or request that fails this is ignored.
func IsMemberCertificate(chains [][]*x509.Certificate, trust *Bundle) bool {
	for _, chain := range chains {
		if len(chain) == 0 || trust == nil || !trust.contains(chain[len(chain)-1]) {
			continue
		}
		leaf := chain[0]
		if hasUsage(leaf, x509.ExtKeyUsageServerAuth) && hasUsage(leaf, x509.ExtKeyUsageClientAuth) {
			return true
		}
	}
	return false
}

// hasUsage: a certificate without extended key usages may be used for
// anything (RFC 5280 §4.2.1.12, and Go's verifier).
func hasUsage(c *x509.Certificate, u x509.ExtKeyUsage) bool {
	return len(c.ExtKeyUsage) == 0 || slices.Contains(c.ExtKeyUsage, u) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}
