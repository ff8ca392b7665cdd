package config

import (
	"slices"
	"testing"

	"github.com/spf13/pflag"
)

// TestFlagNamesAndDefaultsAreKept: the move from Go's flag package to pflag
// changed how flags are spelled (--flag), not their names or defaults, which
// the template, the systemd unit and the docs depend on. The table is the
// flag package's listing before the move.
func TestFlagNamesAndDefaultsAreKept(t *testing.T) {
	want := []struct{ name, def string }{
		{"address", ""},
		{"api-port", "2378"},
		{"auto-compaction-retention", "1h"},
		{"backup-interval", "5m0s"},
		{"client-port", "2379"},
		{"cluster-name", ""},
		{"cluster-tag-key", ""},
		{"data-dir", "/var/lib/etcd-appliance"},
		{"dns-name", ""},
		{"dns-ttl", "60"},
		{"dr-grace", "5m0s"},
		{"election-timeout", "0s"},
		{"etcd-auth", "false"},
		{"etcd-binary", ""},
		{"etcd-flag", ""},
		{"group-file", ""},
		{"heartbeat-interval", "0s"},
		{"hosted-zone", ""},
		{"instance-id", ""},
		{"launch-timeout", "15m0s"},
		{"learner-timeout", "2m0s"},
		{"leave-on-shutdown", "never"},
		{"lifecycle-hook", ""},
		{"log-format", ""},
		{"log-level", "info"},
		{"metrics-port", "2381"},
		{"multi-region-network", "public"},
		{"peer-port", "2380"},
		{"provider", "local"},
		{"quota-backend-bytes", "2147483648"},
		{"reconcile-interval", "5s"},
		{"regions", ""},
		{"retain-daily", "168h0m0s"},
		{"retain-hourly", "24h0m0s"},
		{"retain-recent", "1h0m0s"},
		{"stale-grace", "30s"},
		{"startup-interval", "500ms"},
		{"stop-timeout", "20s"},
		{"store", ""},
		// Unset: auto with a CA source, else off (Validate).
		{"tls", ""},
		{"tls-ca-dir", ""},
		{"tls-ca-refresh-interval", "5m0s"},
		{"tls-ca-secret", ""},
		{"tls-cert-file", ""},
		{"tls-cert-lifetime", "168h0m0s"},
		{"tls-key-file", ""},
		{"tls-plaintext-clients", "false"},
		{"tls-plaintext-peers", "false"},
		{"tls-trusted-ca-file", ""},
	}
	fs := newFlagSet(NewConfig())
	var got []string
	fs.VisitAll(func(f *pflag.Flag) { got = append(got, f.Name) })
	if len(got) != len(want) {
		t.Errorf("run has %d flags %q, want %d", len(got), got, len(want))
	}
	for _, w := range want {
		f := fs.Lookup(w.name)
		if f == nil {
			t.Errorf("--%s is gone", w.name)
			continue
		}
		if f.DefValue != w.def {
			t.Errorf("--%s defaults to %q, want %q", w.name, f.DefValue, w.def)
		}
	}
}

// TestAnnotateEnvNamesEveryVariableOfAFlag: --help shows, next to each
// flag, the variables ApplyEnv reads for it, the seed's too.
func TestAnnotateEnvNamesEveryVariableOfAFlag(t *testing.T) {
	fs := newFlagSet(NewConfig())
	AnnotateEnv(fs)
	for name, want := range map[string][]string{
		"stale-grace": {"ETCD_APPLIANCE_STALE_GRACE"},
		"hosted-zone": {"ETCD_APPLIANCE_HOSTED_ZONE", "HOSTED_ZONE"},
		"regions":     {"ETCD_APPLIANCE_REGIONS", "ACTIVE_REGIONS"},
	} {
		if got := fs.Lookup(name).Annotations[EnvAnnotation]; !slices.Equal(got, want) {
			t.Errorf("--%s is annotated with %q, want %q", name, got, want)
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if len(f.Annotations[EnvAnnotation]) == 0 {
			t.Errorf("--%s names no environment variable", f.Name)
		}
	})
}

// TestEtcdFlagTakesSeveralFlagsInOneValue: an environment variable carries
// one value, so --etcd-flag splits each value at spaces; etcd gets one
// argument a field, in order.
func TestEtcdFlagTakesSeveralFlagsInOneValue(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"env", nil, map[string]string{"ETCD_APPLIANCE_ETCD_FLAG": " --snapshot-count=5000  --max-txn-ops=256 "},
			[]string{"--snapshot-count=5000", "--max-txn-ops=256"}},
		{"flags", []string{"--etcd-flag=--snapshot-count 5000", "--etcd-flag", "--max-txn-ops=256 --enable-pprof"}, nil,
			[]string{"--snapshot-count", "5000", "--max-txn-ops=256", "--enable-pprof"}},
		{"the command line wins", []string{"--etcd-flag=--a=1"}, map[string]string{"ETCD_APPLIANCE_ETCD_FLAG": "--b=2 --c=3"},
			[]string{"--a=1"}},
		{"empty", nil, map[string]string{"ETCD_APPLIANCE_ETCD_FLAG": ""}, nil},
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
			if got := c.EtcdFlags.Strings(); !slices.Equal(got, tt.want) {
				t.Errorf("etcd's extra arguments = %q, want %q", got, tt.want)
			}
		})
	}
}
