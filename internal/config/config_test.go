package config

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// validLocal is the smallest valid configuration: the defaults with the two
// settings the local provider needs.
func validLocal(t *testing.T) *Config {
	t.Helper()
	c := NewConfig()
	c.InstanceID = "i-a"
	c.GroupFile = filepath.Join(t.TempDir(), "group.json")
	c.DataDir = filepath.Join(t.TempDir(), "data")
	return c
}

// joined returns the individual errors of an errors.Join result.
func joined(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestDefaultsValidate(t *testing.T) {
	c := NewConfig()
	c.InstanceID, c.GroupFile = "i-a", "group.json"
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults with --instance-id and --group-file: %v", err)
	}
	if err := validLocal(t).Validate(); err != nil {
		t.Fatalf("defaults in a temp dir: %v", err)
	}
}

func TestAWSProviderValidates(t *testing.T) {
	c := NewConfig()
	c.Provider = ProviderAWS
	c.DataDir = filepath.Join(t.TempDir(), "data")
	if err := c.Validate(); err != nil {
		t.Fatalf("--provider aws needs no --instance-id or --group-file: %v", err)
	}
	for _, tt := range []struct {
		name, flag string
		mod        func(c *Config)
	}{
		{"instance id", "--instance-id", func(c *Config) { c.InstanceID = "i-a" }},
		{"group file", "--group-file", func(c *Config) { c.GroupFile = "group.json" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConfig()
			c.Provider = ProviderAWS
			c.DataDir = filepath.Join(t.TempDir(), "data")
			tt.mod(c)
			err := c.Validate()
			if err == nil || len(joined(err)) != 1 {
				t.Fatalf("Validate() = %v, want one error naming %s", err, tt.flag)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, tt.flag+" ") || !strings.Contains(msg, "--provider local") {
				t.Errorf("error %q should name %s and say it is for --provider local", msg, tt.flag)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := NewConfig()
	checks := []struct {
		name      string
		got, want any
	}{
		{"provider", c.Provider, ProviderLocal},
		{"client-port", c.ClientPort, 2379},
		{"peer-port", c.PeerPort, 2380},
		{"metrics-port", c.MetricsPort, 2381},
		{"api-port", c.APIPort, 2378},
		{"reconcile-interval", c.ReconcileInterval, 5 * time.Second},
		{"stale-grace", c.StaleGrace, 30 * time.Second},
		{"leave-on-shutdown", c.LeaveOnShutdown, LeaveNever},
		{"log-format", c.LogFormat, ""},
		{"hosted-zone", c.HostedZone, ""},
		{"dns-name", c.DNSName, ""},
		{"dns-ttl", c.DNSTTL, int64(60)},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("default --%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestValidateNamesTheFlag(t *testing.T) {
	dir := t.TempDir()
	aFile := filepath.Join(dir, "not-a-dir")
	if err := os.WriteFile(aFile, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mod    func(c *Config)
		flag   string // the flag the single error must name
		hasAlt string // another word the message must contain (the value or the fix)
	}{
		{"unknown provider", func(c *Config) { c.Provider = "gce" }, "--provider", "gce"},
		{"empty provider", func(c *Config) { c.Provider = "" }, "--provider", "local"},
		{"missing instance id", func(c *Config) { c.InstanceID = "" }, "--instance-id", "required"},
		{"missing group file", func(c *Config) { c.GroupFile = "" }, "--group-file", "required"},
		{"empty data dir", func(c *Config) { c.DataDir = "" }, "--data-dir", "empty"},
		{"data dir is a file", func(c *Config) { c.DataDir = aFile }, "--data-dir", aFile},
		{"unspecified ipv4 address", func(c *Config) { c.Address = "0.0.0.0" }, "--address", "0.0.0.0"},
		{"unspecified ipv6 address", func(c *Config) { c.Address = "::" }, "--address", "unspecified"},
		{"garbage address", func(c *Config) { c.Address = "not-an-ip" }, "--address", "not-an-ip"},
		{"address with port", func(c *Config) { c.Address = "10.0.0.1:2380" }, "--address", "not an IP"},
		{"client port zero", func(c *Config) { c.ClientPort = 0 }, "--client-port", "1-65535"},
		{"peer port too high", func(c *Config) { c.PeerPort = 65536 }, "--peer-port", "65536"},
		{"metrics port negative", func(c *Config) { c.MetricsPort = -1 }, "--metrics-port", "-1"},
		{"api port too high", func(c *Config) { c.APIPort = 70000 }, "--api-port", "70000"},
		{"duplicate ports", func(c *Config) { c.APIPort = c.ClientPort }, "--api-port", "--client-port"},
		{"duplicate peer and metrics ports", func(c *Config) { c.MetricsPort = c.PeerPort }, "--metrics-port", "--peer-port"},
		{"negative reconcile interval", func(c *Config) { c.ReconcileInterval = -time.Second }, "--reconcile-interval", "positive"},
		{"zero startup interval", func(c *Config) { c.StartupInterval = 0 }, "--startup-interval", "positive"},
		{"zero backup interval", func(c *Config) { c.BackupInterval = 0 }, "--backup-interval", "positive"},
		{"negative dr grace", func(c *Config) { c.DRGrace = -time.Second }, "--dr-grace", "positive"},
		{"zero launch timeout", func(c *Config) { c.LaunchTimeout = 0 }, "--launch-timeout", "positive"},
		{"store without scheme", func(c *Config) { c.Store = "/var/backups" }, "--store", "file:///"},
		{"store with relative path", func(c *Config) { c.Store = "file://backups" }, "--store", "absolute path"},
		{"store with a bad bucket", func(c *Config) { c.Store = "s3://Bad_Bucket" }, "--store", "bucket"},
		{"negative retention", func(c *Config) { c.RetainRecent = -time.Hour }, "--retain-recent", "negative"},
		{"daily retention in hours", func(c *Config) { c.RetainDaily = 7 * time.Hour }, "--retain-daily", "168h"},
		{"negative stale grace", func(c *Config) { c.StaleGrace = -time.Second }, "--stale-grace", "positive"},
		{"zero stale grace", func(c *Config) { c.StaleGrace = 0 }, "--stale-grace", "positive"},
		{"negative learner timeout", func(c *Config) { c.LearnerTimeout = -time.Minute }, "--learner-timeout", "positive"},
		{"negative stop timeout", func(c *Config) { c.StopTimeout = -time.Second }, "--stop-timeout", "positive"},
		{"unknown leave-on-shutdown", func(c *Config) { c.LeaveOnShutdown = "sometimes" }, "--leave-on-shutdown", "never or always"},
		{"unknown log format", func(c *Config) { c.LogFormat = "xml" }, "--log-format", "json or text"},
		{"unknown log level", func(c *Config) { c.LogLevel = "verbose" }, "--log-level", "debug, info, warn or error"},
		{"empty log level", func(c *Config) { c.LogLevel = "" }, "--log-level", "info"},
		{"negative quota", func(c *Config) { c.QuotaBackendBytes = -1 }, "--quota-backend-bytes", "negative"},
		{"missing etcd binary", func(c *Config) { c.EtcdBinary = filepath.Join(dir, "nope") }, "--etcd-binary", "nope"},
		{"etcd binary is a directory", func(c *Config) { c.EtcdBinary = dir }, "--etcd-binary", dir},
		{"hosted zone with the local provider", func(c *Config) { c.HostedZone = "example.org" }, "--hosted-zone", "--provider aws"},
		{"zero dns ttl", func(c *Config) { c.DNSTTL = 0 }, "--dns-ttl", "positive"},
		{"negative dns ttl", func(c *Config) { c.DNSTTL = -60 }, "--dns-ttl", "-60"},
		{"dns name with an underscore", func(c *Config) { c.DNSName = "my_etcd" }, "--dns-name", "my_etcd"},
		{"unknown tls mode", func(c *Config) { c.TLS = "on" }, "--tls", "off, auto or files"},
		{"tls auto without a CA source", func(c *Config) { c.TLS = TLSAuto }, "--tls", "--tls-ca-dir"},
		{"tls auto with two CA sources", func(c *Config) { c.TLS, c.TLSCADir, c.TLSCASecret = TLSAuto, dir, "ca" }, "--tls-ca-secret", "one"},
		{"tls CA secret with the local provider", func(c *Config) { c.TLS, c.TLSCASecret = TLSAuto, "ca" }, "--tls-ca-secret", "--provider aws"},
		{"tls certificate lifetime too short", func(c *Config) { c.TLS, c.TLSCADir, c.TLSCertLifetime = TLSAuto, dir, time.Minute }, "--tls-cert-lifetime", "2m0s"},
		{"tls CA dir with tls off", func(c *Config) { c.TLS, c.TLSCADir = TLSOff, dir }, "--tls-ca-dir", "--tls auto"},
		{"plaintext clients with tls off", func(c *Config) { c.TLSPlaintextClients = true }, "--tls-plaintext-clients", "--tls auto or files"},
		{"plaintext peers with tls off", func(c *Config) { c.TLSPlaintextPeers = true }, "--tls-plaintext-peers", "--tls auto or files"},
		{"tls cert file with tls auto", func(c *Config) { c.TLS, c.TLSCADir, c.TLSCertFile = TLSAuto, dir, aFile }, "--tls-cert-file", "--tls files"},
		{"etcd auth with tls off", func(c *Config) { c.EtcdAuth = true }, "--etcd-auth", "--tls auto or --tls files"},
		{"tls files without a key", func(c *Config) {
			c.TLS, c.TLSCertFile, c.TLSTrustedCAFile = TLSFiles, aFile, aFile
		}, "--tls-key-file", "required"},
		{"tls files with a missing CA file", func(c *Config) {
			c.TLS, c.TLSCertFile, c.TLSKeyFile, c.TLSTrustedCAFile = TLSFiles, aFile, aFile, filepath.Join(dir, "nope")
		}, "--tls-trusted-ca-file", "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validLocal(t)
			tt.mod(c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() accepted %+v", c)
			}
			errs := joined(err)
			if len(errs) != 1 {
				t.Errorf("want exactly one error, got %d: %v", len(errs), err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.flag+" ") {
				t.Errorf("error %q does not start with the flag %s", msg, tt.flag)
			}
			if !strings.Contains(msg, tt.hasAlt) {
				t.Errorf("error %q does not mention %q", msg, tt.hasAlt)
			}
		})
	}
}

// validAWS is a valid configuration of the aws provider.
func validAWS(t *testing.T) *Config {
	t.Helper()
	c := NewConfig()
	c.Provider = ProviderAWS
	c.DataDir = filepath.Join(t.TempDir(), "data")
	return c
}

func TestValidateDNS(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(c *Config)
		flag string // "" when valid
	}{
		{"zone", func(c *Config) { c.HostedZone = "example.org" }, ""},
		{"absolute zone, name and ttl", func(c *Config) { c.HostedZone, c.DNSName, c.DNSTTL = "Example.org.", "etcd-1", 300 }, ""},
		{"dotted name", func(c *Config) { c.HostedZone, c.DNSName = "example.org", "etcd.team" }, ""},
		{"bad zone", func(c *Config) { c.HostedZone = "exa mple.org" }, "--hosted-zone"},
		{"bad name", func(c *Config) { c.HostedZone, c.DNSName = "example.org", "-etcd" }, "--dns-name"},
		{"zero ttl", func(c *Config) { c.HostedZone, c.DNSTTL = "example.org", 0 }, "--dns-ttl"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := validAWS(t)
			tt.mod(c)
			err := c.Validate()
			switch {
			case tt.flag == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.flag != "" && (err == nil || len(joined(err)) != 1 || !strings.HasPrefix(err.Error(), tt.flag+" ")):
				t.Errorf("Validate() = %v, want one error naming %s", err, tt.flag)
			}
		})
	}
}

func TestDNSSpec(t *testing.T) {
	c := validAWS(t)
	if s := c.DNSSpec("MyStack", false); s != nil {
		t.Errorf("no --hosted-zone: DNSSpec = %+v, want nil", s)
	}
	c.HostedZone = "example.org"
	s := c.DNSSpec("MyStack", true)
	if s == nil || s.Domain() != "mystack.example.org." || s.TTL != 60 || !s.TLS || s.ClientPort != 2379 || s.PeerPort != 2380 {
		t.Errorf("DNSSpec = %+v, want mystack.example.org. with TTL 60, TLS and the ports", s)
	}
	c.DNSName, c.DNSTTL = "etcd", 30
	if s := c.DNSSpec("MyStack", false); s.Domain() != "etcd.example.org." || s.TTL != 30 || s.TLS {
		t.Errorf("with --dns-name etcd --dns-ttl 30: DNSSpec = %+v", s)
	}
}

func TestApplyEnvSeedHostedZone(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"the seed's HOSTED_ZONE", nil, map[string]string{"HOSTED_ZONE": "seed.example.org"}, "seed.example.org"},
		{"ETCD_APPLIANCE_HOSTED_ZONE wins over the seed's", nil,
			map[string]string{"HOSTED_ZONE": "seed.example.org", "ETCD_APPLIANCE_HOSTED_ZONE": "ours.example.org"}, "ours.example.org"},
		{"an empty ETCD_APPLIANCE_HOSTED_ZONE still wins", nil,
			map[string]string{"HOSTED_ZONE": "seed.example.org", "ETCD_APPLIANCE_HOSTED_ZONE": ""}, ""},
		{"the flag wins over both", []string{"--hosted-zone=flag.example.org"},
			map[string]string{"HOSTED_ZONE": "seed.example.org", "ETCD_APPLIANCE_HOSTED_ZONE": "ours.example.org"}, "flag.example.org"},
		{"nothing set", nil, nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConfig()
			fs := newFlagSet(c)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if err := ApplyEnv(fs, envOf(tt.env)); err != nil {
				t.Fatal(err)
			}
			if c.HostedZone != tt.want {
				t.Errorf("--hosted-zone = %q, want %q", c.HostedZone, tt.want)
			}
		})
	}
	// Only --hosted-zone has a seed variable: the seed's names of other
	// settings are not read.
	c := NewConfig()
	fs := newFlagSet(c)
	_ = fs.Parse(nil)
	if err := ApplyEnv(fs, envOf(map[string]string{"DNS_TTL": "5", "DATA_DIR": "/x"})); err != nil || c.DNSTTL != 60 || c.DataDir != NewConfig().DataDir {
		t.Errorf("unprefixed variables were read: %v, %+v", err, c)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := validLocal(t)
	c.InstanceID, c.Address, c.PeerPort, c.LogLevel = "", "0.0.0.0", 0, "loud"
	err := c.Validate()
	for _, f := range []string{"--instance-id", "--address", "--peer-port", "--log-level"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("error %v does not name %s", err, f)
		}
	}
	if n := len(joined(err)); n != 4 {
		t.Errorf("got %d errors, want 4: %v", n, err)
	}
}

func TestValidateAccepts(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "etcd")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(c *Config)
	}{
		{"ipv4 address", func(c *Config) { c.Address = "127.0.0.2" }},
		{"ipv6 address", func(c *Config) { c.Address = "fd00::2" }},
		{"data dir that exists", func(c *Config) { c.DataDir = dir }},
		{"data dir not created yet", func(c *Config) { c.DataDir = filepath.Join(dir, "a", "b") }},
		{"custom distinct ports", func(c *Config) { c.ClientPort, c.PeerPort, c.MetricsPort, c.APIPort = 1, 65535, 12381, 12378 }},
		{"leave always", func(c *Config) { c.LeaveOnShutdown = LeaveAlways }},
		{"json logs", func(c *Config) { c.LogFormat = "json" }},
		{"text logs at debug", func(c *Config) { c.LogFormat, c.LogLevel = "text", "debug" }},
		{"external etcd binary", func(c *Config) { c.EtcdBinary = bin }},
		{"quota zero (etcd's default)", func(c *Config) { c.QuotaBackendBytes = 0 }},
		{"etcd auth with tls auto", func(c *Config) { c.TLS, c.TLSCADir, c.EtcdAuth = TLSAuto, dir, true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validLocal(t)
			tt.mod(c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
		})
	}
}

func newFlagSet(c *Config) *pflag.FlagSet {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	return fs
}

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestRegisterFlags(t *testing.T) {
	c := NewConfig()
	fs := newFlagSet(c)
	err := fs.Parse([]string{
		"--provider=local", "--instance-id=i-b", "--group-file=/tmp/g.json", "--cluster-name=demo",
		"--data-dir=/tmp/d", "--address=127.0.0.2", "--client-port=12379", "--peer-port=12380",
		"--metrics-port=12381", "--api-port=12378", "--etcd-binary=/usr/bin/etcd",
		"--etcd-flag=--heartbeat-interval=200", "--etcd-flag=--election-timeout=2000",
		"--reconcile-interval=1s", "--startup-interval=100ms", "--stale-grace=10s", "--learner-timeout=1m",
		"--stop-timeout=5s", "--leave-on-shutdown=always", "--quota-backend-bytes=1024",
		"--auto-compaction-retention=0", "--log-format=text", "--log-level=debug",
		"--hosted-zone=example.org", "--dns-name=etcd", "--dns-ttl=30",
		"--store=file:///tmp/s", "--backup-interval=1m", "--dr-grace=30s", "--launch-timeout=3m",
		"--tls=auto", "--tls-ca-dir=/tmp/ca", "--tls-cert-lifetime=2m", "--tls-ca-refresh-interval=2s",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Provider: "local", InstanceID: "i-b", GroupFile: "/tmp/g.json", ClusterName: "demo",
		DataDir: "/tmp/d", Address: "127.0.0.2", ClientPort: 12379, PeerPort: 12380, MetricsPort: 12381, APIPort: 12378,
		EtcdBinary: "/usr/bin/etcd", EtcdFlags: fieldList{"--heartbeat-interval=200", "--election-timeout=2000"},
		ReconcileInterval: time.Second, StartupInterval: 100 * time.Millisecond, StaleGrace: 10 * time.Second,
		LearnerTimeout: time.Minute, StopTimeout: 5 * time.Second, LeaveOnShutdown: "always",
		QuotaBackendBytes: 1024, AutoCompactionRetention: "0", LogFormat: "text", LogLevel: "debug",
		HostedZone: "example.org", DNSName: "etcd", DNSTTL: 30,
		Store: "file:///tmp/s", BackupInterval: time.Minute, DRGrace: 30 * time.Second, LaunchTimeout: 3 * time.Minute,
		MultiRegionNetwork: NetworkPublic,
		RetainRecent:       time.Hour, RetainHourly: 24 * time.Hour, RetainDaily: 7 * 24 * time.Hour,
		TLS: TLSAuto, TLSCADir: "/tmp/ca", TLSCertLifetime: 2 * time.Minute, TLSCARefreshInterval: 2 * time.Second,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", c, want)
	}
	if got := c.EtcdFlags.Strings(); !reflect.DeepEqual(got, []string{"--heartbeat-interval=200", "--election-timeout=2000"}) {
		t.Errorf("EtcdFlags.Strings() = %q", got)
	}
}

func TestRegisterFlagsKeepsDefaults(t *testing.T) {
	c := NewConfig()
	if err := newFlagSet(c).Parse(nil); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, NewConfig()) {
		t.Errorf("parsing no flags changed the defaults: %+v", c)
	}
}

func TestApplyEnv(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "env sets flags not on the command line",
			env: map[string]string{
				"ETCD_APPLIANCE_INSTANCE_ID":         "i-env",
				"ETCD_APPLIANCE_PEER_PORT":           "12380",
				"ETCD_APPLIANCE_STALE_GRACE":         "45s",
				"ETCD_APPLIANCE_LEAVE_ON_SHUTDOWN":   "always",
				"ETCD_APPLIANCE_QUOTA_BACKEND_BYTES": "4096",
			},
			check: func(t *testing.T, c *Config) {
				if c.InstanceID != "i-env" || c.PeerPort != 12380 || c.StaleGrace != 45*time.Second ||
					c.LeaveOnShutdown != "always" || c.QuotaBackendBytes != 4096 {
					t.Errorf("env not applied: %+v", c)
				}
			},
		},
		{
			name: "the command line wins over env",
			args: []string{"--instance-id=i-flag", "--peer-port=22380"},
			env:  map[string]string{"ETCD_APPLIANCE_INSTANCE_ID": "i-env", "ETCD_APPLIANCE_PEER_PORT": "12380"},
			check: func(t *testing.T, c *Config) {
				if c.InstanceID != "i-flag" || c.PeerPort != 22380 {
					t.Errorf("env overrode the command line: instance %q, peer port %d", c.InstanceID, c.PeerPort)
				}
			},
		},
		{
			name: "a flag given with its default value still wins over env",
			args: []string{"--log-level=info"},
			env:  map[string]string{"ETCD_APPLIANCE_LOG_LEVEL": "debug"},
			check: func(t *testing.T, c *Config) {
				if c.LogLevel != "info" {
					t.Errorf("log level %q, want the command line's info", c.LogLevel)
				}
			},
		},
		{
			name: "no env leaves the defaults",
			env:  map[string]string{"UNRELATED": "x", "ETCD_APPLIANCE_": "x", "PEER_PORT": "1"},
			check: func(t *testing.T, c *Config) {
				if !reflect.DeepEqual(c, NewConfig()) {
					t.Errorf("config changed: %+v", c)
				}
			},
		},
		{
			name: "an empty env value sets the flag empty",
			env:  map[string]string{"ETCD_APPLIANCE_CLUSTER_NAME": ""},
			check: func(t *testing.T, c *Config) {
				if c.ClusterName != "" {
					t.Errorf("cluster name %q", c.ClusterName)
				}
			},
		},
		{
			name: "env gives one extra etcd flag",
			env:  map[string]string{"ETCD_APPLIANCE_ETCD_FLAG": "--heartbeat-interval=200"},
			check: func(t *testing.T, c *Config) {
				if got := c.EtcdFlags.Strings(); !reflect.DeepEqual(got, []string{"--heartbeat-interval=200"}) {
					t.Errorf("etcd flags %q", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConfig()
			fs := newFlagSet(c)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if err := ApplyEnv(fs, envOf(tt.env)); err != nil {
				t.Fatalf("ApplyEnv: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestApplyEnvBadValueNamesTheVariable(t *testing.T) {
	tests := []struct {
		key, value, flag string
	}{
		{"ETCD_APPLIANCE_PEER_PORT", "twenty", "--peer-port"},
		{"ETCD_APPLIANCE_STALE_GRACE", "30", "--stale-grace"},
		{"ETCD_APPLIANCE_QUOTA_BACKEND_BYTES", "2GB", "--quota-backend-bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			c := NewConfig()
			fs := newFlagSet(c)
			if err := fs.Parse(nil); err != nil {
				t.Fatal(err)
			}
			err := ApplyEnv(fs, envOf(map[string]string{tt.key: tt.value}))
			if err == nil {
				t.Fatalf("%s=%s accepted", tt.key, tt.value)
			}
			for _, want := range []string{tt.key, tt.value, tt.flag} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}

	// Every bad variable is reported, not only the first.
	c := NewConfig()
	fs := newFlagSet(c)
	_ = fs.Parse(nil)
	err := ApplyEnv(fs, envOf(map[string]string{"ETCD_APPLIANCE_PEER_PORT": "x", "ETCD_APPLIANCE_CLIENT_PORT": "y"}))
	if n := len(joined(err)); n != 2 {
		t.Errorf("got %d errors, want 2: %v", n, err)
	}
}

func TestApplyEnvBadValueOnTheCommandLineIsNotRead(t *testing.T) {
	c := NewConfig()
	fs := newFlagSet(c)
	if err := fs.Parse([]string{"--peer-port=2390"}); err != nil {
		t.Fatal(err)
	}
	// The env value is bad, but the flag was given: env must not even be parsed.
	if err := ApplyEnv(fs, envOf(map[string]string{"ETCD_APPLIANCE_PEER_PORT": "bad"})); err != nil {
		t.Errorf("ApplyEnv = %v, want nil: the command line set --peer-port", err)
	}
	if c.PeerPort != 2390 {
		t.Errorf("peer port %d", c.PeerPort)
	}
}

func TestEnvName(t *testing.T) {
	for flagName, want := range map[string]string{
		"provider":                  "ETCD_APPLIANCE_PROVIDER",
		"data-dir":                  "ETCD_APPLIANCE_DATA_DIR",
		"instance-id":               "ETCD_APPLIANCE_INSTANCE_ID",
		"leave-on-shutdown":         "ETCD_APPLIANCE_LEAVE_ON_SHUTDOWN",
		"auto-compaction-retention": "ETCD_APPLIANCE_AUTO_COMPACTION_RETENTION",
	} {
		if got := EnvName(flagName); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

// TestEveryFlagHasAnEnvName checks §5's "every flag also as env": each
// registered flag is reachable through its variable.
func TestEveryFlagHasAnEnvName(t *testing.T) {
	c := NewConfig()
	fs := newFlagSet(c)
	env := map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) {
		name := EnvName(f.Name)
		if !strings.HasPrefix(name, EnvPrefix) || strings.ContainsAny(name, "-abcdefghijklmnopqrstuvwxyz") {
			t.Errorf("flag --%s has env name %q", f.Name, name)
		}
		env[name] = f.DefValue
	})
	if len(env) < 20 {
		t.Fatalf("only %d flags registered", len(env))
	}
	seen := map[string]bool{}
	err := ApplyEnv(fs, func(k string) (string, bool) {
		seen[k] = true
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		t.Errorf("applying every flag's default through env: %v", err)
	}
	for k := range env {
		if !seen[k] {
			t.Errorf("ApplyEnv never looked up %s", k)
		}
	}
}

// TestTLSDefaultsToAutoWithACASource: --tls left unset is auto when a CA
// source is given (zero-touch on AWS), off otherwise; an explicit value
// stays.
func TestTLSDefaultsToAutoWithACASource(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"nothing given", func(*Config) {}, TLSOff},
		{"a CA dir", func(c *Config) { c.TLSCADir = dir }, TLSAuto},
		{"a CA dir and plaintext clients too", func(c *Config) { c.TLSCADir, c.TLSPlaintextClients = dir, true }, TLSAuto},
		{"explicit off", func(c *Config) { c.TLS = TLSOff }, TLSOff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validLocal(t)
			tc.mod(c)
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			if c.TLS != tc.want {
				t.Errorf("--tls resolved to %q, want %q", c.TLS, tc.want)
			}
		})
	}
}
