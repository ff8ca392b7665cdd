package appliance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/config"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// memberTLS is the instance's TLS with --tls on (SPEC §4.8): the
// credentials its API, its calls to its peers' APIs and its etcd clients
// show and trust, and the files its etcd serves and verifies with.
type memberTLS struct {
	creds pki.Credentials
	files etcd.TLSFiles
	// keep keeps the credentials fresh until ctx ends: the Renewer's
	// renewals (--tls auto) or the FileSource's reloads (--tls files).
	keep func(ctx context.Context) error
	// peers dials the other appliances' APIs, accepting member
	// certificates of the cluster CA only.
	peers *http.Transport
	// current is the certificate in use.
	current func() *pki.KeyPair
	// rotation rolls a rotated cluster CA out (--tls auto); nil otherwise.
	rotation *caRotation
}

// tlsDir is where --tls auto writes the member's certificate, key and CA
// bundle for etcd.
func (d dataDir) tlsDir() string { return filepath.Join(d.root, "tls") }

// caGenerateLifetime is the lifetime of a cluster CA the first instance
// creates: pki's default, years; members' certificates are short-lived.
const caGenerateLifetime = pki.DefaultCALifetime

// setUpTLS makes the instance's TLS as --tls says, once it knows who it
// is: nil with --tls off. With --tls auto it reads the cluster CA from
// store — created by the first instance to get there — asking again while
// the store fails (AWS may throttle at boot), issues itself a member
// certificate for every address and name it is reached by, and writes it
// under the data dir for etcd.
//
// A one-shot command (backup, restore) passes oneShot: it only reads the
// CA, and its certificate lives in memory, leaving the daemon's files alone.
func (n *node) setUpTLS(ctx context.Context, store pki.Store, dns *cluster.DNSSpec, oneShot bool) (*memberTLS, error) {
	log := n.log.With("component", "tls")
	switch n.cfg.TLS {
	case config.TLSFiles:
		files := pki.KeyPairFiles{Cert: n.cfg.TLSCertFile, Key: n.cfg.TLSKeyFile, CA: n.cfg.TLSTrustedCAFile}
		src, err := pki.NewFileSource(pki.FileSourceConfig{Files: files, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("--tls files: %w", err)
		}
		log.Info("TLS on with the operator's files", "certificate", src.Current(), "cert_file", files.Cert)
		return &memberTLS{creds: src, keep: src.Run, peers: pki.MemberTransport(src), current: src.Current,
			// The operator's certificates need not carry pki.MemberHostname:
			// the peer port admits every certificate of their CA.
			files: etcd.TLSFiles{CertFile: files.Cert, KeyFile: files.Key, TrustedCAFile: files.CA}}, nil
	case config.TLSAuto:
	default:
		return nil, nil
	}
	if store == nil {
		return nil, errors.New("--tls auto: no CA store given")
	}
	ca, err := n.clusterCA(ctx, store, log, !oneShot)
	if err != nil {
		return nil, err
	}
	if oneShot {
		r, err := pki.NewRenewer(pki.RenewerConfig{CA: ca, Request: n.memberRequest(dns), Logger: log})
		if err != nil {
			return nil, fmt.Errorf("--tls auto: issuing a certificate: %w", err)
		}
		return &memberTLS{creds: r, keep: r.Run, peers: pki.MemberTransport(r), current: r.Current}, nil
	}
	dir := n.data.tlsDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	// MkdirAll keeps the mode of a directory that exists.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restricting %s: %w", dir, err)
	}
	// One file holds the certificate and its key, and the key stays while
	// the appliance lives: etcd reads the certificate path and then the key
	// path at every handshake, and a renewal with a new key could pair the
	// old certificate with the new key (see package pki).
	member := filepath.Join(dir, "member.pem")
	files := pki.KeyPairFiles{Cert: member, Key: member, CA: filepath.Join(dir, "ca.pem")}
	r, err := pki.NewRenewer(pki.RenewerConfig{
		CA: ca, Request: n.memberRequest(dns), Files: files, KeepKey: true, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("--tls auto: issuing this member's certificate: %w", err)
	}
	cert := r.Current().Cert
	log.Info("TLS on with the cluster CA", "certificate", r.Current(), "ips", cert.IPAddresses, "dns_names", cert.DNSNames,
		"renew_at", pki.RenewAt(cert.NotBefore, cert.NotAfter, pki.DefaultRenewFraction).UTC())
	rot := newCARotation(n, store, r, ca, files.CA)
	return &memberTLS{creds: r, keep: rot.keepWith(r.Run), peers: pki.MemberTransport(r), current: r.Current, rotation: rot,
		files: etcd.TLSFiles{CertFile: files.Cert, KeyFile: files.Key, TrustedCAFile: files.CA,
			PeerAllowedHostname: pki.MemberHostname}}, nil
}

// clusterCA is the cluster CA of store, created by this instance when it is
// the first and may create; asked again every startup interval while the
// store fails.
func (n *node) clusterCA(ctx context.Context, store pki.Store, log *slog.Logger, create bool) (*pki.ClusterCA, error) {
	var generate func() (*pki.ClusterCA, error)
	if create {
		generate = func() (*pki.ClusterCA, error) {
			return pki.NewClusterCA("etcd-appliance CA "+n.clusterName(), n.now(), caGenerateLifetime)
		}
	}
	for {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ca, created, err := pki.EnsureCA(sctx, store, generate, log)
		cancel()
		switch {
		case err == nil:
			log.Info("cluster CA ready", "ca", ca, "created_here", created)
			return ca, nil
		case errors.Is(err, pki.ErrBadCA), errors.Is(err, pki.ErrNoCA) && !create:
			// A corrupt or foreign CA does not mend by waiting, nor does
			// an empty store for a command that may not create one.
			return nil, fmt.Errorf("--tls auto: %w", err)
		}
		log.Warn("the cluster CA is not readable yet; asking again", "err", err)
		if !sleep(ctx, max(n.cfg.StartupInterval, time.Second)) {
			return nil, ctx.Err()
		}
	}
}

// memberRequest is the certificate of this member: every address and name
// it is reached by — its bind and advertised addresses (the public name in
// multi-region mode), loopback, and its own and the cluster's DNS names
// when records are published. Its common name is every member's, the etcd
// user of the appliances under --etcd-auth (see etcdauth.go).
func (n *node) memberRequest(dns *cluster.DNSSpec) pki.LeafRequest {
	req := pki.LeafRequest{Kind: pki.Member, CommonName: pki.MemberCommonName, Lifetime: n.cfg.TLSCertLifetime}
	addName := func(h string) {
		if h == "" {
			return
		}
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(req.IPs, ip.Equal) {
				req.IPs = append(req.IPs, ip)
			}
			return
		}
		if h = strings.ToLower(strings.TrimSuffix(h, ".")); !slices.Contains(req.DNSNames, h) {
			req.DNSNames = append(req.DNSNames, h)
		}
	}
	for _, h := range []string{n.address, n.bindAddress(), n.self.Address, n.self.BindAddress, "127.0.0.1", "localhost"} {
		addName(h)
	}
	if dns != nil {
		for _, h := range dns.CertNames(n.self.ID) {
			addName(h)
		}
	}
	return req
}

// exportExpiry exports when the certificate in use was issued and when it
// expires, for an alert on a renewal that keeps failing (or operator files
// left to expire) that holds for any --tls-cert-lifetime.
func (t *memberTLS) exportExpiry(reg prometheus.Registerer) {
	for _, g := range []struct {
		name, help string
		at         func(*x509.Certificate) time.Time
	}{
		{"etcd_appliance_tls_certificate_expiry_timestamp_seconds",
			"When the certificate this member serves and shows expires (--tls auto renews it after two thirds of its lifetime).",
			func(c *x509.Certificate) time.Time { return c.NotAfter }},
		{"etcd_appliance_tls_certificate_issued_timestamp_seconds",
			"When the certificate this member serves and shows became valid (its NotBefore).",
			func(c *x509.Certificate) time.Time { return c.NotBefore }},
	} {
		err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.name, Help: g.help},
			func() float64 { return float64(g.at(t.current().Cert).Unix()) }))
		var already prometheus.AlreadyRegisteredError
		if err != nil && !errors.As(err, &already) {
			panic(err)
		}
	}
}

// scheme is the scheme of etcd's client and peer URLs and of the
// appliance API: https with --tls on.
func (n *node) scheme() string {
	if n.tls != nil {
		return "https"
	}
	return "http"
}

// apiURL is the URL of path on the appliance API at host.
func (n *node) apiURL(host, path string) string {
	return n.scheme() + "://" + apiAddress(host, n.ports.API) + path
}

// peerTransport is the transport of calls to other appliances' APIs.
func (n *node) peerTransport() http.RoundTripper {
	if n.tls != nil {
		return n.tls.peers
	}
	return http.DefaultTransport
}

// etcdTLS is the client side of etcd's mutual TLS, nil with --tls off.
func (n *node) etcdTLS() *tls.Config {
	if n.tls == nil {
		return nil
	}
	return pki.EtcdClientTLS(n.tls.creds)
}

// etcdTLSFiles are the files etcd serves with, nil with --tls off.
func (n *node) etcdTLSFiles() *etcd.TLSFiles {
	if n.tls == nil {
		return nil
	}
	f := n.tls.files
	return &f
}

// errSchemeChange: the data dir's cluster speaks another scheme than --tls
// says, and this instance cannot move it.
var errSchemeChange = errors.New("this instance cannot serve the data's cluster in the scheme it speaks")

// checkScheme decides how etcd serves peers on the local data, against
// the scheme of the data's cluster: the member's own peer URL as last
// listed (older markers: the scheme of the members' client URLs), and an
// accepted bootstrap offer's URLs.
//
// A peer URL of another scheme than --tls and --tls-plaintext-peers want is
// a move (tlsmove.go): to TLS (http data, --tls on) or back (https data,
// --tls on with --tls-plaintext-peers). etcd serves peers in the data's
// scheme, with the certificates to dial the members of the other, and
// clients both ways, until the member switches in its turn. Refused: https
// data with --tls off, which has no certificate to reach the members that
// serve TLS (the way back goes through --tls-plaintext-peers), and an offer
// of the other scheme, whose cluster has not formed.
func (n *node) checkScheme(ld cluster.LocalData) error {
	want := n.wantPeerScheme()
	n.setPeerHTTP(want == "http")
	m, ok, err := n.data.readMarker()
	if err == nil && ok && ld.Exists {
		u := m.PeerURL
		if u == "" && len(m.Endpoints) > 0 {
			u = m.Endpoints[0]
		}
		if u == "" && ld.Offer != nil {
			// Data of an offer, recorded by an older release: the
			// member's URL in it.
			for _, p := range ld.Offer.Members {
				if p.Name == n.self.ID {
					u = p.PeerURL
				}
			}
		}
		if scheme, _, found := strings.Cut(u, "://"); found && scheme != want {
			if n.tls == nil {
				return fmt.Errorf("the data dir %s holds a member of a cluster reached at %s, but --tls is %s: %w; "+
					"run with the --tls the cluster was created with; to move it back to plaintext, first restart every instance "+
					"with --tls-plaintext-peers, keeping --tls and its CA (see docs/operations.md, \"Moving between plaintext and TLS\")",
					n.cfg.DataDir, u, n.cfg.TLS, errSchemeChange)
			}
			n.setPeerHTTP(scheme == "http")
			n.log.Info("moving this member's peers to "+want+": etcd serves peers in "+scheme+", and clients both ways, "+
				"until its turn to switch its peer URL comes", "peer_url", u)
		}
	}
	if ld.Offer != nil && !ld.Exists {
		// An offer whose cluster etcd has not created here yet: started
		// in another scheme, it would not form.
		for _, p := range ld.Offer.Members {
			if !strings.HasPrefix(p.PeerURL, want+"://") {
				return fmt.Errorf("the data dir %s holds a bootstrap offer of a cluster reached at %s, but --tls is %s: %w; "+
					"run with the --tls the cluster was created with, or start this instance on an empty data dir",
					n.cfg.DataDir, p.PeerURL, n.cfg.TLS, errSchemeChange)
			}
		}
	}
	return nil
}
