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
	a, _, code := manualAppliance(ctx, "backup", args, nil)
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

// runRestore is `etcd-appliance restore`: with --from, this instance's data
// is replaced by a new one-member cluster holding the snapshot; with
// --set-aside, this instance's data is moved aside so that it joins the
// restored cluster; with --list, the snapshots in the store. The appliance
// must be stopped on the instance; both changes need --yes.
func runRestore(ctx context.Context, args []string, out io.Writer) int {
	var rf restoreFlags
	a, _, code := manualAppliance(ctx, "restore", args, func(fs *pflag.FlagSet) {
		fs.StringVar(&rf.from, "from", "", "the snapshot object to restore (see --list), e.g. orders/20261125T120000Z-r4711.db")
		fs.BoolVar(&rf.yes, "yes", false, "really replace this instance's data (it is moved aside, never deleted)")
		fs.BoolVar(&rf.list, "list", false, "list the cluster's snapshots in the store, newest first")
		fs.BoolVar(&rf.setAside, "set-aside", false, "move this instance's data aside, so that it joins the restored cluster")
	})
	if a == nil {
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
	if rf.list {
		snaps, err := a.Snapshots(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "etcd-appliance restore: %v\n", err)
			return 1
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

// manualAppliance builds an appliance from run's flags (and environment)
// plus extra ones, for a by-hand operation. It returns nil and the exit
// code when the configuration is invalid.
func manualAppliance(ctx context.Context, name string, args []string, extra func(*pflag.FlagSet)) (*appliance.Appliance, *config.Config, int) {
	cfg := config.NewConfig()
	fs := newFlagSet(name)
	cfg.RegisterFlags(fs)
	if extra != nil {
		extra(fs)
	}
	config.AnnotateEnv(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return nil, nil, code
	}
	warnUnknownEnv(os.Stderr, fs, os.Environ())
	if err := config.ApplyEnv(fs, os.LookupEnv); err != nil {
		fmt.Fprintf(os.Stderr, "etcd-appliance %s: invalid environment: %v\n", name, err)
		return nil, nil, 2
	}
	if err := validate(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "etcd-appliance %s: invalid configuration: %s\n", name, strings.ReplaceAll(err.Error(), "\n", "; "))
		return nil, nil, 2
	}
	if err := checkGroupFile(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "etcd-appliance %s: %v\n", name, err)
		return nil, nil, 2
	}
	if cfg.Store == "" {
		fmt.Fprintf(os.Stderr, "etcd-appliance %s: no snapshot store: set --store (or ETCD_APPLIANCE_STORE) to file:///dir or s3://bucket/prefix\n", name)
		return nil, nil, 2
	}
	logger := newLogger(cfg.LogFormat, cfg.LogLevel, name)
	registry := prometheus.NewRegistry()
	ident, group, _, _, err := newProvider(ctx, cfg, logger, registry)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-appliance %s: setting up the provider: %v\n", name, err)
		return nil, nil, 1
	}
	store, err := snapshot.Open(ctx, cfg.Store, snapshot.Options{Logger: logger, Registerer: registry})
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-appliance %s: %v\n", name, err)
		return nil, nil, 2
	}
	etcdCmd, err := etcdCommand(cfg.EtcdBinary)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-appliance %s: %v\n", name, err)
		return nil, nil, 1
	}
	etcdVersion, err := etcdVersionOf(ctx, cfg.EtcdBinary, etcdCmd)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-appliance %s: learning the version of --etcd-binary: %v\n", name, err)
		return nil, nil, 1
	}
	return appliance.New(appliance.Options{
		Config: cfg, Logger: logger, Identity: ident, Group: group,
		EtcdCommand: etcdCmd, EtcdVersion: etcdVersion, Registry: registry, Store: store,
	}), cfg, 0
}

func printJSON(out io.Writer, v any) int {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return 1
	}
	return 0
}
