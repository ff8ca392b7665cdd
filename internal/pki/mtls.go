package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
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
func ServerTLS(c Credentials) *tls.Config { return serverTLS(c, tls.RequireAndVerifyClientCert) }

// serverTLS is a server's config that shows c's certificate and verifies
// client certificates under c's bundle as auth says, both taken afresh at
// every handshake.
func serverTLS(c Credentials, auth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return &tls.Config{
				MinVersion:     tls.VersionTLS12,
				GetCertificate: c.GetCertificate,
				ClientAuth:     auth,
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

// ErrUntrustedServer says that a server's certificate is not a member
// certificate of the cluster CA for the address dialled: its answer is not
// the cluster's.
var ErrUntrustedServer = errors.New("not a cluster member's certificate")

// verifyServer is the verification ClientTLS does at each handshake.
func verifyServer(trust *Bundle, certs []*x509.Certificate, host string, now time.Time) error {
	if len(certs) == 0 {
		return fmt.Errorf("%w: the server showed no certificate", ErrUntrustedServer)
	}
	chains, err := trust.Verify(certs[0], certs[1:], x509.ExtKeyUsageServerAuth, now)
	if err != nil {
		return fmt.Errorf("%w: the server's certificate: %w", ErrUntrustedServer, err)
	}
	if err := certs[0].VerifyHostname(host); err != nil {
		return fmt.Errorf("%w: the server's certificate: %w", ErrUntrustedServer, err)
	}
	if !IsMemberCertificate(chains, trust) {
		return fmt.Errorf("%w: the server's certificate %q is a user's", ErrUntrustedServer, certs[0].Subject.CommonName)
	}
	return nil
}

// APIServerTLS is the appliance API's server side: as ServerTLS, except
// that a client certificate is verified when one is shown and not required,
// so that Prometheus and load balancers reach /metrics, /healthz and
// /readyz with plain TLS. The handler then decides per path, from the
// request's verified chains (IsMemberCertificate, IsClusterCertificate).
func APIServerTLS(c Credentials) *tls.Config { return serverTLS(c, tls.VerifyClientCertIfGiven) }

// IsClusterCertificate says whether a peer's verified chains end at a CA of
// trust: a member's or a user's certificate of the cluster.
func IsClusterCertificate(chains [][]*x509.Certificate, trust *Bundle) bool {
	for _, chain := range chains {
		if len(chain) > 0 && trust != nil && trust.contains(chain[len(chain)-1]) {
			return true
		}
	}
	return false
}

// MemberTransport is an HTTP transport for the appliance's calls to its
// peers' APIs (https://): every connection shows c's current certificate
// and accepts only a member certificate of c's bundle that names the host
// dialled (ClientTLS); any other server fails the dial with
// ErrUntrustedServer, a plaintext one too.
func MemberTransport(c Credentials) *http.Transport {
	return &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: ClientTLS(c, host)}
			conn, err := d.DialContext(ctx, network, addr)
			var record tls.RecordHeaderError
			if errors.As(err, &record) {
				return nil, fmt.Errorf("%w: the server at %s does not speak TLS: %w", ErrUntrustedServer, addr, err)
			}
			return conn, err
		},
		ForceAttemptHTTP2:   false,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}
}

// EtcdClientTLS is the TLS config of a client of the cluster's etcd
// (clientv3, which dials several endpoints through one config and names
// each as the server name): it shows c's current certificate and accepts a
// server certificate that verifies under c's bundle as of this call, names
// the endpoint dialled and is a member's. Make one per client: the bundle
// is fixed for the config's life.
func EtcdClientTLS(c Credentials) *tls.Config {
	trust := c.Trust()
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		RootCAs:              trust.Pool(),
		GetClientCertificate: c.GetClientCertificate,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if !IsMemberCertificate(cs.VerifiedChains, trust) {
				return ErrUntrustedServer
			}
			return nil
		},
	}
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
