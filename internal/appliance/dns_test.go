package appliance

import (
	"context"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// memoryDNS is a zone in memory that counts the calls made to it.
type memoryDNS struct {
	records      []cluster.DNSRecord
	reads, saves int
}

func (m *memoryDNS) Records(context.Context) ([]cluster.DNSRecord, error) {
	m.reads++
	return append([]cluster.DNSRecord(nil), m.records...), nil
}

func (m *memoryDNS) Apply(_ context.Context, upserts, deletes []cluster.DNSRecord) error {
	m.saves++
	keep := m.records[:0]
	for _, r := range m.records {
		gone := false
		for _, d := range append(append([]cluster.DNSRecord(nil), deletes...), upserts...) {
			if d.Name == r.Name && d.Type == r.Type {
				gone = true
			}
		}
		if !gone {
			keep = append(keep, r)
		}
	}
	m.records = append(keep, upserts...)
	return nil
}

func healthyVoters(addrs ...string) map[cluster.ID]cluster.MemberStatus {
	out := map[cluster.ID]cluster.MemberStatus{}
	for i, addr := range addrs {
		id := cluster.ID(i + 1)
		out[id] = cluster.MemberStatus{ID: id, Name: "i-" + addr, Role: cluster.RoleVoter, Healthy: true,
			ClientURL: "http://" + addr + ":2379", PeerURL: "http://" + addr + ":2380"}
	}
	return out
}

func TestPublishDNSWritesOnlyOnChange(t *testing.T) {
	a := testAppliance(t)
	zone := &memoryDNS{}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	d := a.housekeeper.dns
	d.dns, d.spec = zone, &cluster.DNSSpec{Zone: "example.org.", Name: "orders", TTL: 60, ClientPort: 2379, PeerPort: 2380}
	ctx := context.Background()

	d.publish(ctx, healthyVoters("10.0.0.1", "10.0.0.2", "10.0.0.3"))
	if zone.reads != 1 || zone.saves != 1 || len(zone.records) == 0 {
		t.Fatalf("first cycle: %d reads, %d saves, %d records; want the records published once", zone.reads, zone.saves, len(zone.records))
	}
	for range 10 {
		now = now.Add(5 * time.Second)
		d.publish(ctx, healthyVoters("10.0.0.1", "10.0.0.2", "10.0.0.3"))
	}
	if zone.reads != 1 || zone.saves != 1 {
		t.Errorf("steady state: %d reads, %d saves; want no Route53 call", zone.reads, zone.saves)
	}
	now = now.Add(5 * time.Second)
	d.publish(ctx, healthyVoters("10.0.0.1", "10.0.0.2", "10.0.0.4"))
	if zone.reads != 2 || zone.saves != 2 {
		t.Errorf("after a replacement: %d reads, %d saves; want one read and one batch more", zone.reads, zone.saves)
	}
	now = now.Add(cluster.DNSRecheck)
	d.publish(ctx, healthyVoters("10.0.0.1", "10.0.0.2", "10.0.0.4"))
	if zone.reads != 3 || zone.saves != 2 {
		t.Errorf("periodic recheck: %d reads, %d saves; want a read-back and no change", zone.reads, zone.saves)
	}
	d.publish(ctx, map[cluster.ID]cluster.MemberStatus{})
	if zone.saves != 2 || len(zone.records) == 0 {
		t.Errorf("an empty health view changed the zone (%d saves, %d records left)", zone.saves, len(zone.records))
	}
}
