package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-appliance/etcd-appliance/internal/appliance"
	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/config"
	"github.com/etcd-appliance/etcd-appliance/internal/config/etcdflags"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
	"github.com/etcd-appliance/etcd-appliance/internal/logging"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
	"github.com/etcd-appliance/etcd-appliance/internal/pki/awssecret"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
	awsprovider "github.com/etcd-appliance/etcd-appliance/internal/provider/aws"
	"github.com/etcd-appliance/etcd-appliance/internal/provider/local"
	"github.com/etcd-appliance/etcd-appliance/internal/snapshot"
)

// runDaemon is `etcd-appliance run`.
func runDaemon(ctx context.Context, args []string) int {
	cfg := config.NewConfig()
	fs := newFlagSet("run")
	cfg.RegisterFlags(fs)
	config.AnnotateEnv(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if err := config.ApplyEnv(fs, os.LookupEnv); err != nil {
		warnUnknownEnv(os.Stderr, fs, os.Environ())
		fmt.Fprintf(os.Stderr, "etcd-appliance: invalid environment: %v\n", err)
		return 2
	}
	if err := validate(cfg); err != nil {
		warnUnknownEnv(os.Stderr, fs, os.Environ())
		fmt.Fprintf(os.Stderr, "etcd-appliance: invalid configuration: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		return 2
	}
	if err := checkGroupFile(cfg); err != nil {
		warnUnknownEnv(os.Stderr, fs, os.Environ())
		fmt.Fprintf(os.Stderr, "etcd-appliance: %v\n", err)
		return 2
	}
	logger := newLogger(cfg.LogFormat, cfg.LogLevel, "appliance")
	logUnknownEnv(logger, fs, os.Environ())
	etcdCmd, err := etcdCommand(cfg.EtcdBinary)
	if err != nil {
		logger.Error("cannot find the etcd to run", "err", err)
		return 1
	}
	etcdVersion, err := etcdVersionOf(ctx, cfg.EtcdBinary, etcdCmd)
	if err != nil {
		logger.Error("cannot learn the version of the etcd to run", "etcd_binary", cfg.EtcdBinary, "err", err)
		return 1
	}
	logger.Info("etcd-appliance starting", "version", version, "etcd_version", etcdVersion, "provider", cfg.Provider)
	registry := prometheus.NewRegistry()
	ident, group, dns, dnsSpec, err := newProvider(ctx, cfg, logger, registry)
	if err != nil {
		logger.Error("cannot set up the provider", "provider", cfg.Provider, "err", err)
		return 1
	}
	fw, fwSpec, err := newFirewall(cfg, group)
	if err != nil {
		logger.Error("cannot set up the firewall of multi-region mode", "err", err)
		return 1
	}
	var store snapshot.Store
	if cfg.Store != "" {
		if store, err = snapshot.Open(ctx, cfg.Store, snapshot.Options{
			Logger: logger.With("component", "store"), Registerer: registry,
		}); err != nil {
			logger.Error("cannot open the snapshot store", "store", cfg.Store, "err", err)
			return 1
		}
	}
	caStore, err := newCAStore(ctx, cfg, registry)
	if err != nil {
		logger.Error("cannot open the cluster CA's store", "err", err)
		return 1
	}
	// The aws provider holds terminations with lifecycle hooks (§4.5).
	lifecycle, _ := group.(provider.Lifecycle)
	// and holds new instances out of service until they are voters.
	launch, _ := group.(provider.Launch)
	a := appliance.New(appliance.Options{
		Config:       cfg,
		Logger:       logger,
		Identity:     ident,
		Group:        group,
		EtcdCommand:  etcdCmd,
		EtcdVersion:  etcdVersion,
		Version:      version,
		Registry:     registry,
		DNS:          dns,
		DNSSpec:      dnsSpec,
		Firewall:     fw,
		FirewallSpec: fwSpec,
		Lifecycle:    lifecycle,
		Launch:       launch,
		Store:        store,
		CAStore:      caStore,
	})
	if err := a.Run(ctx); err != nil && ctx.Err() == nil {
		logger.Error("appliance stopped", "err", err)
		return 1
	}
	logger.Info("etcd-appliance stopped")
	return 0
}

// validate checks the configuration, the extra etcd flags included: etcd
// refusing one would show only as etcd exiting at every restart.
func validate(cfg *config.Config) error {
	return errors.Join(cfg.Validate(), etcdflags.Check(cfg.EtcdFlags.Strings(), cfg.EtcdBinary == ""))
}

// newProvider builds the provider that --provider names, and its DNS when
// --hosted-zone is set. Its metrics go to reg, the registry the appliance
// serves on /metrics.
func newProvider(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (
	provider.Identity, provider.Group, provider.DNS, *cluster.DNSSpec, error) {
	if cfg.Provider != config.ProviderAWS {
		p := local.New(cfg.GroupFile, cfg.InstanceID, logger.With("component", "local"))
		return p, p, nil, nil, nil
	}
	p, err := awsprovider.New(ctx, awsprovider.Options{
		Registerer: reg, Logger: logger.With("component", "aws"), LifecycleHook: cfg.LifecycleHook,
		Regions: cfg.Regions.Strings(), ClusterTagKey: cfg.ClusterTag(), PrivateNetwork: cfg.MultiRegionNetwork == config.NetworkPrivate,
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	name := cfg.ClusterName
	if name == "" && cfg.HostedZone != "" && cfg.DNSName == "" {
		// The group's name names the records. AWS may be throttling at
		// boot: keep asking rather than exit (p.Name retries each call).
		for name = p.Name(); name == ""; name = p.Name() {
			logger.Warn("the group's name, which names the DNS records, is unknown yet; asking again (--dns-name avoids the wait)")
			select {
			case <-ctx.Done():
				return nil, nil, nil, nil, errors.New("the group's name, which names the DNS records, is unknown: set --dns-name")
			case <-time.After(2 * time.Second):
			}
		}
	}
	spec := cfg.DNSSpec(name, cfg.TLSOn())
	if spec == nil {
		return p, p, nil, nil, nil
	}
	dns, err := p.DNS(*spec)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return p, p, dns, spec, nil
}

// newCAStore is where --tls auto keeps the cluster CA: --tls-ca-dir, or
// --tls-ca-secret in AWS Secrets Manager of the instance's region — of the
// first of --regions in multi-region mode, so that every region's members
// share one CA; nil otherwise.
func newCAStore(ctx context.Context, cfg *config.Config, reg prometheus.Registerer) (pki.Store, error) {
	switch {
	case cfg.TLS != config.TLSAuto:
		return nil, nil
	case cfg.TLSCADir != "":
		return pki.DirStore{Dir: cfg.TLSCADir}, nil
	}
	opts := awssecret.Options{Name: cfg.TLSCASecret, Registerer: reg}
	if len(cfg.Regions) > 0 {
		opts.Region = cfg.Regions[0]
	}
	return awssecret.Open(ctx, opts)
}

// checkGroupFile refuses, at start, a group file of the local provider that
// is missing, garbled, or does not list the instance: no retry mends a
// configuration error. (While running, the provider keeps the last usable
// listing instead.)
func checkGroupFile(cfg *config.Config) error {
	if cfg.Provider != config.ProviderLocal {
		return nil
	}
	return local.Check(cfg.GroupFile, cfg.InstanceID)
}

// etcdCommand is how the appliance runs etcd: an external binary, or its
// own executable with the etcd subcommand.
func etcdCommand(external string) ([]string, error) {
	if external != "" {
		return []string{external}, nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locating the appliance's own binary: %w", err)
	}
	return []string{self, "etcd"}, nil
}

// etcdVersionOf is the version of the etcd the appliance runs: the
// bundled one's is compiled in; an external one is asked (`--version`),
// since the version gate of a join needs it before that etcd starts.
func etcdVersionOf(ctx context.Context, external string, etcdCmd []string) (string, error) {
	if external == "" {
		return bundledEtcdVersion(), nil
	}
	return etcd.BinaryVersion(ctx, etcdCmd)
}

// newLogger is the appliance's logger on stderr, which etcd's lines are
// re-encoded into too (package logging has the schema). Its lines are
// component's unless a part of the appliance names its own.
func newLogger(format, level, component string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	if format == "" {
		format = "json"
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			format = "text"
		}
	}
	return logging.New(os.Stderr, format, lv).With(logging.ComponentKey, component)
}
