package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// removeLockWait bounds how long housekeeping waits for the membership lock;
// the next cycle tries again.
const removeLockWait = 2 * time.Second

// housekeeper is the housekeeping of §4.4, run by the appliance that holds
// the housekeeper role: promote learners, remove stale members, publish DNS
// records and ingress rules. It keeps the clocks of DecideHousekeeping
// between the cycles of one tenure of the role.
type housekeeper struct {
	*node
	terminations *terminations
	dns          *dnsPublisher
	firewall     *firewallKeeper

	// The memory of one tenure: it starts empty whenever the role is
	// taken, so that clocks from an earlier tenure, which saw nothing of
	// what happened in between, never count.
	firstSeen   map[cluster.ID]time.Time
	absentSince map[cluster.ID]time.Time
	lastCycle   time.Time
	holds       cluster.Holds
	// published is the summary of the holds last written to etcd (nil:
	// none this tenure).
	published []byte
	// auth is what this tenure knows of etcd's auth (--etcd-auth).
	auth authKeeping

	// What the last cycle saw and did: the member list it read (nil: none),
	// whether the cluster was steady (cluster.Steady), and whether it
	// changed the membership (a promotion, a removal).
	members []cluster.Member
	steady  bool
	changed bool
}

// reset forgets the memory of an earlier tenure of the role.
func (h *housekeeper) reset() {
	h.firstSeen, h.absentSince, h.lastCycle = nil, nil, time.Time{}
	h.holds = cluster.Holds{}
	h.published = nil
	h.auth = authKeeping{}
	h.members, h.steady, h.changed = nil, false, false
}

// cycle is one housekeeping cycle of the role's holder: gather, decide,
// apply. It returns errRoleLost (wrapped) when etcd says the role is no
// longer t's, and does nothing then.
func (h *housekeeper) cycle(ctx context.Context, c etcdAPI, t tenure) error {
	h.members, h.steady, h.changed = nil, false, false
	if err := t.Held(ctx); err != nil {
		return err
	}
	h.metrics.housekeeping.Inc()
	h.keepEtcdAuth(ctx, c)
	in, health, ok := h.gather(ctx, c)
	if !ok {
		return nil
	}
	plan := cluster.DecideHousekeeping(in)
	h.firstSeen, h.absentSince, h.lastCycle = plan.FirstSeen, plan.AbsentSince, in.Now
	in.FirstSeen, in.AbsentSince, in.LastCycle = plan.FirstSeen, plan.AbsentSince, in.Now
	for _, held := range h.holds.Update(in.Now, plan.Held) {
		h.log.Warn("housekeeping: removal held", "rule", held.Rule, "member", held.Member, "reason", held.Why)
	}
	h.publishHolds(ctx, c)
	h.publish(ctx, in, health)
	for _, id := range plan.Promote {
		if err := c.Promote(ctx, id); err != nil {
			h.log.Debug("learner not promoted yet", "member", id, "err", err)
			continue
		}
		h.changed = true
		h.log.Info("learner promoted", "member", id, "reason", "in sync with the leader")
	}
	if plan.Remove != nil {
		return h.removeStale(ctx, c, t, in, plan.Remove)
	}
	return nil
}

// gather reads the member list, every member's health and the group
// listing: with a steady cluster a listing up to cluster.SteadyListEvery
// old will do.
func (h *housekeeper) gather(ctx context.Context, c etcdAPI) (cluster.HousekeepingInputs, map[cluster.ID]cluster.MemberStatus, bool) {
	view, err := c.Members(ctx)
	if err != nil {
		if ctx.Err() == nil {
			h.log.Warn("housekeeping: no member list", "err", err)
		}
		return cluster.HousekeepingInputs{}, nil, false
	}
	health := memberHealth(ctx, c, view.Members, h.groups.last())
	healthy := healthyByID(health)
	var maxAge time.Duration
	h.members, h.steady = view.Members, cluster.Steady(view.Members, healthy, h.groups.last())
	if h.steady {
		maxAge = cluster.SteadyListEvery
	}
	group, gerr := h.groups.list(ctx, maxAge)
	if gerr != nil {
		h.log.Warn("housekeeping: group listing failed", "err", gerr)
	} else {
		group = h.terminations.withConfirmed(ctx, group, view.Members)
		healthy = withoutTerminated(healthy, view.Members, group)
	}
	h.countRoles(view.Members)
	return cluster.HousekeepingInputs{
		Now:            h.now(),
		Self:           h.self.ID,
		GroupKnown:     gerr == nil,
		Group:          group,
		Desired:        h.groups.desired(),
		Members:        view.Members,
		Healthy:        healthy,
		FirstSeen:      h.firstSeen,
		AbsentSince:    h.absentSince,
		LastCycle:      h.lastCycle,
		StaleGrace:     h.cfg.StaleGrace,
		LearnerTimeout: h.cfg.LearnerTimeout,
	}, health, true
}

// publishHolds writes the summary of the holds into etcd, where every
// member reads it for etcd_appliance_cluster_removals_held, when it
// changed: only when a hold starts or ends, or when a new tenure finds
// its predecessor's summary out of date. A cluster that holds nothing has
// no key: a fresh one gets no revision from it.
func (h *housekeeper) publishHolds(ctx context.Context, c etcdAPI) {
	if h.published == nil {
		cur, err := c.Fact(ctx, holdsKey)
		if err != nil {
			return
		}
		h.published = cur
		if len(cur) == 0 {
			h.published = noHolds
		}
	}
	raw, err := json.Marshal(heldRemovalsOf(h.holds))
	if err != nil || bytes.Equal(raw, h.published) {
		return
	}
	if err := c.PutFact(ctx, holdsKey, raw); err != nil {
		h.log.Debug("publishing the held removals", "err", err)
		return
	}
	h.published = raw
}

// noHolds is the summary of no holds, which an absent key stands for.
var noHolds = []byte("{}")

func (h *housekeeper) countRoles(ms []cluster.Member) {
	roles := map[string]float64{cluster.RoleVoter: 0, cluster.RoleLearner: 0, cluster.RoleUnstarted: 0}
	for _, m := range ms {
		roles[role(m)]++
	}
	for r, n := range roles {
		h.metrics.members.WithLabelValues(r).Set(n)
	}
}

// publish brings the DNS records and the ingress rules in line with the
// members and the group.
func (h *housekeeper) publish(ctx context.Context, in cluster.HousekeepingInputs, health map[cluster.ID]cluster.MemberStatus) {
	h.dns.publish(ctx, health)
	h.firewall.publish(ctx, health, in.Group, in.GroupKnown)
}

// removeStale removes a stale member under the membership lock, after
// deciding again on a fresh member list and health: a join or a leave may
// have changed the membership since the plan was made. Last it asks etcd
// whether the role is still t's: a housekeeper paused past its lease must
// not act on what it saw before the pause.
func (h *housekeeper) removeStale(ctx context.Context, c etcdAPI, t tenure, in cluster.HousekeepingInputs, r *cluster.Removal) error {
	unlock, err := c.LockMembership(ctx, removeLockWait)
	if err != nil {
		h.log.Info("stale member removal postponed", "member", r.Member.ID, "name", r.Member.Name, "err", err)
		return nil
	}
	defer unlock()
	view, err := c.Members(ctx)
	if err != nil {
		h.log.Warn("stale member removal postponed", "member", r.Member.ID, "err", err)
		return nil
	}
	if in.Healthy[r.Member.ID] {
		// Taking out a member that still serves obeys the drain budget,
		// judged on a fresh listing: the group's newcomers and its
		// desired capacity.
		group, err := h.groups.list(ctx, 0)
		if err != nil {
			h.log.Info("stale member removal postponed: the group listing failed", "member", r.Member.ID, "err", err)
			return nil
		}
		in.Group, in.Desired = h.terminations.withConfirmed(ctx, group, view.Members), h.groups.desired()
	}
	// memberHealth counts the members of terminated instances as not
	// serving, without probing them.
	in.Members, in.Healthy = view.Members, healthyByID(memberHealth(ctx, c, view.Members, in.Group))
	again := cluster.DecideHousekeeping(in)
	if again.Remove == nil || again.Remove.Member.ID != r.Member.ID {
		h.log.Info("stale member removal dropped: the membership changed", "member", r.Member.ID, "name", r.Member.Name)
		return nil
	}
	if err := t.Held(ctx); err != nil {
		h.log.Info("stale member removal dropped", "member", r.Member.ID, "name", r.Member.Name, "err", err)
		return err
	}
	if err := c.Remove(ctx, r.Member.ID); err != nil {
		h.log.Warn("removing stale member failed", "member", r.Member.ID, "name", r.Member.Name, "err", err)
		return nil
	}
	h.changed = true
	h.metrics.removals.Inc()
	delete(h.absentSince, r.Member.ID)
	h.log.Info("stale member removed", "member", r.Member.ID, "name", r.Member.Name, "reason", r.Reason)
	return nil
}

// The housekeeper election's cadence.
const (
	// campaignDelay is how long an appliance whose etcd does not lead waits,
	// from the start of its supervision, before it campaigns for the
	// housekeeper role. The etcd leader's appliance campaigns at once, so
	// it usually holds the role; the others queue behind it, and the
	// oldest in line takes the role within housekeeperTTL when the holder
	// hangs or dies.
	campaignDelay = 3 * time.Second
	// campaignRetry is the pause after a campaign failed.
	campaignRetry = time.Second
	// resignWait bounds how long the end of a supervision waits to resign:
	// a healthy etcd takes milliseconds; one without quorum never answers.
	resignWait = 250 * time.Millisecond
)

// candidacy is this appliance's part in the housekeeper election over one
// run of etcd: it campaigns in the background, holds the role, and notices
// when it lost it.
type candidacy struct {
	*node
	c etcdAPI
	// since is when the supervision began; retryAt when a failed campaign
	// may be tried again.
	since, retryAt time.Time
	held           tenure
	// won receives the outcome of the campaign running; nil: none runs.
	won    chan campaign
	cancel context.CancelFunc
	// mu guards ended, which a campaign that outlives the candidacy reads.
	mu    sync.Mutex
	ended bool
	// lastHolderCheck is when the etcd leader's appliance, waiting in line,
	// last looked whether the holder is dead; answers tells whether an
	// appliance answers on its API at a host.
	lastHolderCheck time.Time
	answers         func(ctx context.Context, host string) bool
	reachable       func(ctx context.Context, endpoints []string) []string
}

// campaign is the outcome of one campaign for the role.
type campaign struct {
	t   tenure
	err error
}

func newCandidacy(n *node, c etcdAPI) *candidacy {
	r := &candidacy{node: n, c: c, since: n.now()}
	r.answers, r.reachable = r.applianceAnswers, listening
	return r
}

// look is one look at the role, while etcd has a leader: it returns the
// tenure held, nil when none, and whether it was taken since the last look.
// It starts a campaign when none runs: at once on the etcd leader,
// campaignDelay after the supervision began on a voter that follows, never
// on a learner (it serves no leases). steady is the supervisor's last
// judgement of its member (isSteady).
func (r *candidacy) look(ctx context.Context, st etcdStatus, steady bool) (t tenure, taken bool) {
	if r.held != nil {
		select {
		case <-r.held.Done():
			r.lost(fmt.Errorf("%w: its session ended", errRoleLost))
		default:
			return r.held, false
		}
	}
	if r.won != nil {
		select {
		case res := <-r.won:
			r.cancel()
			r.won, r.cancel = nil, nil
			if res.err != nil {
				r.log.Debug("campaign for the housekeeper role failed", "err", res.err)
				r.retryAt = r.now().Add(campaignRetry)
				return nil, false
			}
			r.held = res.t
			r.metrics.housekeeper.Set(1)
			r.log.Info("housekeeper role taken", "etcd_leader", st.Leads(), "reason", "first in line of the election")
			return r.held, true
		default:
			if st.Leads() {
				r.unseatDeadHolder(ctx, steady)
			}
			return nil, false
		}
	}
	now := r.now()
	if st.IsLearner || now.Before(r.retryAt) || !st.Leads() && now.Sub(r.since) < campaignDelay {
		return nil, false
	}
	cctx, cancel := context.WithCancel(ctx)
	won := make(chan campaign, 1)
	r.won, r.cancel = won, cancel
	go func() {
		t, err := r.c.HoldRole(cctx, r.self.ID)
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.ended {
			if err == nil {
				t.Resign()
			}
			return
		}
		won <- campaign{t: t, err: err}
	}()
	return nil, false
}

// inLine reports whether the candidacy holds the role or waits in line for
// it.
func (r *candidacy) inLine() bool { return r.held != nil || r.won != nil }

// holderCheckEvery bounds how often the etcd leader's appliance, waiting in
// line for the role, looks whether its holder is dead: a look is three
// requests (the holder's key, the member list, the holder's status), so
// while its member is steady it looks every steadyHolderCheckEvery. A
// killed holder's instance is a change the etcd leader sees only when that
// holder was its leader or a joiner replaces it; otherwise the holder's
// lease ends it as soon.
const (
	holderCheckEvery       = time.Second
	steadyHolderCheckEvery = housekeeperTTL * time.Second
)

// unseatDeadHolder ends the role of a holder that is dead: neither its etcd
// nor its appliance answers (its instance was killed, or its appliance
// hangs). Its lease would expire by itself within housekeeperTTL, plus the
// election timeout etcd grants every lease when its leadership moves; a
// replacement meanwhile finds the dead member still listed and etcd
// refuses to add it. Only the etcd leader's appliance looks, so that one
// candidate takes over. A holder wrongly judged dead loses nothing but
// the role: each of its cycles, and each removal, first checks it still
// holds it.
func (r *candidacy) unseatDeadHolder(ctx context.Context, steady bool) {
	now := r.now()
	every := holderCheckEvery
	if steady {
		every = steadyHolderCheckEvery
	}
	if now.Sub(r.lastHolderCheck) < every {
		return
	}
	r.lastHolderCheck = now
	name, lease, err := r.c.RoleHolder(ctx)
	if err != nil || name == "" || name == r.self.ID || r.holderAlive(ctx, name) {
		return
	}
	if err := r.c.RevokeLease(ctx, lease); err != nil {
		r.log.Debug("ending a dead housekeeper's role", "holder", name, "err", err)
		return
	}
	r.log.Info("housekeeper role ended: its holder is dead", "holder", name,
		"reason", "neither its etcd nor its appliance answers")
}

// holderAlive reports whether the holder's etcd or its appliance answers.
// A holder that is no member any more is dead.
func (r *candidacy) holderAlive(ctx context.Context, name string) bool {
	view, err := r.c.LocalMembers(ctx)
	if err != nil {
		return true
	}
	for _, m := range view.Members {
		if m.Name != name || !m.Started() {
			continue
		}
		// A killed instance refuses connections at once; only what listens
		// is worth a status request and its deadline.
		if len(r.reachable(ctx, m.ClientURLs[:1])) > 0 {
			if _, err := r.c.Status(ctx, m.ClientURLs[0]); err == nil {
				return true
			}
		}
		u, err := url.Parse(m.ClientURLs[0])
		return err != nil || r.answers(ctx, u.Hostname())
	}
	return false
}

// applianceAnswers reports whether an appliance answers /healthz at host.
func (r *candidacy) applianceAnswers(ctx context.Context, host string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.apiURL(host, "/healthz"), nil)
	if err != nil {
		return false
	}
	// With TLS, only an appliance with a member certificate counts.
	resp, err := (&http.Client{Transport: r.peerTransport()}).Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// lost gives up a tenure that etcd no longer counts: the next look
// campaigns again.
func (r *candidacy) lost(err error) {
	r.log.Info("housekeeper role lost", "reason", err)
	r.metrics.housekeeper.Set(0)
	r.held.Resign()
	r.held = nil
}

// end ends the candidacy with the supervision: it stops the campaign and
// resigns the role, so that the next in line takes it at once. It does not
// wait for the campaign: a campaign cancelled while etcd is unreachable
// returns only once the client closes.
func (r *candidacy) end() {
	r.mu.Lock()
	r.ended = true
	var pending tenure
	if r.won != nil {
		select {
		case res := <-r.won:
			if res.err == nil {
				pending = res.t
			}
		default:
		}
		r.cancel()
		r.won, r.cancel = nil, nil
	}
	r.mu.Unlock()
	held := r.held
	r.held = nil
	r.metrics.housekeeper.Set(0)
	// Resigning takes a moment through a live etcd; through a dead one
	// (etcd crashed) it would wait out its deadlines and hold up the
	// restart, and the lease runs out by itself then.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, t := range []tenure{pending, held} {
			if t != nil {
				t.Resign()
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(resignWait):
		r.log.Debug("housekeeper role not resigned in time; its lease runs out", "after", resignWait)
	}
}

// withoutTerminated counts the members whose instance the listing shows
// terminated as not serving, whatever an earlier probe said: the machine
// is gone (a terminating one, which may still drain, keeps its health).
func withoutTerminated(healthy map[cluster.ID]bool, ms []cluster.Member, group []cluster.Instance) map[cluster.ID]bool {
	gone := map[string]bool{}
	for _, inst := range group {
		gone[inst.ID] = inst.State == cluster.InstanceTerminated
	}
	out := make(map[cluster.ID]bool, len(healthy))
	for _, m := range ms {
		out[m.ID] = healthy[m.ID] && !gone[m.Name]
	}
	return out
}
