package appliance

import (
	"context"
	"sort"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// firewallMemory carries what the leader last knew of the ingress rules, so
// that the security groups are read again only when the wanted rules change
// or every cluster.FirewallRecheck (SPEC §7: no calls to spare in steady
// state).
type firewallMemory struct {
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
func (a *Appliance) admitSelf(ctx context.Context) {
	if a.fw == nil || a.fwMem.selfAdmitted {
		return
	}
	now := a.now()
	if !a.fwMem.selfTried.IsZero() && now.Before(a.fwMem.selfTried.Add(admitRetry)) {
		return
	}
	a.fwMem.selfTried = now
	self := a.self
	self.State = cluster.InstanceRunning
	want := cluster.WantedIngress(*a.fwSpec, cluster.FirewallInputs{Group: []cluster.Instance{self}, GroupKnown: true}, nil)
	if len(want) == 0 {
		a.log.Warn("firewall: this instance has no IPv4 address to allow", "address", self.Address)
		a.fwMem.selfAdmitted = true
		return
	}
	have, err := a.fw.Rules(ctx)
	if err != nil {
		a.log.Warn("firewall: reading the ingress rules to allow this instance", "err", err, "retry_in", admitRetry)
		return
	}
	add, _ := cluster.DiffIngress(want, have, a.fwSpec.Owns)
	if len(add) > 0 {
		if err := a.fw.Apply(ctx, add, nil); err != nil {
			a.log.Warn("firewall: allowing this instance", "err", err, "retry_in", admitRetry)
			return
		}
		a.log.Info("firewall: this instance allowed in every region", "rules", len(add),
			"reason", "peers in other regions must reach it before it is a member")
	}
	a.fwMem.selfAdmitted = true
}

// publishFirewall keeps every member's and group instance's address allowed
// in the cluster security group of every region, and revokes the rules of
// those gone (§4.4). It runs on the leader only, on a member list it just
// read and the group listing of the same cycle.
func (a *Appliance) publishFirewall(ctx context.Context, health map[cluster.ID]cluster.MemberStatus,
	group []cluster.Instance, groupKnown bool) {
	if a.fw == nil {
		return
	}
	in := cluster.FirewallInputs{Group: group, GroupKnown: groupKnown}
	for _, st := range health {
		in.Members = append(in.Members, st)
	}
	sort.Slice(in.Members, func(i, j int) bool { return in.Members[i].ID < in.Members[j].ID })
	now := a.now()
	want := cluster.WantedIngress(*a.fwSpec, in, a.fwMem.have)
	if !cluster.FirewallCheckDue(want, a.fwMem.wanted, a.fwMem.lastRead, now) {
		return
	}
	have, err := a.fw.Rules(ctx)
	if err != nil {
		a.log.Warn("firewall: reading the ingress rules", "err", err)
		return
	}
	a.fwMem.have, a.fwMem.lastRead = have, now
	// Decided on what was read: a member missing from the listing keeps the
	// rules the groups hold for it.
	a.fwMem.wanted = cluster.WantedIngress(*a.fwSpec, in, have)
	plan := cluster.DecideFirewall(*a.fwSpec, in, have)
	if plan.Held != "" {
		a.log.Warn("firewall: rules kept", "reason", plan.Held)
		if !groupKnown {
			// Look again as soon as the group is known, not at the
			// recheck: the revocations held are due.
			a.fwMem.wanted = nil
		}
	}
	if plan.Empty() {
		if plan.Held == "" {
			a.log.Debug("firewall: ingress rules in shape")
		}
		return
	}
	if err := a.fw.Apply(ctx, plan.Authorize, plan.Revoke); err != nil {
		a.log.Warn("firewall: updating ingress rules", "err", err)
		a.fwMem.lastRead = time.Time{}
		return
	}
	a.log.Info("firewall: ingress rules updated", "authorized", len(plan.Authorize), "revoked", len(plan.Revoke),
		"reason", "the members or instances of the group changed")
	for _, r := range plan.Authorize {
		a.log.Debug("firewall: authorized", "rule", r.String())
	}
	for _, r := range plan.Revoke {
		a.log.Debug("firewall: revoked", "rule", r.String())
	}
	a.fwMem.have = cluster.AppliedIngress(have, plan)
}

// bindAddress is the IP the instance serves on: its peer-facing address,
// unless that is its public name (multi-region mode) and --address does not
// say otherwise.
func (a *Appliance) bindAddress() string {
	if a.cfg.Address != "" || a.self.BindAddress == "" {
		return a.address
	}
	return a.self.BindAddress
}
