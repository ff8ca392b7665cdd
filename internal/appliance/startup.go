package appliance

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
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
	// launchRelease starts release r instead of the current one.
	launchRelease(ctx context.Context, launch cluster.Launch, r etcdRelease) (etcdProcess, error)
	// currentRelease is the release that launch starts.
	currentRelease() etcdRelease
}

// launcher starts the etcd child of the instance.
type launcher struct {
	*node
	// etcdCmd is the program and leading arguments that run etcd.
	etcdCmd []string
	// current is the release the appliance is configured to run (etcdCmd).
	current etcdRelease
	// checkPorts checks that etcd can listen on its ports before it
	// starts (etcd.CheckPorts); nil: they are not checked.
	checkPorts func(ctx context.Context, ports []etcd.Port) error

	// mu orders the records of the release that starts on the data.
	mu sync.Mutex
	// keeping is set while a copy of the current release is being made;
	// kept is waited for before the data dir is let go.
	keeping bool
	kept    sync.WaitGroup
}

// wait waits for a copy of etcd being kept in the data dir.
func (l *launcher) wait() { l.kept.Wait() }

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
		TLS:                     l.etcdTLSFiles(),
		PeerPlaintext:           l.tls != nil && l.peerScheme() == "http",
		ClientPlaintext:         l.tls != nil && (l.peersMoving() || l.cfg.TLSPlaintextClients || l.cfg.TLSPlaintextPeers),
	}
	if launch.ClientPort != 0 {
		spec.ClientPort = launch.ClientPort
	}
	spec.HeartbeatMS, spec.ElectionMS = launch.Timing.HeartbeatMS, launch.Timing.ElectionMS
	return spec
}

// launch starts the current etcd as the launch says.
func (l *launcher) launch(ctx context.Context, launch cluster.Launch) (etcdProcess, error) {
	return l.launchRelease(ctx, launch, l.current)
}

// launchRelease starts release r of etcd as the launch says: the current
// one, or during an in-place upgrade the kept copy of the one the data last
// ran with. The release is recorded before etcd starts, since once started
// it may have changed the data; a copy of the current one is then kept.
func (l *launcher) launchRelease(ctx context.Context, launch cluster.Launch, r etcdRelease) (etcdProcess, error) {
	if launch.Timing.IsZero() {
		launch.Timing = l.etcdTiming()
	}
	spec := l.spec(launch)
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	clientSetBy := clientPortFlag
	if launch.ClientPort != 0 {
		clientSetBy = privateClientPort
	}
	if err := l.portsFree(ctx, spec, clientSetBy); err != nil {
		// As it is: the check before the plan words it so, and the
		// appliance logs a change of its words (reportPorts).
		return nil, err
	}
	if err := l.record(r); err != nil {
		return nil, err
	}
	if err := writeFileJSON(l.data.timingFile(), launch.Timing); err != nil {
		return nil, err
	}
	l.log.Info("starting etcd", "state", spec.InitialClusterState, "initial_cluster", spec.InitialCluster,
		"force_new_cluster", spec.ForceNewCluster, "etcd_version", r.Version, "timing", launch.Timing)
	if rot := l.rotation(); rot != nil {
		rot.etcdStarting()
	}
	proc, err := l.startCommand(ctx, r.Command, spec, l.log, l.data.pidFile())
	if err != nil {
		return nil, err
	}
	l.setPeer(func(p *cluster.PeerState) {
		p.EtcdRunning, p.Timing = true, nil
		if !launch.Timing.IsZero() {
			t := launch.Timing
			p.Timing = &t
		}
	})
	if r.Version == l.current.Version {
		l.keepCurrent()
	}
	return proc, nil
}

func (l *launcher) currentRelease() etcdRelease { return l.current }

// record records the release that starts on the data: with its kept copy
// when there is one, else with no command (no copy to swap back to yet).
func (l *launcher) record(r etcdRelease) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := etcdRelease{Version: r.Version}
	if kept, ok := l.data.keptRelease(r); ok {
		rec = kept
	}
	return l.data.recordRelease(rec)
}

// keepCurrent copies the current release into the data dir in the
// background, once, and records the copy if the current release is still
// the one that last started on the data.
func (l *launcher) keepCurrent() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keeping || len(l.current.Command) == 0 {
		return
	}
	if _, ok := l.data.keptRelease(l.current); ok {
		return
	}
	l.keeping = true
	l.kept.Add(1)
	go func() {
		defer l.kept.Done()
		start := l.now()
		kept, err := l.data.keep(l.current)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.keeping = false
		if err != nil {
			l.log.Warn("keeping a copy of etcd for a later in-place upgrade", "err", err)
			return
		}
		if last, ok, err := l.data.lastRelease(); err == nil && ok && last.Version == kept.Version {
			if err := l.data.recordRelease(kept); err != nil {
				l.log.Warn("recording the kept copy of etcd", "err", err)
				return
			}
		}
		l.log.Debug("etcd kept for a later in-place upgrade", "etcd_version", kept.Version, "path", kept.Command[0],
			"took", l.now().Sub(start).Round(time.Millisecond))
	}()
}

// start runs an etcd server of the current release; the throwaway etcd
// that verifies snapshots starts here too. etcdLog receives etcd's own lines
// (nil: only kept for the reason of an exit).
func (l *launcher) start(ctx context.Context, spec etcd.ServerSpec, etcdLog *slog.Logger, pidFile string) (*etcd.Process, error) {
	return l.startCommand(ctx, l.etcdCmd, spec, etcdLog, pidFile)
}

// startCommand runs an etcd server with the program and leading arguments
// of command.
func (l *launcher) startCommand(ctx context.Context, command []string, spec etcd.ServerSpec, etcdLog *slog.Logger, pidFile string) (*etcd.Process, error) {
	argv := append(append([]string(nil), command[1:]...), etcd.Args(spec)...)
	proc, err := etcd.Start(ctx, l.log, command[0], argv, os.Environ(), etcdLog, pidFile)
	if err != nil {
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	return proc, nil
}

// world is how an instance looks at the others: it asks their appliances
// for their state and any live member for the cluster's membership. It
// remembers the client URLs of every member it heard of.
type world struct {
	*node
	http *http.Client
	// reachable keeps the endpoints worth asking (listening).
	reachable func(ctx context.Context, endpoints []string) []string

	mu   sync.Mutex
	seen map[string]bool
	// ignored is the last reason each peer's answer was ignored for.
	ignored map[string]string
	// refused says that a peer refused the connection in the last round:
	// its appliance is not serving yet.
	refused bool
}

// A group whose instances start at once finds some peers' APIs not up yet
// (connection refused): for quickAskFor after it starts planning, an
// instance asks again after quickAskEvery rather than --startup-interval,
// so that the bootstrap does not wait a whole interval for an appliance
// that came up a few milliseconds late. A refused connection costs
// nothing to repeat.
const (
	quickAskEvery = 200 * time.Millisecond
	quickAskFor   = 10 * time.Second
)

// refusedLastRound says whether a peer refused the connection in the last
// round of askPeers.
func (w *world) refusedLastRound() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.refused
}

// listenTimeout bounds the TCP connect that tells whether anything listens
// on an endpoint at all.
const listenTimeout = 300 * time.Millisecond

// listening keeps the endpoints where something accepts a TCP connection,
// asked concurrently: a client asks the dead ones for its whole deadline,
// and the places a lost cluster lived are mostly dead. A live member,
// however slow, accepts the connection, so it is never left out.
func listening(ctx context.Context, endpoints []string) []string {
	ok := make([]bool, len(endpoints))
	var wg sync.WaitGroup
	for i, e := range endpoints {
		u, err := url.Parse(e)
		if err != nil {
			continue
		}
		wg.Go(func() {
			d := net.Dialer{Timeout: listenTimeout}
			if conn, err := d.DialContext(ctx, "tcp", u.Host); err == nil {
				conn.Close()
				ok[i] = true
			}
		})
	}
	wg.Wait()
	var out []string
	for i, e := range endpoints {
		if ok[i] {
			out = append(out, e)
		}
	}
	return out
}

// askPeers asks every other listed instance that is not terminated for its
// state, concurrently: those out of service too (stopped, Standby), whose
// members may still run the cluster.
func (w *world) askPeers(ctx context.Context, group []cluster.Instance) map[string]cluster.PeerAnswer {
	answers := map[string]cluster.PeerAnswer{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	refused := false
	for _, inst := range group {
		if inst.ID == w.self.ID || inst.State == cluster.InstanceTerminated {
			continue
		}
		wg.Go(func() {
			st, rtt, err := w.askPeer(ctx, inst.Address)
			a := cluster.PeerAnswer{Reachable: true, State: st, RTT: rtt}
			if err != nil {
				if errors.Is(err, syscall.ECONNREFUSED) {
					mu.Lock()
					refused = true
					mu.Unlock()
				}
				w.unanswered(inst.ID, err)
				why := w.ignoredBecause(err)
				if why == "" {
					return
				}
				// Not an answer, but the plan says whose and why.
				a = cluster.PeerAnswer{Ignored: why}
			}
			mu.Lock()
			answers[inst.ID] = a
			mu.Unlock()
		})
	}
	wg.Wait()
	w.mu.Lock()
	w.refused = refused
	w.mu.Unlock()
	for _, a := range answers {
		if a.State.ClusterID != 0 && a.State.ClientURL != "" {
			w.remember(a.State.ClientURL)
		}
	}
	return answers
}

// ignoredBecause is why the error of asking a peer means that something
// answered at its address and the answer is ignored, "" when nothing
// answered (not started, gone). A server whose first bytes are no TLS
// record is plaintext (pki's transport wraps that as an untrusted server
// too); errPeerSpeaksTLS says the opposite.
func (w *world) ignoredBecause(err error) cluster.IgnoredAnswer {
	var record tls.RecordHeaderError
	switch {
	case errors.Is(err, errPeerSpeaksTLS):
		return cluster.PeerRunsTLS
	case errors.As(err, &record) && w.tls != nil:
		return cluster.PeerRunsPlaintext
	case errors.Is(err, pki.ErrUntrustedServer):
		return cluster.PeerUntrusted
	}
	return ""
}

// unanswered logs why a peer's answer is missing: at Debug when it did not
// answer (not started, gone), at Warn, once for each peer and cause, when
// something answered that is not a member of the cluster — a server
// without a member certificate of the cluster CA, or a plaintext one — and
// its answer is ignored.
func (w *world) unanswered(peer string, err error) {
	if w.ignoredBecause(err) == "" {
		w.log.Debug("peer did not answer", "peer", peer, "err", err)
		return
	}
	w.mu.Lock()
	if w.ignored == nil {
		w.ignored = map[string]string{}
	}
	repeat := w.ignored[peer] == err.Error()
	w.ignored[peer] = err.Error()
	w.mu.Unlock()
	level := slog.LevelWarn
	if repeat {
		level = slog.LevelDebug
	}
	why := w.ignoredBecause(err)
	msg := "peer answer ignored: the server is not a member of the cluster"
	if why == cluster.PeerRunsTLS {
		msg = "peer answer ignored: the peer " + string(why)
	}
	w.log.Log(context.Background(), level, msg, "peer", peer, "why", string(why), "err", err)
}

// errPeerSpeaksTLS: a peer's API speaks TLS while this instance runs with
// --tls off; every instance of a cluster must run with the same --tls.
var errPeerSpeaksTLS = errors.New("the peer speaks TLS and this instance runs with --tls off: give every instance the same --tls")

// remember records client URLs where a member ran.
func (w *world) remember(urls ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen == nil {
		w.seen = map[string]bool{}
	}
	for _, u := range urls {
		w.seen[u] = true
	}
}

// seenURLs are the client URLs remembered, sorted.
func (w *world) seenURLs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(maps.Keys(w.seen))
}

// askPeer asks the appliance at address for its state, and times the
// round trip.
func (w *world) askPeer(ctx context.Context, address string) (cluster.PeerState, time.Duration, error) {
	url := w.apiURL(address, "/v1/peer")
	// The round trip is timed from the request's last byte to the answer's
	// first, so that a new connection's handshake does not count.
	var wrote, answered time.Time
	trace := &httptrace.ClientTrace{
		WroteRequest:         func(httptrace.WroteRequestInfo) { wrote = time.Now() },
		GotFirstResponseByte: func() { answered = time.Now() },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
	if err != nil {
		return cluster.PeerState{}, 0, err
	}
	resp, err := w.http.Do(req)
	if err != nil {
		return cluster.PeerState{}, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusBadRequest && w.tls == nil {
		// Go's TLS server answers a plaintext request so: the peer runs
		// with --tls on, this instance with --tls off.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if strings.Contains(string(body), "HTTPS") {
			return cluster.PeerState{}, 0, fmt.Errorf("GET %s: %w", url, errPeerSpeaksTLS)
		}
	}
	if resp.StatusCode != http.StatusOK {
		return cluster.PeerState{}, 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var st cluster.PeerState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return cluster.PeerState{}, 0, fmt.Errorf("GET %s: %w", url, err)
	}
	return st, answered.Sub(wrote), nil
}

// findLiveCluster reads the member list from any peer that runs etcd.
func (w *world) findLiveCluster(ctx context.Context, peers map[string]cluster.PeerAnswer) *cluster.ClusterView {
	var endpoints []string
	for _, p := range peers {
		if p.Reachable && p.State.EtcdRunning && p.State.HasLeader && p.State.ClientURL != "" {
			endpoints = append(endpoints, p.State.ClientURL)
		}
	}
	return w.liveAt(ctx, endpoints)
}

// liveAt reads the member list, with quorum, from any of the endpoints; nil
// when none answers so.
func (w *world) liveAt(ctx context.Context, endpoints []string) *cluster.ClusterView {
	endpoints = w.reachable(ctx, endpoints)
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
	w.remember(clientURLsIn(view.Members, w.peerScheme())...)
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
	dns      *dnsPublisher

	// liveAt are the client URLs where a live cluster answered outside the
	// instances that answered (Elsewhere): the next plans look there.
	liveAt []string

	// lastPlan is the plan logged last: repeats go to Debug.
	lastPlan cluster.StartupPlan
	// silent are the group instances that did not answer, since when;
	// unanswered the same of the last round, oldest first; warned those
	// already logged.
	silent     map[string]time.Time
	unanswered []cluster.Unanswered
	warned     map[string]bool
	// The bounds of a join.
	lockWait, promoteWait time.Duration
	// publishGrace is how long a joined etcd may take to serve clients
	// before it is restarted to publish itself again.
	publishGrace time.Duration
	// etcdVersion is the version of the etcd this instance runs, which the
	// version gate of a join checks; versionRefusal is the gate's last
	// refusal, "" once a join passed it.
	etcdVersion    string
	versionRefusal string
	// snapshots takes the restore point before the first member of a
	// newer minor runs.
	snapshots *snapshotter
	// terminations confirms the termination of members' instances that
	// left the group listing (the starter's own; the housekeeper has one).
	terminations *terminations
	// swapHeld is why this member keeps the old etcd of an in-place
	// upgrade (refused, rolled back), "" while none was held; swapWait how
	// long its new etcd may take to be a healthy voter.
	swapHeld string
	swapWait time.Duration
	// binaryVersion asks an etcd command its version (etcd.BinaryVersion);
	// nil trusts what was recorded.
	binaryVersion func(ctx context.Context, command []string) (string, error)
}

// startupState is the cluster's state as a planning instance sees it.
func startupState(in cluster.StartupInputs, plan cluster.StartupPlan) clusterState {
	switch {
	case plan.Action == cluster.Recover || plan.Action == cluster.Restore:
		return stateRecovering
	case !in.Recovery.LostSince.IsZero():
		return stateQuorumLost
	default:
		return stateStarting
	}
}

// run loops over the startup plan until etcd runs.
func (s *starter) run(ctx context.Context) (etcdProcess, error) {
	s.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhasePlanning })
	planning := s.now()
	for {
		in, err := s.gather(ctx)
		if err != nil {
			return nil, err
		}
		plan := cluster.DecideStartup(in)
		s.logPlan(plan)
		s.setWaiting(s.waitReason(plan), s.unanswered)
		s.metrics.cluster.setState(startupState(in, plan))
		if plan.Action == cluster.AbandonOffer {
			// Nothing starts: with the offer gone, the next plan is an
			// ordinary one.
			s.metrics.plans.WithLabelValues(string(plan.Action)).Inc()
			if err := s.abandonOffer(plan); err != nil {
				return nil, err
			}
			continue
		}
		if plan.Action != cluster.Wait {
			s.metrics.plans.WithLabelValues(string(plan.Action)).Inc()
			s.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhaseStarting })
			return s.apply(ctx, in, plan)
		}
		if !sleep(ctx, askAgainAfter(s.cfg.StartupInterval, s.world.refusedLastRound(), s.now().Sub(planning))) {
			return nil, ctx.Err()
		}
	}
}

// askAgainAfter is the pause before the next plan of a waiting instance
// that has planned for so long: --startup-interval, or quickAskEvery while
// a peer refused the connection in the first quickAskFor.
func askAgainAfter(interval time.Duration, refused bool, planned time.Duration) time.Duration {
	if refused && planned < quickAskFor {
		return min(interval, quickAskEvery)
	}
	return interval
}

// gather collects the inputs of the startup plan.
func (s *starter) gather(ctx context.Context) (cluster.StartupInputs, error) {
	in := cluster.StartupInputs{Self: s.self, SelfPeerURL: s.peerURL()}
	group, err := s.groups.list(ctx, startupListEvery)
	if err != nil {
		s.log.Debug("group listing failed", "err", err)
	} else {
		// The listing published itself as the instance's group view.
		in.GroupKnown, in.Group = true, group
	}
	s.firewall.admitSelf(ctx)
	local, err := s.localInputs()
	if err != nil {
		// Unknown is not empty: never plan on a data dir that can't be read.
		return in, err
	}
	in.Local = local
	in.Peers = s.world.askPeers(ctx, in.Group)
	s.trackUnanswered(in.Group, in.Peers)
	in.Peers[s.self.ID] = cluster.PeerAnswer{Reachable: true, State: s.peerState()}
	in.Cluster = s.world.findLiveCluster(ctx, in.Peers)
	if in.Cluster == nil && len(s.liveAt) > 0 {
		in.Cluster = s.world.liveAt(ctx, s.liveAt)
	}
	if in.Cluster != nil && in.GroupKnown {
		// A member whose instance left the listing and that the provider
		// confirms terminated is listed as such: the joiner removes it at
		// once instead of waiting for the housekeeper's tick.
		in.Group = s.terminations.withConfirmed(ctx, in.Group, in.Cluster.Members)
	}
	in.Recovery = s.recovery.inputs(ctx, in)
	return in, ctx.Err()
}

// unansweredWarnAfter is how long a group instance may stay silent before
// the starter says, once, that it holds every creation and recovery.
const unansweredWarnAfter = time.Minute

// trackUnanswered records which group instances did not answer, exports
// it, and warns once per instance silent for unansweredWarnAfter.
func (s *starter) trackUnanswered(group []cluster.Instance, peers map[string]cluster.PeerAnswer) {
	now := s.now()
	s.silent, s.unanswered = cluster.TrackUnanswered(s.silent, group, peers, s.self.ID, now)
	list := s.unanswered
	s.metrics.waiting.unanswered.Set(float64(len(list)))
	longest := time.Duration(0)
	if len(list) > 0 {
		longest = now.Sub(list[0].Since)
	}
	s.metrics.waiting.unansweredSeconds.Set(longest.Seconds())
	s.metrics.waiting.setIgnored(list)
	warned := map[string]bool{}
	for _, u := range list {
		silent := now.Sub(u.Since)
		switch {
		case silent < unansweredWarnAfter || s.warned[u.Instance]:
		case u.Ignored != "":
			s.log.Warn("a group instance answers and is ignored: it runs with another --tls or CA, and no cluster is created, recovered or joined across the difference",
				"peer", u.Instance, "address", u.Address, "why", string(u.Ignored), "ignored_for", silent.Round(time.Second),
				"remedy", "run every instance of the cluster with the same --tls and CA (docs/operations.md, TLS)")
		default:
			s.log.Warn("a group instance does not answer: no cluster is created or recovered without it",
				"peer", u.Instance, "address", u.Address, "silent_for", silent.Round(time.Second),
				"remedy", "start its appliance, or terminate the instance so that the group replaces it (docs/operations.md)")
		}
		warned[u.Instance] = s.warned[u.Instance] || silent >= unansweredWarnAfter
	}
	s.warned = warned
}

// waitReason is what a waiting plan waits for, "" for a plan that acts;
// a join the version gate refused last time waits for a version that fits.
func (s *starter) waitReason(plan cluster.StartupPlan) string {
	switch plan.Action {
	case cluster.Wait:
		return plan.Reason
	case cluster.Join, cluster.Rejoin, cluster.ReplaceStale, cluster.ResumeJoin:
		return s.versionRefusal
	}
	return ""
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
	s.setTiming(s.decideTiming(in, plan))
	switch plan.Action {
	case cluster.StartOnData, cluster.StartMember:
		// With data, etcd takes the membership from its WAL, not the flags.
		return s.startOnData(ctx)
	case cluster.Bootstrap:
		if err := s.noLiveElsewhere(ctx); err != nil {
			return nil, err
		}
		return s.bootstrap(ctx, in, plan)
	case cluster.BootstrapMember:
		return s.bootstrap(ctx, in, plan)
	case cluster.Join, cluster.Rejoin, cluster.ReplaceStale, cluster.ResumeJoin:
		return s.join(ctx, in, plan)
	case cluster.Recover, cluster.Restore:
		if err := s.noLiveElsewhere(ctx); err != nil {
			return nil, err
		}
		if plan.Action == cluster.Recover {
			return s.recovery.recover(ctx, plan, cluster.NewestKnownRevision(in))
		}
		return s.recovery.restore(ctx, plan, cluster.NewestKnownRevision(in))
	default:
		return nil, fmt.Errorf("unknown startup action %q", plan.Action)
	}
}

// decideTiming is the raft timing etcd starts with for the plan, the same
// on every member: the flags' when set; a bootstrap offer's; the one the
// running members publish; the one the data last ran with; in multi-region
// mode, derived from the longest round trip to a peer; else etcd's
// defaults.
func (s *starter) decideTiming(in cluster.StartupInputs, plan cluster.StartupPlan) cluster.Timing {
	if t := s.cfg.Timing(); !t.IsZero() {
		return t
	}
	if plan.Action == cluster.BootstrapMember && plan.Offer != nil {
		return plan.Offer.Timing
	}
	if t := cluster.PublishedTiming(in.Peers); !t.IsZero() {
		return t
	}
	if t, ok := s.data.recordedTiming(); ok && plan.Action != cluster.Bootstrap {
		return t
	}
	if s.cfg.MultiRegion() {
		rtt := cluster.LongestRTT(in.Peers)
		t := cluster.DeriveTiming(rtt)
		s.log.Info("raft timing derived from the round trips to the peers", "longest_rtt", rtt.Round(time.Millisecond), "timing", t)
		return t
	}
	return cluster.Timing{}
}

// errLiveElsewhere: a plan would create a cluster while one answers where
// the group's instances did not tell of it.
var errLiveElsewhere = errors.New("a live cluster answers elsewhere: not creating another")

// noLiveElsewhere asks every endpoint where a live cluster may run outside
// the instances that answered (cluster.Elsewhere: the cluster's DNS records,
// the members seen before, the members the local data's marker recorded)
// before this instance creates, restores or
// recovers a cluster. When one answers with quorum, the plan is dropped and
// the next ones see that cluster, and join it. A DNS zone that can't be read
// is no proof that none runs.
func (s *starter) noLiveElsewhere(ctx context.Context) error {
	var records []cluster.DNSRecord
	if s.dns.dns != nil {
		r, err := s.dns.dns.Records(ctx)
		if err != nil {
			return fmt.Errorf("reading the cluster's DNS records to look for a live cluster: %w", err)
		}
		records = r
	}
	seen := s.world.seenURLs()
	if m, ok, err := s.data.readMarker(); err == nil && ok {
		seen = append(seen, m.Endpoints...)
	}
	view := s.world.liveAt(ctx, cluster.Elsewhere(s.dns.spec, records, seen))
	if view == nil {
		return nil
	}
	s.liveAt = clientURLsIn(view.Members, s.peerScheme())
	s.log.Warn("a live cluster answers where no group instance told of it: joining it instead of creating one",
		"cluster", view.ClusterID, "endpoints", s.liveAt)
	return fmt.Errorf("%w: cluster %s at %v", errLiveElsewhere, view.ClusterID, s.liveAt)
}

// bootstrap starts etcd as a member of a new cluster: the plan's offer, or
// for the seeder a new offer with a fresh token.
func (s *starter) bootstrap(ctx context.Context, in cluster.StartupInputs, plan cluster.StartupPlan) (etcdProcess, error) {
	offer := *plan.Offer
	if plan.Action == cluster.Bootstrap {
		offer.Token = clusterToken(s.clusterName())
		offer.Timing = s.etcdTiming()
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
			Voters: launch.Voters, PeerURL: s.peerURL()}); err != nil {
			return nil, err
		}
	}
	s.setPeer(func(p *cluster.PeerState) { p.Offer = &offer })
	return s.launcher.launch(ctx, launch)
}

// abandonOffer gives up a dead bootstrap offer: its data set aside (a wipe
// moves the offer along with it) or, when the plan keeps the data, the
// offer alone removed; refreshLocal then publishes that this instance takes
// part in no offer.
func (s *starter) abandonOffer(plan cluster.StartupPlan) error {
	if plan.Wipe {
		return s.wipe(0, plan.Reason)
	}
	if err := s.data.removeOffer(); err != nil {
		return err
	}
	_, err := s.refreshLocal()
	return err
}
