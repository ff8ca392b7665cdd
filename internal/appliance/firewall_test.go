package appliance

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// memoryFirewall is the security groups in memory, counting the calls.
type memoryFirewall struct {
	rules               []cluster.IngressRule
	reads, applies      int
	authorized, revoked int
	failReads           bool
}

func (m *memoryFirewall) Rules(context.Context) ([]cluster.IngressRule, error) {
	m.reads++
	if m.failReads {
		return nil, errors.New("injected")
	}
	return append([]cluster.IngressRule(nil), m.rules...), nil
}

func (m *memoryFirewall) Apply(_ context.Context, authorize, revoke []cluster.IngressRule) error {
	m.applies++
	m.authorized += len(authorize)
	m.revoked += len(revoke)
	m.rules = cluster.AppliedIngress(m.rules, cluster.FirewallPlan{Authorize: authorize, Revoke: revoke})
	return nil
}

func runningInstances(addrs ...string) []cluster.Instance {
	var out []cluster.Instance
	for _, addr := range addrs {
		out = append(out, cluster.Instance{ID: "i-" + addr, Address: addr, State: cluster.InstanceRunning})
	}
	return out
}

func TestPublishFirewallChangesOnlyOnChange(t *testing.T) {
	a := testAppliance(t)
	fw := &memoryFirewall{rules: []cluster.IngressRule{{Region: "r1", Port: 2379, CIDR: "192.0.2.9/32", Description: "monitoring"}}}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	f := a.housekeeper.firewall
	f.fw, f.spec = fw, &cluster.FirewallSpec{Cluster: "orders", Regions: []string{"r1", "r2"}, Ports: []int{2379, 2380}}
	ctx := context.Background()
	cycle := func(group []cluster.Instance, known bool, addrs ...string) {
		now = now.Add(5 * time.Second)
		f.publish(ctx, healthyVoters(addrs...), group, known)
	}

	cycle(runningInstances("10.0.0.1", "10.0.0.2", "10.0.0.3"), true, "10.0.0.1", "10.0.0.2", "10.0.0.3")
	if fw.reads != 1 || fw.applies != 1 || fw.authorized != 12 {
		t.Fatalf("first cycle: %d reads, %d applies, %d authorized; want 12 rules in one apply", fw.reads, fw.applies, fw.authorized)
	}
	for range 10 {
		cycle(runningInstances("10.0.0.1", "10.0.0.2", "10.0.0.3"), true, "10.0.0.1", "10.0.0.2", "10.0.0.3")
	}
	if fw.reads != 1 || fw.applies != 1 {
		t.Errorf("steady state: %d reads, %d applies; want no call", fw.reads, fw.applies)
	}
	// A listing hiccup holds revocations and costs no call while nothing
	// else changes.
	cycle(nil, false, "10.0.0.1", "10.0.0.2", "10.0.0.3")
	if fw.applies != 1 {
		t.Errorf("group unknown: %d applies, want none", fw.applies)
	}
	// A replacement: one read, one apply, the old instance's rules revoked.
	cycle(runningInstances("10.0.0.1", "10.0.0.2", "10.0.0.4"), true, "10.0.0.1", "10.0.0.2", "10.0.0.4")
	if fw.applies != 2 || fw.revoked != 4 || fw.authorized != 16 {
		t.Errorf("after a replacement: %d applies, %d revoked, %d authorized; want 4 more each way", fw.applies, fw.revoked, fw.authorized)
	}
	reads := fw.reads
	now = now.Add(cluster.FirewallRecheck)
	cycle(runningInstances("10.0.0.1", "10.0.0.2", "10.0.0.4"), true, "10.0.0.1", "10.0.0.2", "10.0.0.4")
	if fw.reads != reads+1 || fw.applies != 2 {
		t.Errorf("periodic recheck: %d reads (was %d), %d applies; want a read-back and no change", fw.reads, reads, fw.applies)
	}
	// An empty health view changes nothing.
	now = now.Add(cluster.FirewallRecheck)
	f.publish(ctx, map[cluster.ID]cluster.MemberStatus{}, nil, false)
	if fw.applies != 2 {
		t.Errorf("empty view: %d applies, want none", fw.applies)
	}
	if !slices.ContainsFunc(fw.rules, func(r cluster.IngressRule) bool { return r.Description == "monitoring" }) {
		t.Errorf("the foreign rule is gone: %v", fw.rules)
	}
}

func TestAdmitSelf(t *testing.T) {
	a := testAppliance(t)
	fw := &memoryFirewall{failReads: true}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	f := a.housekeeper.firewall
	f.fw, f.spec = fw, &cluster.FirewallSpec{Cluster: "orders", Regions: []string{"r1", "r2"}, Ports: []int{2379}}
	a.self = cluster.Instance{ID: "i-1", Address: "ec2-203-0-113-1.compute-1.amazonaws.com", BindAddress: "10.0.0.1", PublicIP: "203.0.113.1"}
	ctx := context.Background()

	f.admitSelf(ctx)
	f.admitSelf(ctx)
	if fw.reads != 1 || fw.applies != 0 {
		t.Fatalf("failed read: %d reads, %d applies; want one try until admitRetry", fw.reads, fw.applies)
	}
	now = now.Add(admitRetry)
	fw.failReads = false
	f.admitSelf(ctx)
	want := []cluster.IngressRule{
		{Region: "r1", Port: 2379, CIDR: "203.0.113.1/32", Description: "etcd-appliance orders i-1"},
		{Region: "r2", Port: 2379, CIDR: "203.0.113.1/32", Description: "etcd-appliance orders i-1"},
	}
	if !cluster.EqualIngress(fw.rules, want) || fw.applies != 1 {
		t.Fatalf("after admitting: %v (%d applies), want %v", fw.rules, fw.applies, want)
	}
	now = now.Add(time.Hour)
	f.admitSelf(ctx)
	if fw.reads != 2 || fw.applies != 1 {
		t.Errorf("admitted: %d reads, %d applies; want no more calls", fw.reads, fw.applies)
	}
	if a.bindAddress() != "10.0.0.1" {
		t.Errorf("bindAddress() = %q, want the private IP", a.bindAddress())
	}
}
