package appliance

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// The in-place upgrade (§4.7): configuration management replaces
// --etcd-binary, or the appliance with its bundled etcd, and restarts the
// service on every instance at once. Each member then starts once more on
// the etcd its data last ran with (the copy the launcher kept) and swaps to
// the new one in its turn: under the cluster-wide membership lock, only
// while every other member is a started, healthy voter, and it holds the
// lock until its member is a healthy voter again. The cluster keeps its
// quorum throughout, one member is down at a time, and a release that
// cannot run the data is rolled back on the one member that tried it.

// The outcomes of etcd_appliance_etcd_swaps_total.
const (
	swapSwapped    = "swapped"
	swapRolledBack = "rolled_back"
	swapRefused    = "refused"
)

// swapWait bounds how long a swapped member may take to be a healthy voter
// on its new etcd before the swap is rolled back (starter.swapWait).
const swapWait = time.Minute

// swapAttempt bounds one attempt to take the lock and judge the swap.
const swapAttempt = 45 * time.Second

// startOnData starts etcd on the member's data (StartOnData, StartMember):
// the current release, or, when the data last ran another one and a copy of
// it is kept, that one, swapped to the current one in its turn.
func (s *starter) startOnData(ctx context.Context) (etcdProcess, error) {
	launch := cluster.LaunchOnData(s.self.ID, s.peerURL(), s.clusterName())
	current := s.launcher.currentRelease()
	last, ok, err := s.data.lastRelease()
	if err != nil {
		return nil, err
	}
	if !ok || last.Version == current.Version {
		return s.launcher.launch(ctx, launch)
	}
	prev, kept := s.data.keptRelease(last)
	if kept {
		kept = s.keptIntact(ctx, prev)
	}
	if !kept {
		s.log.Warn("the data last ran another etcd, and no intact copy of it is kept: starting the configured one at once, not in turn",
			"last_etcd_version", last.Version, "etcd_version", current.Version)
		return s.launcher.launch(ctx, launch)
	}
	s.metrics.swapPending.Set(1)
	if s.swapHeld != "" {
		// Refused or rolled back since the appliance started: the old
		// release runs until the configuration or the cluster changes and
		// the appliance is restarted.
		return s.launcher.launchRelease(ctx, launch, prev)
	}
	return s.swap(ctx, launch, prev)
}

// keptIntact reports whether the kept release still runs the version it
// was kept as: a kept link follows a binary overwritten in place.
func (s *starter) keptIntact(ctx context.Context, r etcdRelease) bool {
	if s.binaryVersion == nil {
		return true
	}
	v, err := s.binaryVersion(ctx, r.Command)
	if err != nil || v != r.Version {
		s.log.Warn("the kept etcd is not the release it was kept as", "path", r.Command[0], "kept_as", r.Version,
			"version", v, "err", err)
		return false
	}
	return true
}

// swap starts the member on prev and swaps it to the current release in
// its turn. It returns the etcd that runs, whichever it is; an error only
// when none does.
func (s *starter) swap(ctx context.Context, launch cluster.Launch, prev etcdRelease) (etcdProcess, error) {
	old, err := s.launcher.launchRelease(ctx, launch, prev)
	if err != nil {
		return nil, err
	}
	s.log.Info("in-place upgrade: started on the etcd the data last ran with; swapping in turn",
		"from", prev.Version, "to", s.launcher.currentRelease().Version)
	last := ""
	for {
		proc, err := s.trySwap(ctx, launch, old, prev)
		if proc != nil || err == nil {
			return proc, err
		}
		why := "in-place upgrade: waiting for the swap's turn: " + err.Error()
		if h := (*cluster.Hold)(nil); errors.As(err, &h) {
			why = "in-place upgrade: " + h.Error()
		}
		s.setWaiting(why, nil)
		if why != last {
			s.log.Debug("in-place upgrade: not swapping yet", "why", why)
			last = why
		}
		select {
		case <-old.Done():
			return nil, fmt.Errorf("etcd %s exited before its swap: %v", prev.Version, old.Err())
		case <-ctx.Done():
			return old, ctx.Err()
		case <-time.After(s.cfg.StartupInterval):
		}
	}
}

// trySwap is one attempt: it returns the etcd that runs once the swap was
// made, rolled back or refused, and an error when it is not this member's
// turn yet (old still runs).
func (s *starter) trySwap(ctx context.Context, launch cluster.Launch, old etcdProcess, prev etcdRelease) (etcdProcess, error) {
	return s.inTurn(ctx, restartTurn{
		what: "in-place upgrade",
		gate: func(actx context.Context, c etcdAPI) (etcdProcess, error) {
			current := s.launcher.currentRelease()
			vs, err := c.Versions(actx)
			if err != nil {
				return nil, fmt.Errorf("version gate: %w", err)
			}
			restorePoint, err := s.gateVersion(actx, c, vs, current.Version)
			switch {
			case errors.Is(err, cluster.ErrVersionRefused):
				s.holdSwap(swapRefused, fmt.Sprintf("etcd %s stays: %v", prev.Version, err))
				return old, nil
			case err != nil:
				return nil, err
			}
			if restorePoint {
				if err := s.snapshots.restorePoint(actx, c, vs.Cluster, current.Version); err != nil {
					return nil, err
				}
			}
			return nil, nil
		},
		restart: func(ctx context.Context, c etcdAPI, id cluster.ID) (etcdProcess, error) {
			return s.swapLocked(ctx, c, launch, old, prev, id)
		},
	})
}

// restartTurn is a restart of this member's etcd in its turn (inTurn): the
// in-place upgrade's swap, or a restart that loads a new trust bundle.
type restartTurn struct {
	// what names the restart in the log.
	what string
	// gate, when set, runs under the lock once it is the member's turn,
	// before leadership moves: it may end the attempt with the etcd that
	// runs (a refusal) or an error (not now); nil, nil goes on.
	gate func(ctx context.Context, c etcdAPI) (etcdProcess, error)
	// restart stops and starts etcd, under the lock, with c reaching the
	// other members; id is the member's.
	restart func(ctx context.Context, c etcdAPI, id cluster.ID) (etcdProcess, error)
}

// inTurn is one attempt at a restart of this member's etcd in its turn:
// under the cluster-wide membership lock — tried, not awaited, and held
// until the restart returns — only while every other member is a started,
// healthy voter (swapTurn), with leadership handed over first. It returns
// what r's gate or restart return, and an error when it is not this
// member's turn yet (its etcd still runs, untouched).
func (s *starter) inTurn(ctx context.Context, r restartTurn) (etcdProcess, error) {
	c, err := s.dial(s.swapEndpoints())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	actx, cancel := context.WithTimeout(ctx, swapAttempt)
	defer cancel()
	if _, err := c.Members(actx); err != nil {
		return nil, fmt.Errorf("the cluster has no quorum yet: %w", err)
	}
	// Tried, not awaited: a waiter's watch on the lock would hold the
	// graceful stop of the restarting member's etcd (see swapEndpoints).
	unlock, err := c.TryLockMembership(actx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	self, err := s.swapTurn(actx, c)
	if err != nil {
		return nil, err
	}
	if r.gate != nil {
		if proc, err := r.gate(actx, c); proc != nil || err != nil {
			return proc, err
		}
	}
	s.handOver(actx, self, r.what)
	return r.restart(ctx, c, self.ID)
}

// restartLocked stops old, starts etcd again with start and waits, for at
// most swapWait, until the member id is a healthy voter on it. It returns
// the new etcd, also when it did not get there (nil when it did not start).
func (s *starter) restartLocked(ctx context.Context, c etcdAPI, old etcdProcess, id cluster.ID, what string,
	start func(context.Context) (etcdProcess, error)) (etcdProcess, error) {
	if err := old.Stop(s.cfg.StopTimeout); err != nil {
		s.log.Warn(what+": stopping etcd", "err", err)
	}
	proc, err := start(ctx)
	if err != nil {
		return nil, err
	}
	_, err = awaitStatus(ctx, c, s.clientURL(), proc, s.swapWait, func(st etcdStatus) bool {
		return len(st.Errors) == 0 && st.Leader != 0 && !st.IsLearner && st.MemberID == id
	})
	return proc, err
}

// swapEndpoints are the client URLs of the other members, as the data's
// marker last listed them: the membership lock and the watch over the swap
// go through them, since this member's etcd goes away in the swap (and
// etcd's graceful stop waits up to its request timeout, 7 s, for streams
// still open on it, such as the lock's lease keepalive). A member without
// others has only itself.
func (s *starter) swapEndpoints() []string {
	var out []string
	if m, ok, err := s.data.readMarker(); err == nil && ok {
		out = otherEndpoints(m.Endpoints, s.address, s.scheme())
	}
	if len(out) == 0 {
		return []string{s.clientURL()}
	}
	return out
}

// otherEndpoints are the client URLs of endpoints whose host is not self,
// one per host: the one of scheme when a member advertises both (a member
// whose peers move between plaintext and TLS serves clients both ways),
// since one client speaks one scheme to all its endpoints.
func otherEndpoints(endpoints []string, self, scheme string) []string {
	var hosts []string
	byHost := map[string]string{}
	for _, e := range endpoints {
		u, err := url.Parse(e)
		if err != nil || u.Hostname() == self {
			continue
		}
		prev, seen := byHost[u.Host]
		if !seen {
			hosts = append(hosts, u.Host)
		}
		if !seen || (u.Scheme == scheme && !strings.HasPrefix(prev, scheme+"://")) {
			byHost[u.Host] = e
		}
	}
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, byHost[h])
	}
	return out
}

// swapTurn is this member when its swap may go now: a member whose etcd
// serves, and every other member a started, healthy voter
// (cluster.CheckSwap), on a fresh member list taken under the lock.
func (s *starter) swapTurn(ctx context.Context, c etcdAPI) (cluster.MemberStatus, error) {
	view, err := c.Members(ctx)
	if err != nil {
		return cluster.MemberStatus{}, err
	}
	health := memberHealth(ctx, c, view.Members, s.groups.last())
	i := slices.IndexFunc(view.Members, func(m cluster.Member) bool { return m.Name == s.self.ID })
	if i < 0 {
		return cluster.MemberStatus{}, errors.New("this instance's member is not in the member list")
	}
	self := health[view.Members[i].ID]
	if !self.Healthy {
		return cluster.MemberStatus{}, fmt.Errorf("this member does not serve yet: %s", self.Error)
	}
	if h := cluster.CheckSwap(view.Members, healthyByID(health), self.ID); h != nil {
		return cluster.MemberStatus{}, h
	}
	return self, nil
}

// memberVersions are the etcd versions the started members report, by
// member name.
func (s *starter) memberVersions(ctx context.Context, c etcdAPI) (map[string]string, error) {
	view, err := c.Members(ctx)
	if err != nil {
		return nil, err
	}
	running := map[string]string{}
	for _, st := range memberHealth(ctx, c, view.Members, s.groups.last()) {
		if st.Version != "" {
			running[st.Name] = st.Version
		}
	}
	return running, nil
}

// gateVersion is the version gate of an etcd of version next that would
// join, or swap in among, the members behind c: the cluster version
// (cluster.CheckJoinVersion, with the started members' versions standing
// for an undecided one), and for a newer minor, every member of the old
// minor at the patch etcd's upgrade guide asks for
// (cluster.CheckUpgradeFrom). A refusal wraps cluster.ErrVersionRefused;
// restorePoint says that next is the first of a newer minor, which takes
// the restore point (cluster.NeedsRestorePoint).
func (s *starter) gateVersion(ctx context.Context, c etcdAPI, vs clusterVersions, next string) (restorePoint bool, err error) {
	running, err := s.memberVersions(ctx, c)
	if err != nil {
		return false, err
	}
	versions := slices.Collect(maps.Values(running))
	if err := cluster.CheckJoinVersion(cluster.JoinVersions{Joiner: next, Cluster: vs.Cluster,
		DowngradeTarget: vs.DowngradeTarget, Running: versions}); err != nil {
		return false, err
	}
	if err := cluster.CheckUpgradeFrom(next, running); err != nil {
		return false, err
	}
	return cluster.NeedsRestorePoint(vs.Cluster, next, versions), nil
}

// handOver moves leadership away from this member before it stops for
// what, to spare the cluster an election timeout. A failure costs only
// that.
func (s *starter) handOver(ctx context.Context, self cluster.MemberStatus, what string) {
	if !self.Leader {
		return
	}
	failed := what + ": moving leadership before the restart"
	local, err := s.dial([]string{s.clientURL()})
	if err != nil {
		s.log.Warn(failed, "err", err)
		return
	}
	defer local.Close()
	view, err := local.Members(ctx)
	if err != nil {
		s.log.Warn(failed, "err", err)
		return
	}
	for _, m := range view.Members {
		if m.ID != self.ID && !m.IsLearner && m.Started() {
			if err := local.MoveLeader(ctx, m.ID); err != nil {
				s.log.Warn(failed, "to", m.ID, "err", err)
			} else {
				s.log.Info(what+": leadership moved before the restart", "to", m.ID)
			}
			return
		}
	}
}

// swapLocked stops the old etcd and starts the current one, under the
// membership lock, and waits until the member is a healthy voter on it. A
// new etcd that does not get there within swapWait is stopped and the old
// one started again.
func (s *starter) swapLocked(ctx context.Context, c etcdAPI, launch cluster.Launch, old etcdProcess, prev etcdRelease,
	id cluster.ID) (etcdProcess, error) {
	current := s.launcher.currentRelease()
	start := s.now()
	proc, err := s.restartLocked(ctx, c, old, id, "in-place upgrade", func(ctx context.Context) (etcdProcess, error) {
		return s.launcher.launch(ctx, launch)
	})
	if err == nil {
		s.metrics.swaps.WithLabelValues(swapSwapped).Inc()
		s.metrics.swapPending.Set(0)
		s.setWaiting("", nil)
		s.log.Info("in-place upgrade: swapped; the next member may go", "from", prev.Version, "to", current.Version,
			"member", id, "took", s.now().Sub(start).Round(time.Millisecond))
		if err := s.data.pruneKept(current.Version); err != nil {
			s.log.Warn("in-place upgrade: removing the copy of the old etcd", "err", err)
		}
		return proc, nil
	}
	if ctx.Err() != nil {
		return proc, ctx.Err()
	}
	s.log.Error("in-place upgrade: the new etcd is not a healthy voter; rolling this member back to the old one",
		"from", prev.Version, "to", current.Version, "err", err)
	if proc != nil {
		if err := proc.Stop(s.cfg.StopTimeout); err != nil {
			s.log.Warn("in-place upgrade: stopping the new etcd", "err", err)
		}
	}
	s.holdSwap(swapRolledBack, fmt.Sprintf("etcd %s did not become a healthy voter on this member's data (%v): back on etcd %s until the appliance restarts",
		current.Version, err, prev.Version))
	return s.launcher.launchRelease(ctx, launch, prev)
}

// holdSwap records that this member keeps running the old etcd, and why:
// in the log, a metric and what /v1/status says it waits for. No swap is
// tried again until the appliance restarts.
func (s *starter) holdSwap(outcome, why string) {
	s.swapHeld = why
	s.metrics.swaps.WithLabelValues(outcome).Inc()
	s.setWaiting("in-place upgrade: "+why, nil)
	s.log.Warn("in-place upgrade: not swapping", "outcome", outcome, "why", why)
}
