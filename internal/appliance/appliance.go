// Package appliance runs the appliance's loops on one instance, each a small
// type that owns its memory: the starter (startup plan, §4.2), the
// supervisor of the running etcd member, the housekeeper (§4.4) and the
// snapshotter (§4.6) that run where the housekeeper role is held (an etcd
// lease election), the launch gate of a new instance, the drainer of a
// terminating instance (§4.5), and the HTTP API that peers and operators read. What they share — who the
// instance is, its data dir, its published state — is the node.
//
// Every cycle is gather (I/O) → decide (pure, internal/cluster) → apply
// (I/O). The apply steps talk to etcd through etcdAPI, so each is tested
// against a fake.
package appliance

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/config"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
	snapstore "github.com/etcd-appliance/etcd-appliance/internal/snapshot"
)

// Options are the parts an Appliance is built from.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	// Identity and Group say who the instance is and what its group is;
	// nil only for a by-hand operation that asks neither (`restore
	// --set-aside`, `restore --list` with --cluster-name).
	Identity provider.Identity
	Group    provider.Group
	// EtcdCommand is the program and leading arguments that run etcd: the
	// appliance's own binary with the "etcd" subcommand, or --etcd-binary.
	EtcdCommand []string
	// EtcdVersion is the version of the etcd that EtcdCommand runs.
	EtcdVersion string
	// Version is the appliance's own, as built ("dev" when empty).
	Version string
	// Now is the clock; tests may replace it.
	Now func() time.Time
	// Registry is served on /metrics with the appliance's own metrics
	// registered on it; nil makes a new one.
	Registry *prometheus.Registry
	// DNS and DNSSpec publish the cluster's records; nil DNS disables it.
	DNS     provider.DNS
	DNSSpec *cluster.DNSSpec
	// Firewall and FirewallSpec keep the members' ingress rules in every
	// region (multi-region mode); nil Firewall disables it.
	Firewall     provider.Firewall
	FirewallSpec *cluster.FirewallSpec
	// Store keeps the cluster's snapshots; nil: no snapshots, recovery only
	// from survivors' data.
	Store snapstore.Store
	// Lifecycle tells when the group terminates the instance, which then
	// leaves the cluster before it lets the termination go on; nil: the
	// provider has no termination hooks.
	Lifecycle provider.Lifecycle
	// Launch holds the group's launch hook until the instance is a
	// healthy voter; nil: the provider has no launch hooks.
	Launch provider.Launch
	// CAStore keeps the cluster CA with --tls auto (a directory, or AWS
	// Secrets Manager); unused otherwise.
	CAStore pki.Store
}

// Appliance is the daemon of one instance: its loops, wired together.
type Appliance struct {
	*node
	ident provider.Identity
	api   *api
	world *world
	// caStore and dnsSpec make the instance's TLS (setUpTLS).
	caStore pki.Store
	dnsSpec *cluster.DNSSpec

	starter     *starter
	supervisor  *supervisor
	housekeeper *housekeeper
	snapshots   *snapshotter
	recovery    *recovery
	leaver      *leaver
	launcher    *launcher
	drainer     *drainer    // nil: the provider has no termination hooks
	launchGate  *launchGate // nil: the provider has no launch hooks
	restarts    etcd.Backoff
	// portWatch remembers the problem of etcd's ports last logged.
	portWatch portsWatch
}

// New builds an appliance; Run starts it.
func New(opts Options) *Appliance {
	cfg := opts.Config
	n := &node{
		cfg:     cfg,
		log:     opts.Logger,
		now:     opts.Now,
		metrics: newMetrics(opts.Registry, buildInfo{Version: opts.Version, EtcdVersion: opts.EtcdVersion}),
		data:    dataDir{root: cfg.DataDir, wal: &walPositions{}},
		ports:   cluster.Ports{Client: cfg.ClientPort, Peer: cfg.PeerPort, Metrics: cfg.MetricsPort, API: cfg.APIPort},
	}
	n.dial = dialEtcd(opts.Logger, n.etcdTLS)
	n.metrics.backupInterval.Set(cfg.BackupInterval.Seconds())
	n.groups = &groupLister{group: opts.Group, now: func() time.Time { return n.now() },
		listed: func(group []cluster.Instance) {
			n.setPeer(func(p *cluster.PeerState) { p.GroupView = cluster.GroupView(group) })
		}}
	if opts.Now == nil {
		n.now = time.Now
	}
	l := &launcher{node: n, etcdCmd: opts.EtcdCommand,
		current: etcdRelease{Version: opts.EtcdVersion, Command: opts.EtcdCommand},
		checkPorts: func(ctx context.Context, ports []etcd.Port) error {
			return etcd.CheckPorts(ctx, ports, portGrace)
		}}
	w := &world{node: n, http: &http.Client{Timeout: time.Second}, reachable: listening}
	fw := &firewallKeeper{node: n, fw: opts.Firewall, spec: opts.FirewallSpec}
	dns := &dnsPublisher{node: n, dns: opts.DNS, spec: opts.DNSSpec}
	rec := &recovery{node: n, launcher: l, store: opts.Store}
	snaps := &snapshotter{node: n, launcher: l, store: opts.Store, retention: cfg.Retention(),
		schedule: cluster.BackupSchedule{Interval: cfg.BackupInterval, Retry: 30 * time.Second, VerifyEvery: time.Hour}}
	a := &Appliance{
		node:      n,
		ident:     opts.Identity,
		api:       &api{node: n, etcdVersion: opts.EtcdVersion},
		world:     w,
		caStore:   opts.CAStore,
		dnsSpec:   opts.DNSSpec,
		recovery:  rec,
		snapshots: snaps,
		leaver:    &leaver{node: n, retry: 500 * time.Millisecond},
		launcher:  l,
		restarts:  etcd.DefaultBackoff(),
	}
	a.starter = &starter{node: n, world: w, launcher: l, recovery: rec, firewall: fw, dns: dns,
		lockWait: 30 * time.Second, promoteWait: 60 * time.Second, publishGrace: 1500 * time.Millisecond,
		etcdVersion: opts.EtcdVersion, snapshots: snaps, swapWait: swapWait, binaryVersion: etcd.BinaryVersion,
		terminations: newTerminations(n, opts.Group)}
	a.housekeeper = &housekeeper{node: n, terminations: newTerminations(n, opts.Group), dns: dns, firewall: fw}
	a.supervisor = &supervisor{node: n, starter: a.starter, housekeeper: a.housekeeper, snapshots: snaps,
		recoveryEvery: recoveryCheckEvery(cfg.DRGrace), orphanEvery: orphanCheckEvery,
		recoveryAfter: recoveryCheckAfter, orphanedAfter: orphanAfter,
		facts: &clusterWatch{node: n, store: opts.Store}}
	if opts.Lifecycle != nil {
		a.drainer = &drainer{node: n, lifecycle: opts.Lifecycle, leaver: a.leaver, dns: dns, snapshots: snaps,
			times: defaultDrainTimes()}
	}
	if opts.Launch != nil {
		a.launchGate = &launchGate{node: n, launch: opts.Launch, timeout: cfg.LaunchTimeout, times: defaultLaunchTimes()}
	}
	return a
}

// Run runs the appliance until ctx is cancelled, then stops etcd (leaving
// the cluster first with --leave-on-shutdown=always). When the group
// terminates the instance, it drains instead and idles until ctx ends.
func (a *Appliance) Run(ctx context.Context) error {
	release, err := a.prepare(ctx)
	if err != nil {
		return err
	}
	defer release()
	// Nothing writes into the data dir once it is let go.
	defer a.launcher.wait()
	if a.tls != nil {
		kctx, stopKeeping := context.WithCancel(ctx)
		kept := make(chan struct{})
		go func() {
			defer close(kept)
			_ = a.tls.keep(kctx)
		}()
		defer func() {
			stopKeeping()
			<-kept
		}()
	}
	srv, err := a.api.serve()
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	a.log.Info("appliance started", "address", a.address, "group", a.groups.name(), "etcd_version", a.api.etcdVersion,
		"data_dir", a.cfg.DataDir)

	// run ends when the appliance is told to stop (ctx) or when the group
	// terminates the instance (the drainer's watch).
	run, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	if a.drainer != nil {
		go a.drainer.watch(run, stopRun)
	}
	if a.launchGate != nil {
		gated := make(chan struct{})
		go func() {
			defer close(gated)
			a.launchGate.run(run)
		}()
		defer func() {
			stopRun(nil)
			<-gated
		}()
	}
	var delay time.Duration
	for {
		if !a.etcdPortsFree(run) {
			if !sleep(run, portsRetry) {
				return a.stop(ctx, run, nil)
			}
			continue
		}
		proc, err := a.starter.run(run)
		if run.Err() != nil {
			return a.stop(ctx, run, proc)
		}
		if err != nil {
			pause := a.cfg.StartupInterval
			if a.portsBusy(err) {
				pause = portsRetry
			} else {
				a.startFailed(run, err)
			}
			if !sleep(run, pause) {
				return a.stop(ctx, run, nil)
			}
			continue
		}
		started := a.now()
		proc = a.supervisor.run(run, proc)
		if run.Err() != nil {
			return a.stop(ctx, run, proc)
		}
		delay = a.exited(proc, started, delay)
		if !sleep(run, delay) {
			return a.stop(ctx, run, nil)
		}
	}
}

// prepare takes the data dir, learns who the instance is and stops an etcd
// left over by an earlier run. release gives the data dir back.
func (a *Appliance) prepare(ctx context.Context) (release func(), err error) {
	if err := a.data.ensure(); err != nil {
		return nil, err
	}
	release, err = a.data.lock()
	if err != nil {
		return nil, err
	}
	if err := a.data.removeScratch(); err != nil {
		a.log.Warn("removing leftovers of an interrupted snapshot or restore", "err", err)
	}
	self, err := a.identify(ctx)
	if err != nil {
		release()
		return nil, err
	}
	a.identified(self)
	a.log = a.log.With("instance", self.ID)
	a.setPeer(func(p *cluster.PeerState) {
		*p = cluster.PeerState{InstanceID: self.ID, Address: a.address, EtcdVersion: a.api.etcdVersion,
			ClientURL: a.clientURL(), PeerURL: a.peerURL(), Phase: cluster.PhasePlanning}
	})
	ld, lerr := a.refreshLocal()
	if err := etcd.KillLeftover(a.log, a.data.pidFile(), a.data.etcd()); err != nil {
		release()
		return nil, fmt.Errorf("stopping an etcd left over by an earlier run: %w", err)
	}
	if err := a.prepareTLS(ctx, ld, lerr); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// prepareTLS sets up the instance's TLS (--tls) and refuses data of a
// cluster that speaks the other scheme. The peer state published before
// it names http URLs; it is published again here with the scheme in use.
func (a *Appliance) prepareTLS(ctx context.Context, ld cluster.LocalData, lerr error) error {
	t, err := a.setUpTLS(ctx, a.caStore, a.dnsSpec, false)
	if err != nil {
		return err
	}
	a.tls = t
	if t != nil {
		t.exportExpiry(a.metrics.registry)
	}
	if lerr == nil {
		if err := a.checkScheme(ld); err != nil {
			return err
		}
	}
	a.world.http.Transport = a.peerTransport()
	a.setPeer(func(p *cluster.PeerState) { p.ClientURL, p.PeerURL = a.clientURL(), a.peerURL() })
	return nil
}

// startFailed logs why a plan could not be applied: expected refusals while
// the cluster settles at Debug (etcd refuses new members until its members
// were connected for 5 s, or another joins), and the version gate's, which
// it logs itself once, anything else at Warn.
func (a *Appliance) startFailed(ctx context.Context, err error) {
	level := slog.LevelWarn
	if errors.Is(err, errPlanChanged) || errors.Is(err, rpctypes.ErrUnhealthy) || errors.Is(err, rpctypes.ErrTooManyLearners) ||
		errors.Is(err, cluster.ErrVersionRefused) {
		level = slog.LevelDebug
	}
	a.log.Log(ctx, level, "starting etcd failed; looking again", "err", err)
}

// exited records why etcd exited and returns the pause before planning
// again, backing off while etcd keeps exiting soon after it starts.
func (a *Appliance) exited(proc etcdProcess, started time.Time, delay time.Duration) time.Duration {
	exited := a.now()
	kind := etcd.ClassifyExit(proc.LastLines())
	a.metrics.etcdRestarts.WithLabelValues(string(kind)).Inc()
	a.setPeer(func(p *cluster.PeerState) { p.LastExit = string(kind) })
	if cluster.ExitMakesDataUnusable(string(kind)) {
		a.setUnusable(string(kind))
	}
	delay = a.restarts.Next(delay, started, exited)
	a.log.Warn("etcd exited; planning again", "err", proc.Err(), "kind", kind, "ran", exited.Sub(started).Round(time.Millisecond),
		"restart_in", delay)
	return delay
}

// identify asks the provider who this instance is, retrying until it answers.
func (a *Appliance) identify(ctx context.Context) (cluster.Instance, error) {
	for {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		self, err := a.ident.Self(ictx)
		cancel()
		if err == nil {
			if net.ParseIP(cmp.Or(self.BindAddress, self.Address)) == nil && a.cfg.Address == "" {
				return cluster.Instance{}, fmt.Errorf("instance %s has no usable address %q: set --address", self.ID, self.Address)
			}
			return self, nil
		}
		a.log.Warn("identity unknown; retrying", "err", err)
		if !sleep(ctx, a.cfg.StartupInterval) {
			return cluster.Instance{}, ctx.Err()
		}
	}
}

// stop ends Run. When the group terminates the instance, it drains and
// then idles until told to stop: etcd must never start again on an instance
// that left. Otherwise it stops etcd as on any shutdown.
func (a *Appliance) stop(ctx, run context.Context, proc etcdProcess) error {
	if ctx.Err() == nil && errors.Is(context.Cause(run), errTerminating) {
		a.drainer.drain(ctx, proc)
		<-ctx.Done()
		return nil
	}
	if proc != nil {
		a.shutdown(proc)
	}
	return nil
}

// shutdown stops etcd when the appliance is told to stop, leaving the
// cluster first when configured to.
func (a *Appliance) shutdown(proc etcdProcess) {
	a.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhaseLeaving })
	left := false
	if a.cfg.LeaveOnShutdown == config.LeaveAlways {
		if err := a.leaver.leave(context.Background(), "--leave-on-shutdown=always", false); err != nil {
			a.log.Warn("not leaving the cluster", "err", err)
		} else {
			left = true
		}
	}
	if err := proc.Stop(a.cfg.StopTimeout); err != nil {
		a.log.Warn("stopping etcd", "err", err)
	}
	a.setPeer(func(p *cluster.PeerState) { p.EtcdRunning, p.Phase = false, cluster.PhaseStopped })
	a.log.Info("etcd stopped", "left_cluster", left)
}
