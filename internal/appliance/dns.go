package appliance

import (
	"context"
	"sort"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// dnsPublisher keeps the cluster's Route53 records (§4.4). It remembers what
// it last knew of the published records, so that Route53 is read again only
// when the wanted records change or every cluster.DNSRecheck (SPEC §7: no
// calls to spare in steady state).
type dnsPublisher struct {
	*node
	dns  provider.DNS // nil: no DNS
	spec *cluster.DNSSpec

	synced   []cluster.DNSRecord
	lastRead time.Time
}

// publish brings the cluster's records in line with its started, healthy
// members. It runs on the leader only, on a member list it just read.
func (d *dnsPublisher) publish(ctx context.Context, health map[cluster.ID]cluster.MemberStatus) {
	if d.dns == nil {
		return
	}
	members := make([]cluster.MemberStatus, 0, len(health))
	for _, st := range health {
		members = append(members, st)
	}
	sort.Slice(members, func(i, j int) bool { return members[i].ID < members[j].ID })
	now := d.now()
	want := cluster.WantedRecords(*d.spec, members)
	if !cluster.DNSCheckDue(want, d.synced, d.lastRead, now) {
		return
	}
	have, err := d.dns.Records(ctx)
	if err != nil {
		d.log.Warn("dns: reading the published records", "err", err)
		return
	}
	d.lastRead = now
	plan := cluster.DecideDNS(*d.spec, members, have, false)
	switch {
	case plan.Held != "":
		d.log.Warn("dns: records kept", "reason", plan.Held)
		d.synced = have
	case plan.Empty():
		d.log.Debug("dns: records in shape")
		d.synced = have
	default:
		if err := d.dns.Apply(ctx, plan.Upserts, plan.Deletes); err != nil {
			d.log.Warn("dns: updating records", "err", err)
			d.lastRead = time.Time{}
			return
		}
		d.metrics.dnsChanges.Inc()
		d.log.Info("dns records updated", "upserts", len(plan.Upserts), "deletes", len(plan.Deletes),
			"reason", "the started, healthy members changed")
		d.synced = want
	}
}

// withdraw removes the cluster's records when its last member terminates
// with no other instance left in the group: the cluster is going away, and
// clients must not be sent to its addresses (§4.4). With any other instance
// in the group, or an unknown group, the records stay.
func (d *dnsPublisher) withdraw(ctx context.Context) {
	if d.dns == nil {
		return
	}
	group, err := d.groups.list(ctx, 0)
	if err != nil {
		d.log.Warn("dns: records kept: the group is unknown", "err", err)
		return
	}
	if other := cluster.OtherInstance(group, d.self.ID); other != "" {
		d.log.Info("dns: records kept: the group has other instances", "instance", other)
		return
	}
	have, err := d.dns.Records(ctx)
	if err != nil {
		d.log.Warn("dns: reading the published records", "err", err)
		return
	}
	plan := cluster.DecideDNS(*d.spec, nil, have, true)
	if plan.Empty() {
		return
	}
	if err := d.dns.Apply(ctx, plan.Upserts, plan.Deletes); err != nil {
		d.log.Warn("dns: withdrawing the records", "err", err)
		return
	}
	d.metrics.dnsChanges.Inc()
	d.log.Info("dns records withdrawn", "deletes", len(plan.Deletes), "reason", "the last member of the cluster terminated")
}
