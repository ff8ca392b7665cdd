// Package config is the appliance's configuration: one struct, its defaults,
// the flags that set it, the ETCD_APPLIANCE_* environment that sets flags not
// given on the command line, and a Validate that names the flag at fault.
//
// The seed appliance's environment is honoured too: HOSTED_ZONE sets
// --hosted-zone when neither the flag nor ETCD_APPLIANCE_HOSTED_ZONE is given,
// and ACTIVE_REGIONS sets --regions likewise.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/snapshot/spec"
)

// Providers the appliance knows.
const (
	ProviderLocal = "local"
	ProviderAWS   = "aws"
)

// Values of --leave-on-shutdown.
const (
	LeaveNever  = "never"
	LeaveAlways = "always"
)

// EnvPrefix prefixes the environment variable of every flag.
const EnvPrefix = "ETCD_APPLIANCE_"

// Config is the configuration of `etcd-appliance run`.
type Config struct {
	Provider    string
	InstanceID  string
	GroupFile   string
	ClusterName string
	DataDir     string
	Address     string

	ClientPort  int
	PeerPort    int
	MetricsPort int
	APIPort     int

	EtcdBinary string
	// EtcdFlags are the user's extra etcd arguments, one a field.
	EtcdFlags fieldList

	ReconcileInterval time.Duration
	StartupInterval   time.Duration
	StaleGrace        time.Duration
	LearnerTimeout    time.Duration
	StopTimeout       time.Duration
	// HeartbeatInterval and ElectionTimeout set etcd's raft timing on every
	// member; 0: etcd's defaults, or in multi-region mode the timing derived
	// from the round trips between the members (Timing).
	HeartbeatInterval, ElectionTimeout time.Duration

	LeaveOnShutdown string
	// Store is where snapshots go (file:///dir or s3://bucket/prefix);
	// empty: no snapshots, and recovery only from survivors' data.
	Store string
	// BackupInterval is how often the leader snapshots when the revision
	// moved; DRGrace how long a quorum must stay lost for good before the
	// group recovers by itself (§4.6).
	BackupInterval time.Duration
	DRGrace        time.Duration
	// RetainRecent, RetainHourly and RetainDaily are the retention of
	// snapshots: every one younger than RetainRecent, then the newest of
	// each hour and of each day.
	RetainRecent, RetainHourly, RetainDaily time.Duration

	// LifecycleHook names the group's termination hook the instance
	// completes once drained; empty: every termination hook of the group.
	LifecycleHook string
	// LaunchTimeout bounds how long a new instance may take to become a
	// healthy voter before it abandons its group's launch hook, and so has
	// the group terminate it.
	LaunchTimeout time.Duration

	// HostedZone is the Route53 zone of the cluster's records; empty
	// publishes none.
	HostedZone string
	// DNSName is the cluster's name in the zone; empty: the cluster name.
	DNSName string
	DNSTTL  int64

	// Regions turns on multi-region mode when set, even to one region: the
	// group is every instance carrying the cluster tag in these regions,
	// peers talk over public names, and the leader keeps the security
	// groups' ingress rules (§4.1, §4.4). One region is the first step of a
	// rollout to several, and the mode must not flip, changing every
	// member's advertised URL, when a region is added.
	Regions commaList
	// ClusterTagKey is the tag whose value, on this instance, names the
	// cluster in multi-region mode; empty: DefaultClusterTagKey.
	ClusterTagKey string
	// MultiRegionNetwork is how the members of a multi-region cluster reach
	// each other: NetworkPublic (their public names, allowed by public IP)
	// or NetworkPrivate (peered VPCs: their private addresses).
	MultiRegionNetwork string

	QuotaBackendBytes       int64
	AutoCompactionRetention string

	// TLS is --tls: TLSOff (plaintext), TLSAuto (a cluster CA the
	// appliance manages: TLSCADir or TLSCASecret) or TLSFiles (the
	// operator's TLSCertFile, TLSKeyFile and TLSTrustedCAFile).
	TLS             string
	TLSCADir        string
	TLSCASecret     string
	TLSCertLifetime time.Duration
	// TLSCARefreshInterval is how often --tls auto reads the CA store
	// again, to roll out a CA rotation's step.
	TLSCARefreshInterval time.Duration
	TLSCertFile          string
	TLSKeyFile           string
	TLSTrustedCAFile     string
	// TLSPlaintextClients serves plaintext clients on etcd's client port
	// too, beside TLS ones: for clients still moving to TLS.
	TLSPlaintextClients bool
	// TLSPlaintextPeers serves etcd's peers in plaintext although TLS is
	// on: the way back from TLS, member by member (clients are then served
	// both ways too).
	TLSPlaintextPeers bool
	// EtcdAuth is --etcd-auth: etcd's RBAC on, the appliance acting as a
	// user with the root role through its certificate's common name.
	// Needs TLS: etcd takes the user from the client certificate.
	EtcdAuth bool

	LogFormat string
	LogLevel  string
}

// Values of --tls.
const (
	TLSOff   = "off"
	TLSAuto  = "auto"
	TLSFiles = "files"
)

// MinCertLifetime is the shortest --tls-cert-lifetime: renewal at two
// thirds of it leaves 40 s, enough for a renewal and a retry, and short
// enough that a test sees renewals.
const MinCertLifetime = 2 * time.Minute

// TLSOn reports whether etcd and the appliance API speak TLS.
func (c *Config) TLSOn() bool { return c.TLS == TLSAuto || c.TLS == TLSFiles }

// Retention is the snapshot retention the flags set.
func (c *Config) Retention() spec.Retention {
	return spec.Retention{Recent: c.RetainRecent, Hourly: c.RetainHourly, Daily: c.RetainDaily}
}

// NewConfig returns the defaults.
func NewConfig() *Config {
	retain := spec.DefaultRetention()
	return &Config{
		Provider:                ProviderLocal,
		DataDir:                 "/var/lib/etcd-appliance",
		ClientPort:              2379,
		PeerPort:                2380,
		MetricsPort:             2381,
		APIPort:                 2378,
		ReconcileInterval:       5 * time.Second,
		StartupInterval:         500 * time.Millisecond,
		StaleGrace:              30 * time.Second,
		LearnerTimeout:          2 * time.Minute,
		StopTimeout:             20 * time.Second,
		LeaveOnShutdown:         LeaveNever,
		BackupInterval:          5 * time.Minute,
		DRGrace:                 5 * time.Minute,
		LaunchTimeout:           15 * time.Minute,
		MultiRegionNetwork:      NetworkPublic,
		RetainRecent:            retain.Recent,
		RetainHourly:            retain.Hourly,
		RetainDaily:             retain.Daily,
		DNSTTL:                  60,
		QuotaBackendBytes:       2 << 30,
		AutoCompactionRetention: "1h",
		TLSCertLifetime:         7 * 24 * time.Hour,
		TLSCARefreshInterval:    5 * time.Minute,
		LogLevel:                "info",
	}
}

// RegisterFlags binds every field to a flag of fs.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Provider, "provider", c.Provider, "where identity and group come from: local or aws")
	fs.StringVar(&c.InstanceID, "instance-id", c.InstanceID, "local provider: this instance's id in the group file")
	fs.StringVar(&c.GroupFile, "group-file", c.GroupFile, "local provider: JSON file listing the group's instances")
	fs.StringVar(&c.ClusterName, "cluster-name", c.ClusterName, "name of the cluster (default: the group's name)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for etcd data and appliance state")
	fs.StringVar(&c.Address, "address", c.Address, "IP address to serve on (default: the instance's address from the provider)")
	fs.IntVar(&c.ClientPort, "client-port", c.ClientPort, "etcd client port")
	fs.IntVar(&c.PeerPort, "peer-port", c.PeerPort, "etcd peer port")
	fs.IntVar(&c.MetricsPort, "metrics-port", c.MetricsPort, "etcd metrics port")
	fs.IntVar(&c.APIPort, "api-port", c.APIPort, "appliance API port (/v1/peer, /healthz, /readyz, /metrics, /v1/status)")
	fs.StringVar(&c.EtcdBinary, "etcd-binary", c.EtcdBinary, "external etcd binary to run instead of the bundled one")
	fs.Var(&c.EtcdFlags, "etcd-flag", "extra etcd flags, space-separated, repeatable: --etcd-flag='--snapshot-count=5000 --max-txn-ops=256' (no spaces within a value); "+
		"checked against the bundled etcd's flags before start, or only against the flags the appliance sets itself when --etcd-binary is given "+
		"(--name, --data-dir, --initial-cluster*, --initial-advertise-peer-urls, --listen-*, --advertise-*, --force-new-cluster are refused)")
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", c.ReconcileInterval, "how often the leader does housekeeping")
	fs.DurationVar(&c.StartupInterval, "startup-interval", c.StartupInterval, "how often a starting instance looks at its peers again")
	fs.DurationVar(&c.StaleGrace, "stale-grace", c.StaleGrace, "how long a member's instance may be absent from the group before removal")
	fs.DurationVar(&c.LearnerTimeout, "learner-timeout", c.LearnerTimeout, "how long an added member may stay unstarted before removal")
	fs.DurationVar(&c.StopTimeout, "stop-timeout", c.StopTimeout, "grace period for etcd to stop after SIGTERM before SIGKILL")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", 0, "etcd's --heartbeat-interval on this member (set the same on every member, with --election-timeout); 0: etcd's 100ms, or in multi-region mode derived from the round trips between the members")
	fs.DurationVar(&c.ElectionTimeout, "election-timeout", 0, "etcd's --election-timeout on this member (at least 5 heartbeat intervals; set with --heartbeat-interval); 0: etcd's 1s, or in multi-region mode 10 heartbeats of the derived timing")
	fs.StringVar(&c.LeaveOnShutdown, "leave-on-shutdown", c.LeaveOnShutdown, "remove this member on SIGTERM: never (keep membership) or always")
	fs.StringVar(&c.Store, "store", c.Store, "snapshot store: file:///dir or s3://bucket/prefix; empty takes no snapshots")
	fs.DurationVar(&c.BackupInterval, "backup-interval", c.BackupInterval, "how often the leader snapshots to --store when the revision moved (the RPO of a total loss)")
	fs.DurationVar(&c.RetainRecent, "retain-recent", c.RetainRecent, "keep every snapshot younger than this")
	fs.DurationVar(&c.RetainHourly, "retain-hourly", c.RetainHourly, "keep the newest snapshot of each hour younger than this")
	fs.DurationVar(&c.RetainDaily, "retain-daily", c.RetainDaily, "keep the newest snapshot of each day younger than this")
	fs.DurationVar(&c.DRGrace, "dr-grace", c.DRGrace, "how long a majority of the voters' instances must be gone from the group before the rest recover from the newest data")
	fs.StringVar(&c.LifecycleHook, "lifecycle-hook", c.LifecycleHook, "aws provider: the Auto Scaling termination hook to complete once this instance has left the cluster (default: every termination hook of the group)")
	fs.DurationVar(&c.LaunchTimeout, "launch-timeout", c.LaunchTimeout, "aws provider: how long a new instance may take to become a healthy voter before it completes the group's launch hook with ABANDON, and the group terminates it (CONTINUE as soon as it is one)")
	fs.StringVar(&c.HostedZone, "hosted-zone", c.HostedZone, "aws provider: Route53 hosted zone (e.g. example.org) where the leader publishes SRV and A records of the healthy members; empty publishes none")
	fs.StringVar(&c.DNSName, "dns-name", c.DNSName, "the cluster's name in --hosted-zone: records go under <dns-name>.<hosted-zone> (default: the cluster name, lower case)")
	fs.Int64Var(&c.DNSTTL, "dns-ttl", c.DNSTTL, "TTL in seconds of the published DNS records")
	fs.Var(&c.Regions, "regions", "aws provider: multi-region mode over these comma-separated regions (e.g. eu-west-1,eu-central-1), this instance's among them: the group is every instance carrying the cluster tag in them, peers talk over public DNS names, and the leader allows every member in the cluster security group of each region")
	fs.StringVar(&c.MultiRegionNetwork, "multi-region-network", c.MultiRegionNetwork, "multi-region mode: how members reach each other: public (their public DNS names; the rules allow their public IPs) or private (peered VPCs, a VPN or a transit gateway: their private addresses, and the rules allow those)")
	fs.StringVar(&c.ClusterTagKey, "cluster-tag-key", c.ClusterTagKey, "multi-region mode: the tag whose value on this instance names the cluster; the instances and the cluster security group of every region carry it (default: "+DefaultClusterTagKey+")")
	fs.Int64Var(&c.QuotaBackendBytes, "quota-backend-bytes", c.QuotaBackendBytes, "etcd backend quota in bytes")
	fs.StringVar(&c.AutoCompactionRetention, "auto-compaction-retention", c.AutoCompactionRetention, "etcd periodic auto-compaction retention (0 disables)")
	fs.StringVar(&c.TLS, "tls", c.TLS, "TLS on etcd's client and peer ports and the appliance API: off (plaintext), auto (a cluster CA the appliance keeps in --tls-ca-dir or --tls-ca-secret; each instance issues itself a short-lived certificate and renews it) or files (--tls-cert-file, --tls-key-file, --tls-trusted-ca-file) (default: auto when a CA source is given, else off); a running plaintext cluster moves to TLS member by member when its instances are restarted with it")
	fs.BoolVar(&c.TLSPlaintextPeers, "tls-plaintext-peers", c.TLSPlaintextPeers, "--tls auto or files: etcd's peers in plaintext, clients both ways: the way back to plaintext, each member switching its peer URL to http in turn; then --tls off")
	fs.BoolVar(&c.TLSPlaintextClients, "tls-plaintext-clients", c.TLSPlaintextClients, "--tls auto or files: etcd's client port serves plaintext clients too, beside TLS ones, and advertises both URLs: for clients still moving to TLS")
	fs.StringVar(&c.TLSCADir, "tls-ca-dir", c.TLSCADir, "--tls auto: directory holding the cluster CA (ca.pem, its key included); the first instance creates it, the others read it")
	fs.StringVar(&c.TLSCASecret, "tls-ca-secret", c.TLSCASecret, "--tls auto, aws provider: AWS Secrets Manager secret (name or ARN) holding the cluster CA (in multi-region mode, in the first of --regions); the first instance creates it, the others read it")
	fs.DurationVar(&c.TLSCertLifetime, "tls-cert-lifetime", c.TLSCertLifetime, "--tls auto: lifetime of each instance's certificate, renewed after two thirds of it without restarting etcd (at least 2m)")
	fs.DurationVar(&c.TLSCARefreshInterval, "tls-ca-refresh-interval", c.TLSCARefreshInterval, "--tls auto: how often the cluster CA is read again from --tls-ca-dir or --tls-ca-secret to roll out a CA rotation's step (`etcd-appliance ca`); one GetSecretValue per instance each time with --tls-ca-secret")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "--tls files: this member's certificate (server and client authentication, its addresses as SANs), PEM")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", c.TLSKeyFile, "--tls files: the key of --tls-cert-file, PEM")
	fs.StringVar(&c.TLSTrustedCAFile, "tls-trusted-ca-file", c.TLSTrustedCAFile, "--tls files: the CA certificates members and clients are verified against, PEM")
	fs.BoolVar(&c.EtcdAuth, "etcd-auth", c.EtcdAuth, "etcd's RBAC: users, roles and permissions on (auth enable), the appliance acting as a user with the root role through its certificate's common name; needs --tls auto or files. Turning it off later does not disable etcd's auth: etcdctl auth disable, as root")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "json or text (default: json unless stderr is a terminal)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
}

// seedEnvName is the seed appliance's environment variable of a flag, or
// "". It is read only when ETCD_APPLIANCE_<FLAG> is not set.
func seedEnvName(flagName string) string {
	switch flagName {
	case "hosted-zone":
		return "HOSTED_ZONE"
	case "regions":
		return "ACTIVE_REGIONS"
	}
	return ""
}

// EnvNames are the environment variables that set a flag not given on the
// command line, the one read first first: ETCD_APPLIANCE_<FLAG>, then the
// seed's variable of the flag, if any.
func EnvNames(flagName string) []string {
	names := []string{EnvName(flagName)}
	if seed := seedEnvName(flagName); seed != "" {
		names = append(names, seed)
	}
	return names
}

// EnvAnnotation is the key of the pflag annotation listing the environment
// variables of a flag (EnvNames), for its line in --help.
const EnvAnnotation = "etcd-appliance/env"

// AnnotateEnv marks every flag of fs with the environment variables that
// ApplyEnv reads for it; call it once every flag ApplyEnv will see is
// registered.
func AnnotateEnv(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		_ = fs.SetAnnotation(f.Name, EnvAnnotation, EnvNames(f.Name))
	})
}

// ApplyEnv sets every flag of fs that was not given on the command line from
// ETCD_APPLIANCE_<FLAG> (dashes as underscores), as etcd's SetFlagsFromEnv
// does, or else from the seed's variable of the flag (HOSTED_ZONE).
func ApplyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		for _, key := range EnvNames(f.Name) {
			v, ok := lookup(key)
			if !ok {
				continue
			}
			if err := fs.Set(f.Name, v); err != nil {
				// pflag's message names the flag again: keep its cause.
				if invalid := (*pflag.InvalidValueError)(nil); errors.As(err, &invalid) {
					err = invalid.Unwrap()
				}
				errs = append(errs, fmt.Errorf("%s=%q (flag --%s): %w", key, v, f.Name, err))
			}
			return
		}
	})
	return errors.Join(errs...)
}

// EnvName is the environment variable of a flag.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Validate checks the configuration; its errors name the flag and the fix.
func (c *Config) Validate() error { return c.validate(true) }

// ValidateWithoutIdentity is Validate but for the flags that say who the
// instance is (--instance-id and --group-file, required with --provider
// local), for a by-hand operation that does not ask: `restore --list` and
// `restore --set-aside` must not demand what they do not use.
func (c *Config) ValidateWithoutIdentity() error { return c.validate(false) }

func (c *Config) validate(identity bool) error {
	var errs []error
	bad := func(flagName, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s %s", flagName, fmt.Sprintf(format, args...)))
	}
	switch c.Provider {
	case ProviderLocal:
		if identity && c.InstanceID == "" {
			bad("instance-id", "is required with --provider local: set it to this instance's id in the group file")
		}
		if identity && c.GroupFile == "" {
			bad("group-file", "is required with --provider local: point it at the group's JSON file")
		}
	case ProviderAWS:
		// The instance and its group come from IMDS and Auto Scaling; a
		// local-provider flag here would be silently ignored, so say so.
		if c.InstanceID != "" {
			bad("instance-id", "is for --provider local: with --provider aws the instance id comes from IMDS; remove it")
		}
		if c.GroupFile != "" {
			bad("group-file", "is for --provider local: with --provider aws the group is the instance's Auto Scaling group; remove it")
		}
	default:
		bad("provider", "%q is unknown: use local or aws", c.Provider)
	}
	if c.DataDir == "" {
		bad("data-dir", "must not be empty")
	} else if fi, err := os.Stat(c.DataDir); err == nil && !fi.IsDir() {
		bad("data-dir", "%q is a file, not a directory: point it at a directory", c.DataDir)
	}
	if c.Address != "" && net.ParseIP(c.Address) == nil {
		bad("address", "%q is not an IP address", c.Address)
	}
	if ip := net.ParseIP(c.Address); ip != nil && ip.IsUnspecified() {
		bad("address", "%q is unspecified: etcd must advertise the instance's own address", c.Address)
	}
	ports := map[int]string{}
	for _, p := range []struct {
		name string
		v    int
	}{{"client-port", c.ClientPort}, {"peer-port", c.PeerPort}, {"metrics-port", c.MetricsPort}, {"api-port", c.APIPort}} {
		if p.v < 1 || p.v > 65535 {
			bad(p.name, "%d is out of range: use 1-65535", p.v)
			continue
		}
		if other, dup := ports[p.v]; dup {
			bad(p.name, "%d is already used by --%s: give each port its own number", p.v, other)
		}
		ports[p.v] = p.name
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"reconcile-interval", c.ReconcileInterval}, {"startup-interval", c.StartupInterval},
		{"stale-grace", c.StaleGrace}, {"learner-timeout", c.LearnerTimeout}, {"stop-timeout", c.StopTimeout},
		{"backup-interval", c.BackupInterval}, {"dr-grace", c.DRGrace}, {"launch-timeout", c.LaunchTimeout}} {
		if d.v <= 0 {
			bad(d.name, "%s must be positive", d.v)
		}
	}
	if err := c.Timing().Validate(); err != nil || c.HeartbeatInterval%time.Millisecond != 0 || c.ElectionTimeout%time.Millisecond != 0 {
		if err == nil {
			err = errors.New("etcd counts them in whole milliseconds")
		}
		bad("election-timeout", "--heartbeat-interval %s, --election-timeout %s: %v", c.HeartbeatInterval, c.ElectionTimeout, err)
	}
	switch c.LeaveOnShutdown {
	case LeaveNever, LeaveAlways:
	default:
		bad("leave-on-shutdown", "%q is unknown: use never or always", c.LeaveOnShutdown)
	}
	// The snapshot spec's messages name the flag: keep them whole.
	if err := c.Retention().Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Store != "" {
		if _, err := spec.ParseStoreURL(c.Store); err != nil {
			errs = append(errs, err)
		}
	}
	if c.HostedZone != "" {
		if c.Provider != ProviderAWS {
			bad("hosted-zone", "needs --provider aws: records are published in Route53; remove it or use --provider aws")
		}
		if err := (cluster.DNSSpec{Zone: c.HostedZone, Name: "x", TTL: 1}).Validate(); err != nil {
			bad("hosted-zone", "%q is not a valid zone name: %v", c.HostedZone, err)
		}
	}
	if c.DNSName != "" {
		if err := (cluster.DNSSpec{Zone: "x", Name: c.DNSName, TTL: 1}).Validate(); err != nil {
			bad("dns-name", "%q is not a valid DNS name: %v", c.DNSName, err)
		}
	}
	c.validateRegions(bad)
	c.validateTLS(bad)
	if c.DNSTTL <= 0 {
		bad("dns-ttl", "%d must be positive (seconds)", c.DNSTTL)
	}
	switch c.LogFormat {
	case "", "json", "text":
	default:
		bad("log-format", "%q is unknown: use json or text", c.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", "%q is unknown: use debug, info, warn or error", c.LogLevel)
	}
	if c.QuotaBackendBytes < 0 {
		bad("quota-backend-bytes", "%d must not be negative", c.QuotaBackendBytes)
	}
	if c.EtcdBinary != "" {
		if fi, err := os.Stat(c.EtcdBinary); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			bad("etcd-binary", "%q is not an executable file", c.EtcdBinary)
		}
	}
	return errors.Join(errs...)
}

// DNSSpec is where the cluster's records go (§4.4), or nil when no
// --hosted-zone is set. clusterName names the cluster in the zone unless
// --dns-name does; tls selects the -ssl service names.
func (c *Config) DNSSpec(clusterName string, tls bool) *cluster.DNSSpec {
	if c.HostedZone == "" {
		return nil
	}
	name := c.DNSName
	if name == "" {
		name = strings.ToLower(clusterName)
	}
	return &cluster.DNSSpec{
		Zone: c.HostedZone, Name: name, TTL: c.DNSTTL, TLS: tls,
		ClientPort: c.ClientPort, PeerPort: c.PeerPort,
	}
}

// DefaultClusterTagKey is --cluster-tag-key's default: CloudFormation tags
// every resource of a stack with it, and a multi-region cluster is a stack
// of one name in each region.
const DefaultClusterTagKey = "aws:cloudformation:stack-name"

// The values of --multi-region-network.
const (
	NetworkPublic  = "public"
	NetworkPrivate = "private"
)

// ClusterTag is the key of the cluster tag in multi-region mode.
func (c *Config) ClusterTag() string {
	if c.ClusterTagKey == "" {
		return DefaultClusterTagKey
	}
	return c.ClusterTagKey
}

// regionName is the shape of an AWS region's name: eu-west-1, us-gov-west-1.
var regionName = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)

// validateRegions checks --regions and --cluster-tag-key.
func (c *Config) validateRegions(bad func(flagName, format string, args ...any)) {
	if len(c.ClusterTagKey) > 128 || strings.TrimSpace(c.ClusterTagKey) != c.ClusterTagKey {
		bad("cluster-tag-key", "%q is no tag key: use at most 128 characters without leading or trailing spaces", c.ClusterTagKey)
	}
	if c.ClusterTagKey != "" && len(c.Regions) == 0 {
		bad("cluster-tag-key", "is for multi-region mode: set --regions too, or remove it")
	}
	switch c.MultiRegionNetwork {
	case NetworkPublic:
	case NetworkPrivate:
		if len(c.Regions) == 0 {
			bad("multi-region-network", "private is for multi-region mode: set --regions too, or remove it")
		}
	default:
		bad("multi-region-network", "%q is unknown: use public or private", c.MultiRegionNetwork)
	}
	if len(c.Regions) == 0 {
		return
	}
	if c.Provider != ProviderAWS {
		bad("regions", "needs --provider aws: multi-region mode lists EC2 instances by tag; remove it or use --provider aws")
	}
	seen := map[string]bool{}
	for _, r := range c.Regions {
		if !regionName.MatchString(r) {
			bad("regions", "%q is not an AWS region name: list regions like eu-west-1,eu-central-1", r)
		}
		if seen[r] {
			bad("regions", "lists %q twice: list each region once", r)
		}
		seen[r] = true
	}
}

// validateTLS checks --tls and the flags of its modes: each mode's flags
// are required with it and refused without it, so that a CA source given
// with --tls off is not silently ignored.
func (c *Config) validateTLS(bad func(flagName, format string, args ...any)) {
	if c.TLS == "" {
		// Zero-touch on AWS: a CA source is all it takes.
		c.TLS = TLSOff
		if c.TLSCADir != "" || c.TLSCASecret != "" {
			c.TLS = TLSAuto
		}
	}
	auto, files := c.TLS == TLSAuto, c.TLS == TLSFiles
	if c.TLSPlaintextClients && !auto && !files {
		bad("tls-plaintext-clients", "is for --tls auto or files: with --tls off every client is plaintext")
	}
	if c.TLSPlaintextPeers && !auto && !files {
		bad("tls-plaintext-peers", "is for --tls auto or files: it keeps the certificates for the members that still serve TLS; with --tls off every peer is plaintext")
	}
	switch c.TLS {
	case TLSOff, TLSAuto, TLSFiles:
	default:
		bad("tls", "%q is unknown: use off, auto or files", c.TLS)
		return
	}
	for _, f := range []struct {
		name, value string
		mode        bool
		modeName    string
	}{
		{"tls-ca-dir", c.TLSCADir, auto, TLSAuto},
		{"tls-ca-secret", c.TLSCASecret, auto, TLSAuto},
		{"tls-cert-file", c.TLSCertFile, files, TLSFiles},
		{"tls-key-file", c.TLSKeyFile, files, TLSFiles},
		{"tls-trusted-ca-file", c.TLSTrustedCAFile, files, TLSFiles},
	} {
		if f.value != "" && !f.mode {
			bad(f.name, "is for --tls %s: set --tls %s, or remove it", f.modeName, f.modeName)
		}
	}
	if auto {
		switch {
		case c.TLSCADir == "" && c.TLSCASecret == "":
			bad("tls", "auto needs a CA source: set --tls-ca-dir (a directory every instance shares) or, with --provider aws, --tls-ca-secret")
		case c.TLSCADir != "" && c.TLSCASecret != "":
			bad("tls-ca-secret", "and --tls-ca-dir are two CA sources: set one")
		case c.TLSCASecret != "" && c.Provider != ProviderAWS:
			bad("tls-ca-secret", "needs --provider aws: the CA is kept in AWS Secrets Manager; use --tls-ca-dir with --provider local")
		}
		if c.TLSCARefreshInterval < time.Second {
			bad("tls-ca-refresh-interval", "%s is too short: use at least 1s", c.TLSCARefreshInterval)
		}
		if c.TLSCertLifetime < MinCertLifetime {
			bad("tls-cert-lifetime", "%s is too short: use at least %s", c.TLSCertLifetime, MinCertLifetime)
		}
	}
	if c.EtcdAuth && c.TLS == TLSOff {
		bad("etcd-auth", "needs --tls auto or --tls files: etcd takes a client's user from its certificate's common name; set --tls, or remove --etcd-auth")
	}
	if files {
		for _, f := range []struct{ name, path string }{
			{"tls-cert-file", c.TLSCertFile}, {"tls-key-file", c.TLSKeyFile}, {"tls-trusted-ca-file", c.TLSTrustedCAFile},
		} {
			if f.path == "" {
				bad(f.name, "is required with --tls files: point it at a PEM file")
			} else if fi, err := os.Stat(f.path); err != nil || fi.IsDir() {
				bad(f.name, "%q is not a readable file", f.path)
			}
		}
	}
}

// Timing is the raft timing --heartbeat-interval and --election-timeout
// set; zero when neither is set.
func (c *Config) Timing() cluster.Timing {
	return cluster.Timing{HeartbeatMS: int(c.HeartbeatInterval / time.Millisecond),
		ElectionMS: int(c.ElectionTimeout / time.Millisecond)}
}

// MultiRegion reports whether --regions turns on multi-region mode.
func (c *Config) MultiRegion() bool { return len(c.Regions) > 0 }

// FirewallSpec is how the members of a multi-region cluster are allowed in
// every region (§4.4), or nil when --regions is not set. clusterName marks
// the cluster's rules. The appliance API's port is allowed with etcd's: peers
// in other regions ask it while they start (§4.2), before etcd runs.
func (c *Config) FirewallSpec(clusterName string) *cluster.FirewallSpec {
	if !c.MultiRegion() {
		return nil
	}
	return &cluster.FirewallSpec{
		Cluster: clusterName,
		Regions: c.Regions.Strings(),
		Ports:   []int{c.ClientPort, c.PeerPort, c.APIPort},
	}
}

// commaList is a flag of comma-separated values; each use replaces the
// list, so an environment value and a flag never merge.
type commaList []string

func (l *commaList) String() string { return strings.Join(*l, ",") }

// Type names the value in --help.
func (l *commaList) Type() string { return "list" }

func (l *commaList) Set(v string) error {
	*l = nil
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// Strings returns the values given.
func (l commaList) Strings() []string { return append([]string(nil), l...) }

// fieldList is a repeatable flag whose values are lists of space-separated
// fields: an environment variable carries only one value, and several etcd
// flags must fit in ETCD_APPLIANCE_ETCD_FLAG.
type fieldList []string

func (l *fieldList) String() string { return strings.Join(*l, " ") }

// Type names the value in --help.
func (l *fieldList) Type() string { return "flags" }

func (l *fieldList) Set(v string) error {
	*l = append(*l, strings.Fields(v)...)
	return nil
}

// Strings returns the fields given, in order.
func (l fieldList) Strings() []string { return append([]string(nil), l...) }
