package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/etcd-appliance/etcd-appliance/internal/appliance"
	"github.com/etcd-appliance/etcd-appliance/internal/config"
	"github.com/etcd-appliance/etcd-appliance/internal/snapshot"
)

// runBackup is `etcd-appliance backup`: a snapshot of the cluster now,
// through this instance's etcd, stored in --store; it prints the object
// and its revision as JSON.
func runBackup(ctx context.Context, args []string, out io.Writer) int {
	cfg, code, ok := parseManual("backup", args, nil)
	if !ok {
		return code
	}
	a, code := manualAppliance(ctx, "backup", cfg, manualUse{identity: true, store: true})
	if a == nil {
		return code
	}
	m, err := a.Backup(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-appliance backup: %v\n", err)
		return 1
	}
	return printJSON(out, map[string]any{"object": m.Key, "revision": m.Revision, "bytes": m.Size, "sha256": m.SHA256})
}

// restoreFlags are the flags of `etcd-appliance restore` on top of run's.
type restoreFlags struct {
	from     string
	yes      bool
	list     bool
	setAside bool
}

// use is what the mode the flags choose uses of the configuration: --from
// all of it; --list the store and the cluster's name; --set-aside the data
// dir only.
func (rf restoreFlags) use() manualUse {
	switch {
	case rf.list:
		return manualUse{store: true, clusterName: true}
	case rf.setAside:
		return manualUse{}
	default:
		return manualUse{identity: true, store: true}
	}
}

// runRestore is `etcd-appliance restore`: with --from, this instance's data
// is replaced by a new one-member cluster holding the snapshot; with
// --set-aside, this instance's data is moved aside so that it joins the
// restored cluster; with --list, the snapshots in the store. The appliance
// must be stopped on the instance; both changes need --yes.
func runRestore(ctx context.Context, args []string, out io.Writer) int {
	var rf restoreFlags
	cfg, code, ok := parseManual("restore", args, func(fs *pflag.FlagSet) {
		fs.StringVar(&rf.from, "from", "", "the snapshot object to restore (see --list), e.g. orders/20261125T120000Z-r4711.db")
		fs.BoolVar(&rf.yes, "yes", false, "really replace this instance's data (it is moved aside, never deleted)")
		fs.BoolVar(&rf.list, "list", false, "list the cluster's snapshots in the store, newest first (needs --store, and --cluster-name or the group's)")
		fs.BoolVar(&rf.setAside, "set-aside", false, "move this instance's data aside, so that it joins the restored cluster (needs --data-dir only)")
	})
	if !ok {
		return code
	}
	modes := 0
	for _, on := range []bool{rf.from != "", rf.list, rf.setAside} {
		if on {
			modes++
		}
	}
	if modes != 1 {
		fmt.Fprintln(os.Stderr, "etcd-appliance restore: give exactly one of --from OBJECT, --set-aside or --list")
		return 2
	}
	a, code := manualAppliance(ctx, "restore", cfg, rf.use())
	if a == nil {
		return code
	}
	if rf.list {
		snaps, err := a.Snapshots(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "etcd-appliance restore: %v\n", err)
			return 1
		}
		if len(snaps) == 0 {
			// stdout stays JSON for scripts; the words go to the operator.
			fmt.Fprintf(os.Stderr, "etcd-appliance restore: no snapshots of cluster %q in %s\n", a.ClusterName(), cfg.Store)
			snaps = []snapshot.Meta{}
		}
		return printJSON(out, snaps)
	}
	if !rf.yes {
		fmt.Fprintln(os.Stderr, "etcd-appliance restore: this replaces the instance's etcd data (moved aside, never deleted): add --yes to go on")
		return 2
	}
	if rf.setAside {
		aside, err := a.SetAsideLocal()
		if err != nil {
			fmt.Fprintf(os.Stderr, "etcd-appliance restore: %v\n", err)
			return 1
		}
		return printJSON(out, map[string]any{"set_aside": aside})
	}
	m, err := a.RestoreLocal(ctx, rf.from)
	if err != nil {
		switch {
		case errors.Is(err, snapshot.ErrCorrupt):
			fmt.Fprintf(os.Stderr, "etcd-appliance restore: snapshot %s is corrupt (its checksum does not match): choose another with --list: %v\n", rf.from, err)
		case errors.Is(err, snapshot.ErrNotFound):
			fmt.Fprintf(os.Stderr, "etcd-appliance restore: snapshot %s is not in the store: see --list: %v\n", rf.from, err)
		default:
			fmt.Fprintf(os.Stderr, "etcd-appliance restore: %v\n", err)
		}
		return 1
	}
	return printJSON(out, map[string]any{"restored": m.Key, "revision": m.Revision,
		"next": "start the appliance here; on every other instance run `etcd-appliance restore --set-aside --yes` before starting it"})
}

// parseManual parses the command line (and environment) of a by-hand
// operation: run's flags plus extra ones. ok is false when the command is
// to exit with code.
func parseManual(name string, args []string, extra func(*pflag.FlagSet)) (cfg *config.Config, code int, ok bool) {
	cfg = config.NewConfig()
	fs := newFlagSet(name)
	cfg.RegisterFlags(fs)
	if extra != nil {
		extra(fs)
	}
	config.AnnotateEnv(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return nil, code, false
	}
	warnUnknownEnv(os.Stderr, fs, os.Environ())
	if err := config.ApplyEnv(fs, os.LookupEnv); err != nil {
		fmt.Fprintf(os.Stderr, "etcd-appliance %s: invalid environment: %v\n", name, err)
		return nil, 2, false
	}
	return cfg, 0, true
}

// manualUse is what a by-hand operation uses of the configuration: it
// demands, and sets up, nothing else.
type manualUse struct {
	// identity is who the instance is, in its group, and the etcd it runs:
	// --instance-id and --group-file with --provider local.
	identity bool
	// store is the snapshot store, --store.
	store bool
	// clusterName is the cluster's name, which prefixes its snapshots:
	// --cluster-name, or else the group's (--group-file with --provider
	// local).
	clusterName bool
}

// manualAppliance builds an appliance for a by-hand operation from cfg,
// with what use says the operation uses. It returns nil and the exit code
// when the configuration is invalid.
func manualAppliance(ctx context.Context, name string, cfg *config.Config, use manualUse) (*appliance.Appliance, int) {
	validated := cfg.ValidateWithoutIdentity()
	if use.identity {
		validated = validate(cfg)
	}
	if err := validated; err != nil {
		fmt.Fprintf(os.Stderr, "etcd-appliance %s: invalid configuration: %s\n", name, strings.ReplaceAll(err.Error(), "\n", "; "))
		return nil, 2
	}
	if use.identity {
		if err := checkGroupFile(cfg); err != nil {
			fmt.Fprintf(os.Stderr, "etcd-appliance %s: %v\n", name, err)
			return nil, 2
		}
	}
	if use.store && cfg.Store == "" {
		fmt.Fprintf(os.Stderr, "etcd-appliance %s: no snapshot store: set --store (or ETCD_APPLIANCE_STORE) to file:///dir or s3://bucket/prefix\n", name)
		return nil, 2
	}
	groupNamed := use.clusterName && cfg.ClusterName == ""
	if groupNamed && cfg.Provider == config.ProviderLocal && cfg.GroupFile == "" {
		fmt.Fprintf(os.Stderr, "etcd-appliance %s: the cluster's name is unknown: set --cluster-name, or --group-file for the group's\n", name)
		return nil, 2
	}
	logger := newLogger(cfg.LogFormat, cfg.LogLevel, name)
	registry := prometheus.NewRegistry()
	opts := appliance.Options{Config: cfg, Logger: logger, Registry: registry}
	if use.identity || groupNamed {
		ident, group, _, _, err := newProvider(ctx, cfg, logger, registry)
		if err != nil {
			fmt.Fprintf(os.Stderr, "etcd-appliance %s: setting up the provider: %v\n", name, err)
			return nil, 1
		}
		opts.Identity, opts.Group = ident, group
	}
	if use.store {
		store, err := snapshot.Open(ctx, cfg.Store, snapshot.Options{Logger: logger, Registerer: registry})
		if err != nil {
			fmt.Fprintf(os.Stderr, "etcd-appliance %s: %v\n", name, err)
			return nil, 2
		}
		opts.Store = store
	}
	if use.identity {
		caStore, err := newCAStore(ctx, cfg, registry)
		if err != nil {
			fmt.Fprintf(os.Stderr, "etcd-appliance %s: opening the cluster CA's store: %v\n", name, err)
			return nil, 1
		}
		opts.CAStore = caStore
		etcdCmd, err := etcdCommand(cfg.EtcdBinary)
		if err != nil {
			fmt.Fprintf(os.Stderr, "etcd-appliance %s: %v\n", name, err)
			return nil, 1
		}
		etcdVersion, err := etcdVersionOf(ctx, cfg.EtcdBinary, etcdCmd)
		if err != nil {
			fmt.Fprintf(os.Stderr, "etcd-appliance %s: learning the version of --etcd-binary: %v\n", name, err)
			return nil, 1
		}
		opts.EtcdCommand, opts.EtcdVersion = etcdCmd, etcdVersion
	}
	return appliance.New(opts), 0
}

func printJSON(out io.Writer, v any) int {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return 1
	}
	return 0
}
