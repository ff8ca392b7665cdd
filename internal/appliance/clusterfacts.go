package appliance

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	snapstore "github.com/etcd-appliance/etcd-appliance/internal/snapshot"
)

// The cluster facts' cadence. Every member gathers them itself, so that an
// alert on any member, or on the best of them, means the same thing.
const (
	// clusterFactsEvery is how often every member probes the members it
	// knows: one status request to each, a serializable member list and a
	// serializable read of the published holds from its own etcd; 10
	// requests a minute in a cluster of 3, against SPEC §7's idle budget
	// of 60, and fresh enough for alerts that wait a minute or more.
	clusterFactsEvery = 30 * time.Second
	// storeFactsEvery is how often every member lists the snapshot store:
	// one LIST request, 1,440 a day per member.
	storeFactsEvery = time.Minute
	// holdsKey is where the housekeeper publishes the removals it holds.
	holdsKey = appliancePrefix + "facts/holds"
)

// clusterState is the state a member sees its cluster in, as
// etcd_appliance_cluster_state tells it.
type clusterState string

const (
	// stateStarting: no etcd under supervision: the instance plans,
	// joins, or waits for its peers.
	stateStarting clusterState = "starting"
	// stateServing: the local member has a leader.
	stateServing clusterState = "serving"
	// stateLeaderless: the local member has no leader, and the quorum is
	// not (yet) judged lost for good.
	stateLeaderless clusterState = "leaderless"
	// stateQuorumLost: a majority of the voters' instances are gone from
	// the group; a recovery follows --dr-grace after this was first seen.
	stateQuorumLost clusterState = "quorum-lost"
	// stateRecovering: this instance recovers or restores the cluster.
	stateRecovering clusterState = "recovering"
)

var clusterStates = []clusterState{stateStarting, stateServing, stateLeaderless, stateQuorumLost, stateRecovering}

// heldRemovals is what the housekeeper publishes of the removals its
// safety rules hold: how many by rule, and since when the oldest is held.
// It carries no clock of its own, so that it is written only when it
// changes: every write is a revision, and a revision is a snapshot.
type heldRemovals struct {
	ByRule map[cluster.Rule]int `json:"by_rule,omitempty"`
	Oldest time.Time            `json:"oldest,omitzero"`
}

// heldRemovalsOf summarises the holds the housekeeper remembers.
func heldRemovalsOf(holds cluster.Holds) heldRemovals {
	var out heldRemovals
	for k, since := range holds {
		if out.ByRule == nil {
			out.ByRule = map[cluster.Rule]int{}
		}
		out.ByRule[k.Rule]++
		if out.Oldest.IsZero() || since.Before(out.Oldest) {
			out.Oldest = since
		}
	}
	return out
}

// holdRules are the rules etcd_appliance_cluster_removals_held counts,
// each exported from the first scrape.
var holdRules = []cluster.Rule{cluster.RuleGroupUnknown, cluster.RuleSelfNotListed, cluster.RuleProtected,
	cluster.RuleSelf, cluster.RuleLastVoter, cluster.RuleQuorum, cluster.RuleFullStrength}

// clusterFactsInputs are what one member gathered of the cluster.
type clusterFactsInputs struct {
	Now time.Time
	// Members is the membership the local etcd knows (nil: none known);
	// Health every member's probe.
	Members []cluster.Member
	Health  map[cluster.ID]cluster.MemberStatus
	// StoreListed tells the snapshot store was asked (false: no store, or
	// not yet), StoreErr how the last listing failed; Snapshots is the
	// last good listing, SnapshotsListed whether there was one.
	StoreListed     bool
	StoreErr        error
	SnapshotsListed bool
	Snapshots       []snapstore.Meta
	// Holds is what the housekeeper published (HoldsKnown false: not read).
	Holds      heldRemovals
	HoldsKnown bool
}

// clusterFacts are the cluster-level facts one member exports.
type clusterFacts struct {
	MembersKnown                  bool
	Members, Voters               int
	MembersHealthy, VotersHealthy int
	// QuorumMargin is the healthy voters beyond a quorum: 0, one more
	// failure loses the quorum; negative, it is lost.
	QuorumMargin int

	StoreKnown, StoreUp bool
	SnapshotsKnown      bool
	// Snapshots is how many the store holds; SnapshotTime and
	// SnapshotRevision are those of the newest good one (zero: none).
	Snapshots        int
	SnapshotTime     time.Time
	SnapshotRevision int64

	HoldsKnown bool
	Held       map[cluster.Rule]int
	HeldFor    time.Duration
}

// decideClusterFacts computes the facts from what was gathered; it reads
// no clock and does no I/O.
func decideClusterFacts(in clusterFactsInputs) clusterFacts {
	var f clusterFacts
	if in.Members != nil {
		f.MembersKnown = true
		for _, m := range in.Members {
			voter := !m.IsLearner
			healthy := in.Health[m.ID].Healthy
			f.Members++
			if healthy {
				f.MembersHealthy++
			}
			if voter {
				f.Voters++
				if healthy {
					f.VotersHealthy++
				}
			}
		}
		f.QuorumMargin = f.VotersHealthy - cluster.Quorum(f.Voters)
	}
	f.StoreKnown, f.StoreUp = in.StoreListed, in.StoreListed && in.StoreErr == nil
	if in.SnapshotsListed {
		f.SnapshotsKnown = true
		f.Snapshots = len(in.Snapshots)
		if best, _ := cluster.NewestGoodSnapshot(snapshotRefs(in.Snapshots), nil); best != nil {
			f.SnapshotTime, f.SnapshotRevision = best.Time, best.Revision
		}
	}
	if in.HoldsKnown {
		f.HoldsKnown = true
		f.Held = in.Holds.ByRule
		if !in.Holds.Oldest.IsZero() {
			f.HeldFor = max(in.Now.Sub(in.Holds.Oldest), 0)
		}
	}
	return f
}

// clusterCollector exports the facts a member last gathered; a fact the
// member does not know (no etcd under supervision, no store) is absent
// rather than a zero that reads as a claim.
type clusterCollector struct {
	mu    sync.Mutex
	facts clusterFacts
	state clusterState

	members, voters, membersHealthy, votersHealthy, margin *prometheus.Desc
	storeUp, snapshots, snapshotTime, snapshotRevision     *prometheus.Desc
	held, heldSeconds, stateDesc                           *prometheus.Desc
}

var _ prometheus.Collector = (*clusterCollector)(nil)

func newClusterCollector() *clusterCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("etcd_appliance_cluster_"+name, help, labels, nil)
	}
	return &clusterCollector{
		state:   stateStarting,
		members: d("members", "Members of the cluster, as the local etcd lists them (absent while no etcd runs here)."),
		voters:  d("voters", "Voters of the cluster, as the local etcd lists them."),
		membersHealthy: d("members_healthy",
			"Members that answered this instance's status probe without an alarm (every 30 s, or every --backup-interval when shorter)."),
		votersHealthy: d("voters_healthy", "Voters that answered this instance's status probe without an alarm."),
		margin: d("quorum_margin",
			"Healthy voters minus the quorum of the voters: 0, one more failure loses the quorum; below 0, it is lost."),
		storeUp: d("snapshot_store_up",
			"1 when this instance's last listing of the snapshot store succeeded (every minute, or every --backup-interval when shorter; absent without --store)."),
		snapshots: d("snapshots", "Snapshots of the cluster in the store, at the last good listing."),
		snapshotTime: d("snapshot_timestamp_seconds",
			"When the newest good snapshot in the store was taken (0: none); its age is time() minus this."),
		snapshotRevision: d("snapshot_revision", "The revision the newest good snapshot in the store holds (0: none)."),
		held: d("removals_held",
			"Removals the housekeeper's safety rules hold, by rule (full-strength: the drain budget), as it last published them.",
			"rule"),
		heldSeconds: d("removal_held_seconds", "How long the oldest removal the housekeeper holds has been held (0: none)."),
		stateDesc: d("state",
			"1 for the state this instance sees the cluster in: starting, serving, leaderless, quorum-lost, recovering.",
			"state"),
	}
}

func (c *clusterCollector) set(f clusterFacts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.facts = f
}

// forgetMembers drops the membership facts: no etcd runs under supervision
// here, so there is no fresh member list to probe.
func (c *clusterCollector) forgetMembers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.facts.MembersKnown, c.facts.HoldsKnown = false, false
}

func (c *clusterCollector) setState(state clusterState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state = state
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.members, c.voters, c.membersHealthy, c.votersHealthy, c.margin,
		c.storeUp, c.snapshots, c.snapshotTime, c.snapshotRevision, c.held, c.heldSeconds, c.stateDesc} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	f, state := c.facts, c.state
	c.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range clusterStates {
		gauge(c.stateDesc, boolValue(s == state), string(s))
	}
	if f.MembersKnown {
		gauge(c.members, float64(f.Members))
		gauge(c.voters, float64(f.Voters))
		gauge(c.membersHealthy, float64(f.MembersHealthy))
		gauge(c.votersHealthy, float64(f.VotersHealthy))
		gauge(c.margin, float64(f.QuorumMargin))
	}
	if f.StoreKnown {
		gauge(c.storeUp, boolValue(f.StoreUp))
	}
	if f.SnapshotsKnown {
		gauge(c.snapshots, float64(f.Snapshots))
		var ts float64
		if !f.SnapshotTime.IsZero() {
			ts = float64(f.SnapshotTime.Unix())
		}
		gauge(c.snapshotTime, ts)
		gauge(c.snapshotRevision, float64(f.SnapshotRevision))
	}
	if f.HoldsKnown {
		for _, r := range holdRules {
			gauge(c.held, float64(f.Held[r]), string(r))
		}
		gauge(c.heldSeconds, f.HeldFor.Seconds())
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// clusterWatch gathers the cluster facts on every member, while its etcd
// runs under supervision. The snapshot facts come from the store itself,
// not from the housekeeper that takes the snapshots: the store is what a
// restore reads, its listing needs neither a quorum nor a live
// housekeeper (so the age keeps growing exactly when something is wrong),
// and reading it writes nothing to etcd, whose every write is a revision
// the next snapshot must keep. The holds exist only in the housekeeper's
// memory: it publishes them into etcd when they change, and every member
// reads them locally.
type clusterWatch struct {
	*node
	store snapstore.Store // nil: no snapshots

	// members is the last membership the local etcd listed: the probes go
	// on when the local etcd does not answer.
	members   []cluster.Member
	snapshots []snapstore.Meta
	listed    bool
	storeErr  error
	listedAt  time.Time
}

// every is a cadence of the facts, never slower than --backup-interval: a
// snapshot taken is seen within one interval (the defaults keep d).
func (w *clusterWatch) every(d time.Duration) time.Duration {
	if b := w.cfg.BackupInterval; b > 0 && b < d {
		return b
	}
	return d
}

// run refreshes the facts every clusterFactsEvery until ctx ends; it
// forgets the membership facts when it ends.
func (w *clusterWatch) run(ctx context.Context, c etcdAPI) {
	defer w.metrics.cluster.forgetMembers()
	tick := time.NewTicker(w.every(clusterFactsEvery))
	defer tick.Stop()
	for {
		w.refresh(ctx, c)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// refresh is one gathering of the cluster facts: gather, decide, export.
func (w *clusterWatch) refresh(ctx context.Context, c etcdAPI) {
	in := clusterFactsInputs{}
	if view, err := c.LocalMembers(ctx); err == nil {
		w.members = view.Members
	} else {
		w.log.Debug("cluster facts: the local member list failed; probing the members known", "err", err)
	}
	if w.members != nil {
		in.Members = w.members
		in.Health = memberHealth(ctx, c, w.members, w.groups.last())
	}
	if raw, err := c.Fact(ctx, holdsKey); err == nil {
		in.HoldsKnown = true
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &in.Holds); err != nil {
				in.HoldsKnown = false
				w.log.Debug("cluster facts: unreadable holds", "err", err)
			}
		}
	}
	if w.store != nil {
		now := w.now()
		if w.listedAt.IsZero() || now.Sub(w.listedAt) >= w.every(storeFactsEvery) {
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			snaps, err := w.store.List(lctx, w.clusterName())
			cancel()
			w.listedAt, w.storeErr = now, err
			if err == nil {
				w.snapshots, w.listed = snaps, true
			} else if ctx.Err() == nil {
				w.log.Debug("cluster facts: listing the snapshot store", "store", w.store.URL(), "err", err)
			}
		}
		in.StoreListed, in.StoreErr = true, w.storeErr
		in.SnapshotsListed, in.Snapshots = w.listed, w.snapshots
	}
	in.Now = w.now()
	if ctx.Err() != nil {
		return
	}
	w.metrics.cluster.set(decideClusterFacts(in))
}
