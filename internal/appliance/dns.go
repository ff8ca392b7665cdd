package appliance

import (
	"context"
	"sort"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// dnsMemory carries what the leader last knew of the published records, so
// that Route53 is read again only when the wanted records change or every
// cluster.DNSRecheck (SPEC §7: no calls to spare in steady state).
type dnsMemory struct {
	synced   []cluster.DNSRecord
	lastRead time.Time
}

// publishDNS brings the cluster's records in line with its started, healthy
// members (§4.4). It runs on the leader only, on a member list it just read.
func (a *Appliance) publishDNS(ctx context.Context, health map[cluster.ID]cluster.MemberStatus) {
	if a.dns == nil {
		return
	}
	members := make([]cluster.MemberStatus, 0, len(health))
	for _, st := range health {
		members = append(members, st)
	}
	sort.Slice(members, func(i, j int) bool { return members[i].ID < members[j].ID })
	now := a.now()
	want := cluster.WantedRecords(*a.dnsSpec, members)
	if !cluster.DNSCheckDue(want, a.dnsMem.synced, a.dnsMem.lastRead, now) {
		return
	}
	have, err := a.dns.Records(ctx)
	if err != nil {
		a.log.Warn("dns: reading the published records", "err", err)
		return
	}
	a.dnsMem.lastRead = now
	plan := cluster.DecideDNS(*a.dnsSpec, members, have, false)
	switch {
	case plan.Held != "":
		a.log.Warn("dns: records kept", "reason", plan.Held)
		a.dnsMem.synced = have
	case plan.Empty():
		a.log.Debug("dns: records in shape")
		a.dnsMem.synced = have
	default:
		if err := a.dns.Apply(ctx, plan.Upserts, plan.Deletes); err != nil {
			a.log.Warn("dns: updating records", "err", err)
			a.dnsMem.lastRead = time.Time{}
			return
		}
		a.metrics.dnsChanges.Inc()
		a.log.Info("dns records updated", "upserts", len(plan.Upserts), "deletes", len(plan.Deletes),
			"reason", "the started, healthy members changed")
		a.dnsMem.synced = want
	}
}
