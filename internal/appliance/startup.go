package appliance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
)

// etcdProcess is a running etcd child (*etcd.Process).
type etcdProcess interface {
	Done() <-chan struct{}
	Err() error
	LastLines() []string
	Stop(grace time.Duration) error
}

// etcdLauncher starts the etcd child as a launch says (*launcher; a fake
// in the tests of the apply steps).
type etcdLauncher interface {
	launch(ctx context.Context, launch cluster.Launch) (etcdProcess, error)
}

// launcher starts the etcd child of the instance.
type launcher struct {
	*node
	// etcdCmd is the program and leading arguments that run etcd.
	etcdCmd []string
	etcdOut io.Writer
}

// spec is the etcd server of this instance for a launch.
func (l *launcher) spec(launch cluster.Launch) etcd.ServerSpec {
	spec := etcd.ServerSpec{
		Name:                    l.self.ID,
		DataDir:                 l.data.etcd(),
		Address:                 l.address,
		ListenAddress:           l.bindAddress(),
		ClientPort:              l.ports.Client,
		PeerPort:                l.ports.Peer,
		MetricsPort:             l.ports.Metrics,
		InitialClusterState:     launch.State,
		ClusterToken:            launch.Token,
		ForceNewCluster:         launch.ForceNewCluster,
		QuotaBackendBytes:       l.cfg.QuotaBackendBytes,
		AutoCompactionRetention: l.cfg.AutoCompactionRetention,
		ExtraFlags:              l.cfg.EtcdFlags.Strings(),
		InitialCluster:          slices.Clone(launch.InitialCluster),
	}
	return spec
}

// launch starts etcd as the launch says.
func (l *launcher) launch(ctx context.Context, launch cluster.Launch) (etcdProcess, error) {
	spec := l.spec(launch)
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	l.log.Info("starting etcd", "state", spec.InitialClusterState, "initial_cluster", spec.InitialCluster,
		"force_new_cluster", spec.ForceNewCluster)
	proc, err := l.start(ctx, spec, l.etcdOut, l.data.pidFile())
	if err != nil {
		return nil, err
	}
	l.setPeer(func(p *cluster.PeerState) { p.EtcdRunning = true })
	return proc, nil
}

// start runs an etcd server; the throwaway etcd that verifies snapshots
// starts here too.
func (l *launcher) start(ctx context.Context, spec etcd.ServerSpec, out io.Writer, pidFile string) (*etcd.Process, error) {
	argv := append(append([]string(nil), l.etcdCmd[1:]...), etcd.Args(spec)...)
	proc, err := etcd.Start(ctx, l.log, l.etcdCmd[0], argv, os.Environ(), out, pidFile)
	if err != nil {
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	return proc, nil
}

// world is how an instance looks at the others: it asks their appliances
// for their state and any live member for the cluster's membership.
type world struct {
	*node
	http *http.Client
}

// askPeers asks every other group instance for its state, concurrently.
func (w *world) askPeers(ctx context.Context, group []cluster.Instance) map[string]cluster.PeerAnswer {
	answers := map[string]cluster.PeerAnswer{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, inst := range group {
		if inst.ID == w.self.ID || !inst.State.InGroup() {
			continue
		}
		wg.Go(func() {
			st, err := w.askPeer(ctx, inst.Address)
			if err != nil {
				w.log.Debug("peer did not answer", "peer", inst.ID, "err", err)
				return
			}
			mu.Lock()
			answers[inst.ID] = cluster.PeerAnswer{Reachable: true, State: st}
			mu.Unlock()
		})
	}
	wg.Wait()
	return answers
}

func (w *world) askPeer(ctx context.Context, address string) (cluster.PeerState, error) {
	url := "http://" + apiAddress(address, w.ports.API) + "/v1/peer"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return cluster.PeerState{}, err
	}
	resp, err := w.http.Do(req)
	if err != nil {
		return cluster.PeerState{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return cluster.PeerState{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var st cluster.PeerState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return cluster.PeerState{}, fmt.Errorf("GET %s: %w", url, err)
	}
	return st, nil
}

// findLiveCluster reads the member list from any peer that runs etcd.
func (w *world) findLiveCluster(ctx context.Context, peers map[string]cluster.PeerAnswer) *cluster.ClusterView {
	var endpoints []string
	for _, p := range peers {
		if p.Reachable && p.State.EtcdRunning && p.State.HasLeader && p.State.ClientURL != "" {
			endpoints = append(endpoints, p.State.ClientURL)
		}
	}
	if len(endpoints) == 0 {
		return nil
	}
	c, err := w.dial(endpoints)
	if err != nil {
		w.log.Debug("no live cluster", "err", err)
		return nil
	}
	defer c.Close()
	// A member with quorum answers in milliseconds; waiting longer on one
	// without only delays the plan, whose safety doesn't depend on it.
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	view, err := c.Members(lctx)
	if err != nil {
		w.log.Debug("no live cluster", "endpoints", endpoints, "err", err)
		return nil
	}
	return view
}

// starter is the startup loop (§4.2): it gathers the world, asks
// cluster.DecideStartup what to do and does it, until etcd runs.
type starter struct {
	*node
	world    *world
	launcher etcdLauncher
	recovery *recovery
	firewall *firewallKeeper

	// lastPlan is the plan logged last: repeats go to Debug.
	lastPlan cluster.StartupPlan
	// The bounds of a join.
	lockWait, promoteWait time.Duration
	// publishGrace is how long a joined etcd may take to serve clients
	// before it is restarted to publish itself again.
	publishGrace time.Duration
}

// run loops over the startup plan until etcd runs.
func (s *starter) run(ctx context.Context) (etcdProcess, error) {
	s.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhasePlanning })
	for {
		in, err := s.gather(ctx)
		if err != nil {
			return nil, err
		}
		plan := cluster.DecideStartup(in)
		s.logPlan(plan)
		if plan.Action != cluster.Wait {
			s.metrics.plans.WithLabelValues(string(plan.Action)).Inc()
			s.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhaseStarting })
			return s.apply(ctx, in, plan)
		}
		if !sleep(ctx, s.cfg.StartupInterval) {
			return nil, ctx.Err()
		}
	}
}

// gather collects the inputs of the startup plan.
func (s *starter) gather(ctx context.Context) (cluster.StartupInputs, error) {
	in := cluster.StartupInputs{Self: s.self, SelfPeerURL: s.peerURL()}
	group, err := s.groups.list(ctx, startupListEvery)
	if err != nil {
		s.log.Debug("group listing failed", "err", err)
	} else {
		in.GroupKnown, in.Group = true, group
		s.setPeer(func(p *cluster.PeerState) { p.GroupView = cluster.GroupView(group) })
	}
	s.firewall.admitSelf(ctx)
	local, err := s.localInputs()
	if err != nil {
		// Unknown is not empty: never plan on a data dir that can't be read.
		return in, err
	}
	in.Local = local
	in.Peers = s.world.askPeers(ctx, in.Group)
	in.Peers[s.self.ID] = cluster.PeerAnswer{Reachable: true, State: s.peerState()}
	in.Cluster = s.world.findLiveCluster(ctx, in.Peers)
	in.Recovery = s.recovery.inputs(ctx, in)
	return in, ctx.Err()
}

// logPlan logs a plan once at Info; repeats of the same plan go to Debug.
func (s *starter) logPlan(plan cluster.StartupPlan) {
	level := slog.LevelInfo
	if plan.Action == s.lastPlan.Action && plan.Reason == s.lastPlan.Reason {
		level = slog.LevelDebug
	}
	s.lastPlan = plan
	s.log.Log(context.Background(), level, "startup plan", "action", plan.Action, "reason", plan.Reason,
		"remove_member", plan.RemoveMember, "wipe", plan.Wipe, "seeder", plan.Seeder)
}

// apply carries out a startup plan and returns the running etcd.
func (s *starter) apply(ctx context.Context, in cluster.StartupInputs, plan cluster.StartupPlan) (etcdProcess, error) {
	switch plan.Action {
	case cluster.StartOnData, cluster.StartMember:
		// With data, etcd takes the membership from its WAL, not the flags.
		return s.launcher.launch(ctx, cluster.LaunchOnData(s.self.ID, s.peerURL(), s.clusterName()))
	case cluster.Bootstrap, cluster.BootstrapMember:
		return s.bootstrap(ctx, in, plan)
	case cluster.Join, cluster.Rejoin, cluster.ReplaceStale, cluster.ResumeJoin:
		return s.join(ctx, in, plan)
	case cluster.Recover:
		return s.recovery.recover(ctx, plan, cluster.NewestKnownRevision(in))
	case cluster.Restore:
		return s.recovery.restore(ctx, plan, cluster.NewestKnownRevision(in))
	default:
		return nil, fmt.Errorf("unknown startup action %q", plan.Action)
	}
}

// bootstrap starts etcd as a member of a new cluster: the plan's offer, or
// for the seeder a new offer with a fresh token.
func (s *starter) bootstrap(ctx context.Context, in cluster.StartupInputs, plan cluster.StartupPlan) (etcdProcess, error) {
	offer := *plan.Offer
	if plan.Action == cluster.Bootstrap {
		offer.Token = clusterToken(s.clusterName())
	}
	// Recorded before anyone can see it: whoever accepts the offer may
	// start etcd on it, and this instance must then start on it too, even
	// after a crash.
	if err := s.data.writeOffer(&offer); err != nil {
		return nil, err
	}
	launch := cluster.LaunchOffer(&offer)
	if !in.Local.Exists {
		// The offer fixes the ids etcd will create; recording them now
		// means data etcd creates is never of unknown identity.
		cid, mid, err := offerIdentity(&offer, s.self.ID)
		if err != nil {
			return nil, err
		}
		if err := s.data.writeMarker(marker{ClusterID: cid, MemberID: mid, Name: s.self.ID, UpdatedAt: s.now(),
			Voters: launch.Voters}); err != nil {
			return nil, err
		}
	}
	s.setPeer(func(p *cluster.PeerState) { p.Offer = &offer })
	return s.launcher.launch(ctx, launch)
}
