package appliance

import (
	"context"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// removeLockWait bounds how long housekeeping waits for the membership lock;
// the next cycle tries again.
const removeLockWait = 2 * time.Second

// housekeeper is the leader's housekeeping of §4.4: promote learners,
// remove stale members, publish DNS records and ingress rules. It keeps the
// clocks of DecideHousekeeping between cycles.
type housekeeper struct {
	*node
	terminations *terminations
	dns          *dnsPublisher
	firewall     *firewallKeeper

	firstSeen   map[cluster.ID]time.Time
	absentSince map[cluster.ID]time.Time
	holds       cluster.Holds
}

// cycle is one leader cycle: gather, decide, apply.
func (h *housekeeper) cycle(ctx context.Context, c etcdAPI) {
	h.metrics.housekeeping.Inc()
	in, health, ok := h.gather(ctx, c)
	if !ok {
		return
	}
	plan := cluster.DecideHousekeeping(in)
	h.firstSeen, h.absentSince = plan.FirstSeen, plan.AbsentSince
	in.FirstSeen, in.AbsentSince = plan.FirstSeen, plan.AbsentSince
	for _, held := range h.holds.Update(in.Now, plan.Held) {
		h.log.Warn("housekeeping: removal held", "rule", held.Rule, "member", held.Member, "reason", held.Why)
	}
	h.publish(ctx, in, health)
	for _, id := range plan.Promote {
		if err := c.Promote(ctx, id); err != nil {
			h.log.Debug("learner not promoted yet", "member", id, "err", err)
			continue
		}
		h.log.Info("learner promoted", "member", id, "reason", "in sync with the leader")
	}
	if plan.Remove != nil {
		h.removeStale(ctx, c, in, plan.Remove)
	}
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
	health := memberHealth(ctx, c, view.Members)
	healthy := healthyByID(health)
	var maxAge time.Duration
	if cluster.Steady(view.Members, healthy, h.groups.last()) {
		maxAge = cluster.SteadyListEvery
	}
	group, gerr := h.groups.list(ctx, maxAge)
	if gerr != nil {
		h.log.Warn("housekeeping: group listing failed", "err", gerr)
	} else {
		group = h.terminations.withConfirmed(ctx, group, view.Members)
	}
	h.countRoles(view.Members)
	return cluster.HousekeepingInputs{
		Now:            h.now(),
		Self:           h.self.ID,
		GroupKnown:     gerr == nil,
		Group:          group,
		Members:        view.Members,
		Healthy:        healthy,
		FirstSeen:      h.firstSeen,
		AbsentSince:    h.absentSince,
		StaleGrace:     h.cfg.StaleGrace,
		LearnerTimeout: h.cfg.LearnerTimeout,
	}, health, true
}

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
// have changed the membership since the plan was made.
func (h *housekeeper) removeStale(ctx context.Context, c etcdAPI, in cluster.HousekeepingInputs, r *cluster.Removal) {
	unlock, err := c.LockMembership(ctx, removeLockWait)
	if err != nil {
		h.log.Info("stale member removal postponed", "member", r.Member.ID, "name", r.Member.Name, "err", err)
		return
	}
	defer unlock()
	view, err := c.Members(ctx)
	if err != nil {
		h.log.Warn("stale member removal postponed", "member", r.Member.ID, "err", err)
		return
	}
	in.Members, in.Healthy = view.Members, healthyByID(memberHealth(ctx, c, view.Members))
	again := cluster.DecideHousekeeping(in)
	if again.Remove == nil || again.Remove.Member.ID != r.Member.ID {
		h.log.Info("stale member removal dropped: the membership changed", "member", r.Member.ID, "name", r.Member.Name)
		return
	}
	if err := c.Remove(ctx, r.Member.ID); err != nil {
		h.log.Warn("removing stale member failed", "member", r.Member.ID, "name", r.Member.Name, "err", err)
		return
	}
	h.metrics.removals.Inc()
	delete(h.absentSince, r.Member.ID)
	h.log.Info("stale member removed", "member", r.Member.ID, "name", r.Member.Name, "reason", r.Reason)
}
