package etcd

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// Values of ServerSpec.InitialClusterState, as etcd spells them.
const (
	StateNew      = cluster.StateNew
	StateExisting = cluster.StateExisting
)

// NamedPeer is one entry of --initial-cluster: the cluster package's, which
// a bootstrap offer lists, so that an offer's members are etcd's initial
// cluster as they are.
type NamedPeer = cluster.NamedPeer

// ServerSpec is everything the appliance decides about one run of etcd.
// Args turns it into etcd's command line.
type ServerSpec struct {
	Name    string // the member name; the instance id (SPEC §2)
	DataDir string
	// Address is the instance's own IP. etcd both listens and advertises on
	// it, so it is never 0.0.0.0: an unspecified address advertised to peers
	// is an address nobody can reach.
	Address string
	// ListenAddress, when set, is the IP etcd binds instead of Address,
	// which it then only advertises and which may be a host name. That is
	// multi-region mode: peers reach a member by its public DNS name, while
	// the host itself has only its private IP, to which EC2 NATs the public
	// address.
	ListenAddress string

	ClientPort, PeerPort, MetricsPort int

	InitialCluster      []NamedPeer // in the order given; must include Name
	InitialClusterState string      // StateNew or StateExisting
	ClusterToken        string
	ForceNewCluster     bool

	QuotaBackendBytes int64 // 0 leaves etcd's default
	// HeartbeatMS and ElectionMS are etcd's raft timing in milliseconds;
	// 0 leaves etcd's defaults (100 ms, 1 s).
	HeartbeatMS, ElectionMS int
	AutoCompactionRetention string // "" leaves auto-compaction off; otherwise periodic, e.g. "1h"

	// TLS, when set, serves the client and peer ports over mutual TLS
	// (https:// URLs); nil serves them in plaintext. The metrics port stays
	// plain http for Prometheus either way.
	TLS *TLSFiles
	// PeerPlaintext keeps the peer URLs plain http although TLS is set: a
	// member whose peer URL in the membership is still http, while the
	// cluster moves to TLS. etcd still dials the peers that serve https
	// with TLS's certificate.
	PeerPlaintext bool
	// ClientPlaintext serves plaintext clients on the client port too, beside
	// TLS ones (etcd tells them apart by the first bytes), and advertises
	// the http URL first: for the appliances and clients of a cluster that
	// moves to TLS.
	ClientPlaintext bool

	// ExtraFlags are the user's own etcd flags, passed through verbatim.
	// They come last so that, etcd's flag parser keeping the last value,
	// they override ours.
	ExtraFlags []string
}

// TLSFiles are the certificate files etcd serves and verifies with, on the
// client port and the peer port alike: one member certificate (server and
// client authentication) for both.
type TLSFiles struct {
	// CertFile and KeyFile may name one file holding the certificate and
	// then its key (see pki.KeyPairFiles): etcd reads both at every
	// handshake, so a renewal is served without a restart.
	CertFile, KeyFile string
	// TrustedCAFile is the CA bundle clients and peers are verified
	// against; etcd reads it only at start.
	TrustedCAFile string
	// PeerAllowedHostname, when set, admits on the peer port only
	// certificates that name it (--peer-cert-allowed-hostname): the members'
	// (pki.MemberHostname), not the users' of the same CA.
	PeerAllowedHostname string
}

// Scheme is the scheme of the client and peer URLs: https with TLS.
func (s ServerSpec) Scheme() string {
	if s.TLS != nil {
		return "https"
	}
	return "http"
}

// PeerScheme is the scheme of the peer URLs: https with TLS, unless
// PeerPlaintext.
func (s ServerSpec) PeerScheme() string {
	if s.PeerPlaintext {
		return "http"
	}
	return s.Scheme()
}

// ClientURL is the URL etcd advertises for clients: with ClientPlaintext, the
// https one of the two.
func (s ServerSpec) ClientURL() string { return hostURL(s.Scheme(), s.Address, s.ClientPort) }

// clientURLs are the client URLs for host: http first with ClientPlaintext.
func (s ServerSpec) clientURLs(host string) string {
	u := hostURL(s.Scheme(), host, s.ClientPort)
	if s.ClientPlaintext && s.TLS != nil {
		return hostURL("http", host, s.ClientPort) + "," + u
	}
	return u
}

// PeerURL is the URL etcd advertises for peers; it is the member's entry in
// --initial-cluster.
func (s ServerSpec) PeerURL() string { return hostURL(s.PeerScheme(), s.Address, s.PeerPort) }

// MetricsURL is the URL etcd serves /metrics and /health on: plain http,
// TLS or not, so that Prometheus scrapes it without a client certificate.
func (s ServerSpec) MetricsURL() string { return hostURL("http", s.ListenHost(), s.MetricsPort) }

// ListenHost is the IP etcd binds: ListenAddress, or else Address.
func (s ServerSpec) ListenHost() string {
	if s.ListenAddress != "" {
		return s.ListenAddress
	}
	return s.Address
}

// hostURL joins with net.JoinHostPort so IPv6 addresses get their brackets.
func hostURL(scheme, addr string, port int) string {
	return scheme + "://" + net.JoinHostPort(addr, strconv.Itoa(port))
}

// Args is etcd's command line (without argv[0]) for s. It does not check s;
// call Validate first.
func Args(s ServerSpec) []string {
	cluster := make([]string, 0, len(s.InitialCluster))
	for _, p := range s.InitialCluster {
		cluster = append(cluster, p.Name+"="+p.PeerURL)
	}
	args := []string{
		"--name=" + s.Name,
		"--data-dir=" + s.DataDir,
		"--listen-client-urls=" + s.clientURLs(s.ListenHost()),
		"--advertise-client-urls=" + s.clientURLs(s.Address),
		"--listen-peer-urls=" + hostURL(s.PeerScheme(), s.ListenHost(), s.PeerPort),
		"--initial-advertise-peer-urls=" + s.PeerURL(),
		"--listen-metrics-urls=" + s.MetricsURL(),
		"--initial-cluster=" + strings.Join(cluster, ","),
		"--initial-cluster-state=" + s.InitialClusterState,
		"--initial-cluster-token=" + s.ClusterToken,
		// Refuse membership changes that would cost the cluster its quorum;
		// the appliance's own rules (SPEC §4.4) are the first line, this the second.
		"--strict-reconfig-check",
	}
	if t := s.TLS; t != nil {
		args = append(args,
			"--cert-file="+t.CertFile, "--key-file="+t.KeyFile, "--trusted-ca-file="+t.TrustedCAFile,
			"--client-cert-auth",
			"--peer-cert-file="+t.CertFile, "--peer-key-file="+t.KeyFile, "--peer-trusted-ca-file="+t.TrustedCAFile,
			"--peer-client-cert-auth")
		if t.PeerAllowedHostname != "" {
			args = append(args, "--peer-cert-allowed-hostname="+t.PeerAllowedHostname)
		}
	}
	if s.AutoCompactionRetention != "" {
		args = append(args,
			"--auto-compaction-mode=periodic",
			"--auto-compaction-retention="+s.AutoCompactionRetention)
	}
	if s.QuotaBackendBytes != 0 {
		args = append(args, "--quota-backend-bytes="+strconv.FormatInt(s.QuotaBackendBytes, 10))
	}
	if s.ForceNewCluster {
		args = append(args, "--force-new-cluster")
	}
	if s.HeartbeatMS != 0 {
		args = append(args, "--heartbeat-interval="+strconv.Itoa(s.HeartbeatMS))
	}
	if s.ElectionMS != 0 {
		args = append(args, "--election-timeout="+strconv.Itoa(s.ElectionMS))
	}
	// JSON lines on stderr: the supervisor keeps the last of them to tell why
	// etcd exited (ClassifyExit), and operators get one log format.
	args = append(args, "--logger=zap", "--log-outputs=stderr")
	return append(args, s.ExtraFlags...)
}

// Validate reports every problem of s that would make etcd refuse to start or
// start wrong, naming the etcd flag at fault.
func (s ServerSpec) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if s.Name == "" {
		bad("--name must not be empty")
	}
	if s.DataDir == "" {
		bad("--data-dir must not be empty")
	}
	switch ip := net.ParseIP(s.Address); {
	case s.Address == "":
		bad("address must not be empty: etcd listens and advertises on it")
	case ip == nil && s.ListenAddress != "":
		// Advertised only: a host name peers resolve.
		if strings.ContainsAny(s.Address, " /:@?#[]") {
			bad("address %q is neither an IP address nor a host name", s.Address)
		}
	case ip == nil:
		// etcd binds its listen URLs, and binding needs an IP.
		bad("address %q is not an IP address", s.Address)
	case ip.IsUnspecified():
		bad("address %q is unspecified: peers and clients could not reach the advertised URLs", s.Address)
	}
	if s.ListenAddress != "" {
		// Unspecified would bind every interface, which the appliance never
		// means to: it serves on the instance's own address only.
		if ip := net.ParseIP(s.ListenAddress); ip == nil || ip.IsUnspecified() {
			bad("listen address %q is not the IP address of an interface", s.ListenAddress)
		}
	}
	for _, p := range []struct {
		flag string
		port int
	}{
		{"--listen-client-urls", s.ClientPort},
		{"--listen-peer-urls", s.PeerPort},
		{"--listen-metrics-urls", s.MetricsPort},
	} {
		if p.port < 1 || p.port > 65535 {
			bad("%s port %d is out of range 1-65535", p.flag, p.port)
		}
	}
	if (s.HeartbeatMS == 0) != (s.ElectionMS == 0) || s.HeartbeatMS < 0 || s.ElectionMS < 5*s.HeartbeatMS {
		bad("--heartbeat-interval %d and --election-timeout %d: set both or neither, the election timeout at least 5 heartbeats",
			s.HeartbeatMS, s.ElectionMS)
	}
	if s.InitialClusterState != StateNew && s.InitialClusterState != StateExisting {
		bad("--initial-cluster-state %q must be %q or %q", s.InitialClusterState, StateNew, StateExisting)
	}
	if s.ClusterToken == "" {
		// etcd's default token would let two clusters of the same members
		// get the same cluster ID.
		bad("--initial-cluster-token must not be empty")
	}
	errs = append(errs, s.validateInitialCluster()...)
	if s.QuotaBackendBytes < 0 {
		bad("--quota-backend-bytes %d must not be negative", s.QuotaBackendBytes)
	}
	if t := s.TLS; t != nil && (t.CertFile == "" || t.KeyFile == "" || t.TrustedCAFile == "") {
		bad("--cert-file %q, --key-file %q and --trusted-ca-file %q must all be set with TLS", t.CertFile, t.KeyFile, t.TrustedCAFile)
	}
	if r := s.AutoCompactionRetention; r != "" && !validRetention(r) {
		bad("--auto-compaction-retention %q must be hours (\"1\") or a duration (\"30m\")", r)
	}
	return errors.Join(errs...)
}

func (s ServerSpec) validateInitialCluster() []error {
	if len(s.InitialCluster) == 0 {
		return []error{errors.New("--initial-cluster must not be empty")}
	}
	var errs []error
	seen := make(map[string]bool, len(s.InitialCluster))
	for _, p := range s.InitialCluster {
		if p.Name == "" || p.PeerURL == "" {
			errs = append(errs, fmt.Errorf("--initial-cluster entry %q=%q needs a name and a peer URL", p.Name, p.PeerURL))
			continue
		}
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("--initial-cluster names %q twice", p.Name))
		}
		seen[p.Name] = true
		// etcd refuses to start when its own entry and
		// --initial-advertise-peer-urls disagree; say so before it does.
		if s.Name != "" && p.Name == s.Name && s.Address != "" && p.PeerURL != s.PeerURL() {
			errs = append(errs, fmt.Errorf("--initial-cluster has %s=%s but --initial-advertise-peer-urls is %s", p.Name, p.PeerURL, s.PeerURL()))
		}
	}
	if s.Name != "" && !seen[s.Name] {
		errs = append(errs, fmt.Errorf("--initial-cluster must include this member %q", s.Name))
	}
	return errs
}

// validRetention mirrors etcd's parsing of --auto-compaction-retention in
// periodic mode: a bare integer is hours, anything else a Go duration.
func validRetention(r string) bool {
	if n, err := strconv.Atoi(r); err == nil {
		return n >= 0
	}
	d, err := time.ParseDuration(r)
	return err == nil && d >= 0
}
