package appliance

import (
	"context"
	"sort"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// firewallKeeper keeps every member's address allowed in the cluster
// security group of every region (multi-region mode). It remembers what it
// last knew of the ingress rules, so that the security groups are read again
// only when the wanted rules change or every cluster.FirewallRecheck (SPEC
// §7: no calls to spare in steady state).
type firewallKeeper struct {
	*node
	fw   provider.Firewall // nil: not multi-region
	spec *cluster.FirewallSpec

	// have is the rules as last read, with the changes applied since.
	have []cluster.IngressRule
	// wanted is the wanted rules when they were last read.
	wanted   []cluster.IngressRule
	lastRead time.Time
	// selfAdmitted is set once this instance's own rules are in place;
	// selfTried is when it last tried.
	selfAdmitted bool
	selfTried    time.Time
}

// admitRetry is how long a starting instance waits before it tries again
// to allow itself in the security groups, when that failed.
const admitRetry = 30 * time.Second

// admitSelf allows this instance's own address in the cluster security
// group of every region, once, while it starts: only a leader keeps the
// rules, and a cluster that has none yet (a fresh multi-region group) could
// otherwise never form, since no instance could ask its peers in other
// regions. It only ever adds; the leader revokes the rules once the
// instance is gone.
func (f *firewallKeeper) admitSelf(ctx context.Context) {
	if f.fw == nil || f.selfAdmitted {
		return
	}
	now := f.now()
	if !f.selfTried.IsZero() && now.Before(f.selfTried.Add(admitRetry)) {
		return
	}
	f.selfTried = now
	self := f.self
	self.State = cluster.InstanceRunning
	want := cluster.WantedIngress(*f.spec, cluster.FirewallInputs{Group: []cluster.Instance{self}, GroupKnown: true}, nil)
	if len(want) == 0 {
		f.log.Warn("firewall: this instance has no IPv4 address to allow", "address", self.Address)
		f.selfAdmitted = true
		return
	}
	have, err := f.fw.Rules(ctx)
	if err != nil {
		f.log.Warn("firewall: reading the ingress rules to allow this instance", "err", err, "retry_in", admitRetry)
		return
	}
	add, _ := cluster.DiffIngress(want, have, f.spec.Owns)
	if len(add) > 0 {
		if err := f.fw.Apply(ctx, add, nil); err != nil {
			f.log.Warn("firewall: allowing this instance", "err", err, "retry_in", admitRetry)
			return
		}
		f.log.Info("firewall: this instance allowed in every region", "rules", len(add),
			"reason", "peers in other regions must reach it before it is a member")
	}
	f.selfAdmitted = true
}

// publishFirewall keeps every member's and group instance's address allowed
// in the cluster security group of every region, and revokes the rules of
// those gone (§4.4). It runs on the leader only, on a member list it just
// read and the group listing of the same cycle.
func (f *firewallKeeper) publish(ctx context.Context, health map[cluster.ID]cluster.MemberStatus,
	group []cluster.Instance, groupKnown bool) {
	if f.fw == nil {
		return
	}
	in := cluster.FirewallInputs{Group: group, GroupKnown: groupKnown}
	for _, st := range health {
		in.Members = append(in.Members, st)
	}
	sort.Slice(in.Members, func(i, j int) bool { return in.Members[i].ID < in.Members[j].ID })
	now := f.now()
	want := cluster.WantedIngress(*f.spec, in, f.have)
	if !cluster.FirewallCheckDue(want, f.wanted, f.lastRead, now) {
		return
	}
	have, err := f.fw.Rules(ctx)
	if err != nil {
		f.log.Warn("firewall: reading the ingress rules", "err", err)
		return
	}
	f.have, f.lastRead = have, now
	// Decided on what was read: a member missing from the listing keeps the
	// rules the groups hold for it.
	f.wanted = cluster.WantedIngress(*f.spec, in, have)
	plan := cluster.DecideFirewall(*f.spec, in, have)
	if plan.Held != "" {
		f.log.Warn("firewall: rules kept", "reason", plan.Held)
		if !groupKnown {
			// Look again as soon as the group is known, not at the
			// recheck: the revocations held are due.
			f.wanted = nil
		}
	}
	if plan.Empty() {
		if plan.Held == "" {
			f.log.Debug("firewall: ingress rules in shape")
		}
		return
	}
	if err := f.fw.Apply(ctx, plan.Authorize, plan.Revoke); err != nil {
		f.log.Warn("firewall: updating ingress rules", "err", err)
		f.lastRead = time.Time{}
		return
	}
	f.log.Info("firewall: ingress rules updated", "authorized", len(plan.Authorize), "revoked", len(plan.Revoke),
		"reason", "the members or instances of the group changed")
	for _, r := range plan.Authorize {
		f.log.Debug("firewall: authorized", "rule", r.String())
	}
	for _, r := range plan.Revoke {
		f.log.Debug("firewall: revoked", "rule", r.String())
	}
	f.have = cluster.AppliedIngress(have, plan)
}
