// Package appliance runs the appliance's loops on one instance: the startup
// loop that gathers the world, asks cluster.DecideStartup what to do and does
// it; the supervision of the etcd child; the leader's housekeeping; leaving on
// shutdown; and the HTTP API that peers and operators read.
//
// Every cycle is gather (I/O) → decide (pure, internal/cluster) → apply (I/O).
package appliance

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/config"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
	snapstore "github.com/etcd-appliance/etcd-appliance/internal/snapshot"
)

// Options are the parts an Appliance is built from.
type Options struct {
	Config   *config.Config
	Logger   *slog.Logger
	Identity provider.Identity
	Group    provider.Group
	// EtcdCommand is the program and leading arguments that run etcd: the
	// appliance's own binary with the "etcd" subcommand, or --etcd-binary.
	EtcdCommand []string
	// EtcdVersion is the version of the etcd that EtcdCommand runs.
	EtcdVersion string
	// EtcdOutput receives the etcd child's log.
	EtcdOutput io.Writer
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
}

// Appliance is the daemon of one instance.
type Appliance struct {
	cfg     *config.Config
	log     *slog.Logger
	ident   provider.Identity
	group   provider.Group
	etcdCmd []string
	etcdVer string
	etcdOut io.Writer
	now     func() time.Time
	data    dataDir
	metrics *metrics
	http    *http.Client

	self    cluster.Instance
	address string
	ports   cluster.Ports

	mu    sync.Mutex
	peer  cluster.PeerState
	proc  *etcd.Process
	ready bool // the local member is started, healthy and a voter

	dns     provider.DNS
	dnsSpec *cluster.DNSSpec
	dnsMem  dnsMemory

	fw     provider.Firewall
	fwSpec *cluster.FirewallSpec
	fwMem  firewallMemory

	lifecycle provider.Lifecycle
	store     snapstore.Store
	retention snapstore.Retention
	dr        drMemory
	backup    backupMemory

	groupCache groupCache

	lastPlan cluster.StartupPlan
	hk       housekeepingMemory
	// unusable says why etcd could not run on the local data, from its last
	// exit; cleared when the data is wiped or etcd runs well on it again.
	unusable string
}

// New builds an appliance; Run starts it.
func New(opts Options) *Appliance {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	out := opts.EtcdOutput
	if out == nil {
		out = os.Stderr
	}
	cfg := opts.Config
	return &Appliance{
		cfg:       cfg,
		log:       opts.Logger,
		ident:     opts.Identity,
		group:     opts.Group,
		etcdCmd:   opts.EtcdCommand,
		etcdVer:   opts.EtcdVersion,
		etcdOut:   out,
		now:       now,
		data:      dataDir{root: cfg.DataDir},
		metrics:   newMetrics(opts.Registry),
		dns:       opts.DNS,
		dnsSpec:   opts.DNSSpec,
		fw:        opts.Firewall,
		fwSpec:    opts.FirewallSpec,
		lifecycle: opts.Lifecycle,
		store:     opts.Store,
		retention: cfg.Retention(),
		http:      &http.Client{Timeout: time.Second},
		ports:     cluster.Ports{Client: cfg.ClientPort, Peer: cfg.PeerPort, Metrics: cfg.MetricsPort, API: cfg.APIPort},
	}
}

// Run runs the appliance until ctx is cancelled, then stops etcd (leaving
// the cluster first with --leave-on-shutdown=always).
func (a *Appliance) Run(ctx context.Context) error {
	if err := a.data.ensure(); err != nil {
		return err
	}
	release, err := a.data.lock()
	if err != nil {
		return err
	}
	defer release()
	if err := a.data.removeScratch(); err != nil {
		a.log.Warn("removing leftovers of an interrupted snapshot or restore", "err", err)
	}
	self, err := a.identify(ctx)
	if err != nil {
		return err
	}
	a.self = self
	a.address = self.Address
	if a.cfg.Address != "" {
		a.address = a.cfg.Address
	}
	a.self.Address = a.address
	a.log = a.log.With("instance", self.ID)
	a.setPeer(func(p *cluster.PeerState) {
		*p = cluster.PeerState{
			InstanceID:  self.ID,
			Address:     a.address,
			EtcdVersion: a.etcdVer,
			ClientURL:   a.clientURL(),
			PeerURL:     a.peerURL(),
			Phase:       cluster.PhasePlanning,
		}
	})
	_, _ = a.refreshLocal()

	if err := etcd.KillLeftover(a.log, a.data.pidFile(), a.data.etcd()); err != nil {
		return fmt.Errorf("stopping an etcd left over by an earlier run: %w", err)
	}

	srv, err := a.serveAPI()
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	a.log.Info("appliance started", "address", a.address, "group", a.group.Name(), "etcd_version", a.etcdVer,
		"data_dir", a.cfg.DataDir)

	// run ends when the appliance is told to stop (ctx) or when the group
	// terminates the instance (watchLifecycle), which drains instead.
	run, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	if a.lifecycle != nil {
		go a.watchLifecycle(run, stopRun)
	}
	backoff := etcd.DefaultBackoff()
	var delay time.Duration
	for {
		proc, err := a.startEtcd(run)
		if run.Err() != nil {
			return a.stop(ctx, run, proc)
		}
		if err != nil {
			level := slog.LevelWarn
			if errors.Is(err, errPlanChanged) || errors.Is(err, rpctypes.ErrUnhealthy) || errors.Is(err, rpctypes.ErrTooManyLearners) {
				// Expected while the cluster settles (etcd refuses new members
				// until its members were connected for 5 s) or another joins.
				level = slog.LevelDebug
			}
			a.log.Log(ctx, level, "starting etcd failed; looking again", "err", err)
			if !sleep(run, a.cfg.StartupInterval) {
				return a.stop(ctx, run, nil)
			}
			continue
		}
		started := a.now()
		a.supervise(run, proc)
		if run.Err() != nil {
			return a.stop(ctx, run, proc)
		}
		exited := a.now()
		kind := etcd.ClassifyExit(proc.LastLines())
		a.metrics.etcdRestarts.WithLabelValues(string(kind)).Inc()
		// Only corruption makes the data unusable: a cluster-id mismatch is
		// also logged by healthy members that meet a foreign peer, so it is
		// left to the startup plan, which compares ids with the live cluster.
		if kind == etcd.ExitDataCorrupt {
			a.unusable = string(kind)
		}
		delay = backoff.Next(delay, started, exited)
		a.log.Warn("etcd exited; planning again", "err", proc.Err(), "kind", kind, "ran", exited.Sub(started).Round(time.Millisecond),
			"restart_in", delay)
		if !sleep(run, delay) {
			return a.stop(ctx, run, nil)
		}
	}
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

// startEtcd loops over the startup plan until etcd runs.
func (a *Appliance) startEtcd(ctx context.Context) (*etcd.Process, error) {
	a.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhasePlanning })
	for {
		in, err := a.gatherStartup(ctx)
		if err != nil {
			return nil, err
		}
		plan := cluster.DecideStartup(in)
		a.logPlan(plan)
		if plan.Action != cluster.Wait {
			a.metrics.plans.WithLabelValues(string(plan.Action)).Inc()
			a.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhaseStarting })
			return a.applyStartup(ctx, in, plan)
		}
		if !sleep(ctx, a.cfg.StartupInterval) {
			return nil, ctx.Err()
		}
	}
}

// logPlan logs a plan once at Info; repeats of the same plan go to Debug.
func (a *Appliance) logPlan(plan cluster.StartupPlan) {
	level := slog.LevelInfo
	if plan.Action == a.lastPlan.Action && plan.Reason == a.lastPlan.Reason {
		level = slog.LevelDebug
	}
	a.lastPlan = plan
	a.log.Log(context.Background(), level, "startup plan", "action", plan.Action, "reason", plan.Reason,
		"remove_member", plan.RemoveMember, "wipe", plan.Wipe, "seeder", plan.Seeder)
}

func (a *Appliance) clientURL() string { return a.ports.ClientURL("http", a.address) }
func (a *Appliance) peerURL() string   { return a.ports.PeerURL("http", a.address) }

func (a *Appliance) setPeer(f func(*cluster.PeerState)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(&a.peer)
}

func (a *Appliance) peerState() cluster.PeerState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.peer
}

// refreshLocal reads the data dir and publishes what it holds. When it
// can't be read, the instance publishes that it has data: unknown is never
// reported as empty, so nobody creates a cluster past it.
func (a *Appliance) refreshLocal() (cluster.LocalData, error) {
	ld, err := a.data.local()
	if err != nil {
		a.log.Warn("reading data dir", "err", err)
		a.setPeer(func(p *cluster.PeerState) { p.HasData = true })
		return ld, err
	}
	a.setPeer(func(p *cluster.PeerState) {
		p.HasData = ld.Exists
		p.ClusterID, p.MemberID = ld.ClusterID, ld.MemberID
		if ld.Revision > p.Revision || !ld.Exists {
			p.Revision = ld.Revision
		}
		// An accepted offer stays published until the cluster had a leader,
		// so members that have not started yet can still accept it.
		p.Offer = ld.Offer
		p.Voters = ld.Voters
	})
	return ld, nil
}

func (a *Appliance) setReady(ready bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ready = ready
}

func (a *Appliance) isReady() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ready
}

// clusterToken makes every created cluster's id unique, so that members of
// an earlier cluster on the same addresses can never be mistaken for members
// of a new one.
func clusterToken(name string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return name + "-" + hex.EncodeToString(b)
}

func (a *Appliance) clusterName() string {
	if a.cfg.ClusterName != "" {
		return a.cfg.ClusterName
	}
	return a.group.Name()
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func portString(p int) string { return strconv.Itoa(p) }

var errPlanChanged = errors.New("the plan changed under the membership lock")
