package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
)

// Timeouts of the startup steps.
const (
	groupTimeout     = 5 * time.Second
	joinLockTimeout  = 30 * time.Second
	etcdReadyTimeout = 60 * time.Second
	promoteTimeout   = 60 * time.Second
	// publishGrace is how long a joined etcd may take to serve clients
	// before it is restarted to publish itself again.
	publishGrace = 1500 * time.Millisecond
)

// gatherStartup collects the inputs of the startup plan.
func (a *Appliance) gatherStartup(ctx context.Context) (cluster.StartupInputs, error) {
	in := cluster.StartupInputs{Self: a.self, SelfPeerURL: a.peerURL()}
	group, err := a.listGroup(ctx, startupListEvery)
	if err != nil {
		a.log.Debug("group listing failed", "err", err)
	} else {
		in.GroupKnown, in.Group = true, group
		a.setPeer(func(p *cluster.PeerState) { p.GroupView = cluster.GroupView(group) })
	}
	a.admitSelf(ctx)
	local, err := a.localInputs()
	if err != nil {
		// Unknown is not empty: never plan on a data dir that can't be read.
		return in, err
	}
	in.Local = local
	in.Peers = a.askPeers(ctx, in.Group)
	in.Peers[a.self.ID] = cluster.PeerAnswer{Reachable: true, State: a.peerState()}
	in.Cluster = a.findLiveCluster(ctx, in.Peers)
	a.recoveryInputs(ctx, &in)
	return in, ctx.Err()
}

// localInputs is the local data as the startup plan sees it, including
// what etcd's last exit said about it.
func (a *Appliance) localInputs() (cluster.LocalData, error) {
	ld, err := a.refreshLocal()
	if err == nil && ld.Exists {
		ld.Unusable = a.unusable
	}
	return ld, err
}

// askPeers asks every other group instance for its state, concurrently.
func (a *Appliance) askPeers(ctx context.Context, group []cluster.Instance) map[string]cluster.PeerAnswer {
	answers := map[string]cluster.PeerAnswer{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, inst := range group {
		if inst.ID == a.self.ID || !inst.State.InGroup() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := a.askPeer(ctx, inst.Address)
			if err != nil {
				a.log.Debug("peer did not answer", "peer", inst.ID, "err", err)
				return
			}
			mu.Lock()
			answers[inst.ID] = cluster.PeerAnswer{Reachable: true, State: st}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return answers
}

func (a *Appliance) askPeer(ctx context.Context, address string) (cluster.PeerState, error) {
	url := "http://" + net.JoinHostPort(address, portString(a.ports.API)) + "/v1/peer"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return cluster.PeerState{}, err
	}
	resp, err := a.http.Do(req)
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
func (a *Appliance) findLiveCluster(ctx context.Context, peers map[string]cluster.PeerAnswer) *cluster.ClusterView {
	var endpoints []string
	for _, p := range peers {
		if p.Reachable && p.State.EtcdRunning && p.State.HasLeader && p.State.ClientURL != "" {
			endpoints = append(endpoints, p.State.ClientURL)
		}
	}
	if len(endpoints) == 0 {
		return nil
	}
	c, err := newClient(endpoints)
	if err != nil {
		a.log.Debug("no live cluster", "err", err)
		return nil
	}
	defer c.Close()
	// A member with quorum answers in milliseconds; waiting longer on one
	// without only delays the plan, whose safety doesn't depend on it.
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	view, err := clusterView(lctx, c)
	if err != nil {
		a.log.Debug("no live cluster", "endpoints", endpoints, "err", err)
		return nil
	}
	return view
}

// applyStartup carries out a startup plan and returns the running etcd.
func (a *Appliance) applyStartup(ctx context.Context, in cluster.StartupInputs, plan cluster.StartupPlan) (*etcd.Process, error) {
	spec := etcd.ServerSpec{
		Name:                    a.self.ID,
		DataDir:                 a.data.etcd(),
		Address:                 a.address,
		ListenAddress:           a.bindAddress(),
		ClientPort:              a.ports.Client,
		PeerPort:                a.ports.Peer,
		MetricsPort:             a.ports.Metrics,
		InitialCluster:          []etcd.NamedPeer{{Name: a.self.ID, PeerURL: a.peerURL()}},
		InitialClusterState:     "existing",
		ClusterToken:            a.clusterName(),
		QuotaBackendBytes:       a.cfg.QuotaBackendBytes,
		AutoCompactionRetention: a.cfg.AutoCompactionRetention,
		ExtraFlags:              a.cfg.EtcdFlags.Strings(),
	}
	switch plan.Action {
	case cluster.StartOnData:
		return a.launch(ctx, spec)
	case cluster.StartMember:
		// With data, etcd takes the membership from its WAL, not the flags.
		return a.launch(ctx, spec)
	case cluster.Bootstrap, cluster.BootstrapMember:
		offer := *plan.Offer
		if plan.Action == cluster.Bootstrap {
			offer.Token = clusterToken(a.clusterName())
		}
		// Recorded before anyone can see it: whoever accepts the offer may
		// start etcd on it, and this instance must then start on it too,
		// even after a crash.
		if err := a.data.writeOffer(&offer); err != nil {
			return nil, err
		}
		if !in.Local.Exists {
			// The offer fixes the ids etcd will create; recording them now
			// means data etcd creates is never of unknown identity.
			cid, mid, err := offerIdentity(&offer, a.self.ID)
			if err != nil {
				return nil, err
			}
			var voters []string
			for _, m := range offer.Members {
				voters = append(voters, m.Name)
			}
			slices.Sort(voters)
			if err := a.data.writeMarker(marker{ClusterID: cid, MemberID: mid, Name: a.self.ID, UpdatedAt: a.now(), Voters: voters}); err != nil {
				return nil, err
			}
		}
		a.setPeer(func(p *cluster.PeerState) { p.Offer = &offer })
		spec.InitialClusterState = etcd.StateNew
		spec.ClusterToken = offer.Token
		spec.InitialCluster = nil
		for _, m := range offer.Members {
			spec.InitialCluster = append(spec.InitialCluster, etcd.NamedPeer{Name: m.Name, PeerURL: m.PeerURL})
		}
		return a.launch(ctx, spec)
	case cluster.Join, cluster.Rejoin, cluster.ReplaceStale, cluster.ResumeJoin:
		return a.join(ctx, in, plan, spec)
	case cluster.Recover:
		return a.recover(ctx, plan, spec)
	case cluster.Restore:
		return a.restore(ctx, in, plan, spec)
	default:
		return nil, fmt.Errorf("unknown startup action %q", plan.Action)
	}
}

// initialCluster lists every member for --initial-cluster, naming this
// instance's entry, as etcd checks it against the live membership.
func initialCluster(ms []cluster.Member, self, selfPeerURL string) []etcd.NamedPeer {
	var out []etcd.NamedPeer
	for _, m := range ms {
		name := m.Name
		switch {
		case m.HasPeerURL(selfPeerURL):
			name = self
		case name == "":
			// An added member that never started has no name yet; etcd
			// matches the entries by peer URL, so any unique name does.
			name = "unstarted-" + m.ID.String()
		}
		for _, u := range m.PeerURLs {
			out = append(out, etcd.NamedPeer{Name: name, PeerURL: u})
		}
	}
	return out
}

// join makes this instance a member of the live cluster: under the
// cluster-wide membership lock it re-checks the plan, removes the member the plan
// names, adds itself as a learner, starts etcd and waits for its promotion.
func (a *Appliance) join(ctx context.Context, in cluster.StartupInputs, plan cluster.StartupPlan, spec etcd.ServerSpec) (*etcd.Process, error) {
	c, err := newClient(clientURLs(in.Cluster.Members))
	if err != nil {
		return nil, err
	}
	defer c.Close()

	unlock, err := a.lockMembership(ctx, c, joinLockTimeout)
	if err != nil {
		return nil, err
	}
	defer unlock()

	// The world may have changed while we waited: decide again on fresh inputs.
	view, err := clusterView(ctx, c)
	if err != nil {
		return nil, err
	}
	in.Cluster = view
	group, gerr := a.listGroup(ctx, startupListEvery)
	in.GroupKnown, in.Group = gerr == nil, group
	if in.Local, err = a.localInputs(); err != nil {
		return nil, err
	}
	if again := cluster.DecideStartup(in); again.Action != plan.Action || again.RemoveMember != plan.RemoveMember {
		a.log.Info("plan changed under the membership lock", "was", plan.Action, "now", again.Action, "reason", again.Reason)
		return nil, errPlanChanged
	}

	if plan.RemoveMember != 0 {
		rctx, cancel := context.WithTimeout(ctx, requestTimout)
		_, err := c.MemberRemove(rctx, uint64(plan.RemoveMember))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("removing member %s: %w", plan.RemoveMember, err)
		}
		a.metrics.removals.Inc()
		a.log.Info("member removed before joining", "member", plan.RemoveMember, "reason", plan.Reason)
	}
	if plan.Wipe {
		aside, err := a.data.wipe(a.now(), view.ClusterID)
		if err != nil {
			return nil, err
		}
		a.unusable = ""
		if _, err := a.refreshLocal(); err != nil {
			return nil, err
		}
		a.log.Info("local data set aside", "to", aside, "reason", plan.Reason)
	}

	var memberID cluster.ID
	learner := true
	ms := view.Members
	if plan.Action == cluster.ResumeJoin {
		for _, m := range ms {
			if m.HasPeerURL(a.peerURL()) {
				memberID, learner = m.ID, m.IsLearner
			}
		}
	} else {
		actx, cancel := context.WithTimeout(ctx, requestTimout)
		resp, err := c.MemberAddAsLearner(actx, []string{a.peerURL()})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("adding %s as a learner: %w", a.peerURL(), err)
		}
		memberID, ms = cluster.ID(resp.Member.ID), members(resp.Members)
		a.log.Info("added as learner", "member", memberID, "cluster", view.ClusterID)
	}
	// Record whose data etcd is about to create, so that a crash before the
	// member first answers does not leave data of unknown identity.
	if err := a.data.writeMarker(marker{ClusterID: view.ClusterID, MemberID: memberID, Name: a.self.ID, UpdatedAt: a.now(),
		Voters: voterNames(ms)}); err != nil {
		return nil, err
	}
	spec.InitialCluster = initialCluster(ms, a.self.ID, a.peerURL())
	proc, err := a.launch(ctx, spec)
	if err != nil {
		return nil, err
	}
	if !a.awaitServing(ctx, c, proc, publishGrace) {
		// etcd sends a joiner the leader's snapshot and, applying it, resets
		// its peer connections; the member's first request to publish itself
		// can be lost with them, and etcd retries it only after its 7 s
		// request timeout. A restart on the data it has now publishes at once.
		a.log.Info("joined etcd does not serve yet; restarting it on its data to publish again", "member", memberID, "after", publishGrace)
		if err := proc.Stop(a.cfg.StopTimeout); err != nil {
			a.log.Warn("stopping etcd", "err", err)
		}
		if proc, err = a.launch(ctx, spec); err != nil {
			return nil, err
		}
	}
	if !learner {
		// A voter of the initial membership that had not started yet.
		return proc, nil
	}
	if err := a.awaitPromotion(ctx, c, proc, memberID); err != nil {
		// etcd runs as a learner; the leader's housekeeping promotes it later.
		a.log.Warn("not promoted yet; the leader will promote when in sync", "member", memberID, "err", err)
	}
	return proc, nil
}

// awaitServing waits up to grace for the local etcd to serve clients.
func (a *Appliance) awaitServing(ctx context.Context, c *clientv3.Client, proc *etcd.Process, grace time.Duration) bool {
	_, err := awaitStatus(ctx, c, a.clientURL(), proc, grace, func(*clientv3.StatusResponse) bool { return true })
	return err == nil
}

// awaitStatus polls the status of the etcd proc at url through c until
// done accepts it, and returns that status. It fails when etcd exits or
// within does not suffice; the error then carries the last status error.
func awaitStatus(ctx context.Context, c *clientv3.Client, url string, proc *etcd.Process, within time.Duration,
	done func(*clientv3.StatusResponse) bool) (*clientv3.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		sctx, scancel := context.WithTimeout(ctx, statusTimeout)
		st, err := c.Status(sctx, url)
		scancel()
		if err == nil && done(st) {
			return st, nil
		}
		select {
		case <-proc.Done():
			return nil, fmt.Errorf("etcd exited: %v", proc.Err())
		case <-ctx.Done():
			return nil, fmt.Errorf("not there within %s (last status error: %v)", within, err)
		case <-tick.C:
		}
	}
}

// awaitPromotion promotes this learner as soon as etcd accepts it.
func (a *Appliance) awaitPromotion(ctx context.Context, c *clientv3.Client, proc *etcd.Process, id cluster.ID) error {
	ctx, cancel := context.WithTimeout(ctx, promoteTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		// Promote only a member that serves clients: etcd promotes an
		// in-sync learner whose own publish request has not returned yet,
		// and that request then waits out its 7 s timeout before the member
		// serves anything.
		pctx, pcancel := context.WithTimeout(ctx, requestTimout)
		_, err := c.Status(pctx, a.clientURL())
		if err == nil {
			_, err = c.MemberPromote(pctx, uint64(id))
		}
		pcancel()
		switch {
		case err == nil:
			a.log.Info("promoted to voter", "member", id)
			return nil
		case errors.Is(err, rpctypes.ErrMemberNotLearner):
			a.log.Info("promoted to voter by the leader", "member", id)
			return nil
		case errors.Is(err, rpctypes.ErrMemberNotFound):
			return fmt.Errorf("member %s was removed while joining", id)
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("promoting %s: %w", id, lastErr)
		case <-proc.Done():
			return errors.New("etcd exited before promotion")
		case <-tick.C:
		}
	}
}

// launch starts the etcd child.
func (a *Appliance) launch(ctx context.Context, spec etcd.ServerSpec) (*etcd.Process, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	argv := append(append([]string(nil), a.etcdCmd[1:]...), etcd.Args(spec)...)
	a.log.Info("starting etcd", "state", spec.InitialClusterState, "initial_cluster", spec.InitialCluster)
	proc, err := etcd.Start(ctx, a.log, a.etcdCmd[0], argv, os.Environ(), a.etcdOut, a.data.pidFile())
	if err != nil {
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	a.setPeer(func(p *cluster.PeerState) { p.EtcdRunning = true })
	return proc, nil
}
