package cluster

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var fwSpec = FirewallSpec{Cluster: "stack-a", Regions: []string{"eu-west-1", "us-east-1"}, Ports: []int{2379, 2380}}

// fwRules are the rules of spec for instance id at ip, in every region and
// port, sorted as WantedIngress sorts.
func fwRules(id, ip string) []IngressRule {
	var out []IngressRule
	for _, region := range fwSpec.Regions {
		for _, port := range fwSpec.Ports {
			out = append(out, IngressRule{Region: region, Port: port, CIDR: ip + "/32", Description: fwSpec.Description(id)})
		}
	}
	return out
}

func fwCat(parts ...[]IngressRule) []IngressRule {
	var out []IngressRule
	for _, p := range parts {
		out = append(out, p...)
	}
	sortRules(out)
	return out
}

func fwMember(name, host string, healthy bool) MemberStatus {
	return MemberStatus{Name: name, Role: RoleVoter, Healthy: healthy,
		PeerURL: "http://" + host + ":2380", ClientURL: "http://" + host + ":2379"}
}

// multiRegionInstance is an instance as the multi-region listing has it.
func multiRegionInstance(id, publicIP, privateIP string, state InstanceState) Instance {
	inst := Instance{ID: id, State: state, BindAddress: privateIP, PublicIP: publicIP, Address: privateIP}
	if publicIP != "" {
		inst.Address = "ec2-" + strings.ReplaceAll(publicIP, ".", "-") + ".compute-1.amazonaws.com"
	}
	return inst
}

func TestFirewallIP(t *testing.T) {
	for _, tt := range []struct {
		name string
		inst Instance
		want string
	}{
		{"public IP first", multiRegionInstance("i-1", "203.0.113.1", "10.0.0.1", InstanceRunning), "203.0.113.1"},
		{"no public address: the private one", multiRegionInstance("i-1", "", "127.0.1.4", InstanceRunning), "127.0.1.4"},
		{"single region: the address", Instance{ID: "i-1", Address: "10.0.0.1"}, "10.0.0.1"},
		{"host name only, bind address", Instance{ID: "i-1", Address: "host.example", BindAddress: "10.0.0.1"}, "10.0.0.1"},
		{"IPv6 gets no rule", Instance{ID: "i-1", Address: "fd00::1"}, ""},
		{"nothing", Instance{ID: "i-1"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := FirewallIP(tt.inst); got != tt.want {
				t.Errorf("FirewallIP(%+v) = %q, want %q", tt.inst, got, tt.want)
			}
		})
	}
}

func TestFirewallSpecOwns(t *testing.T) {
	for _, tt := range []struct {
		desc string
		want bool
	}{
		{"etcd-appliance stack-a i-1", true},
		{"etcd-appliance stack-a", true},
		{"etcd-appliance stack-ab i-1", false},
		{"etcd-appliance stack-b i-1", false},
		{"", false},
		{"ssh from the office", false},
	} {
		if got := fwSpec.Owns(IngressRule{Description: tt.desc}); got != tt.want {
			t.Errorf("Owns(%q) = %v, want %v", tt.desc, got, tt.want)
		}
	}
}

func TestFirewallSpecValidate(t *testing.T) {
	if err := fwSpec.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		spec FirewallSpec
		want string
	}{
		{"no cluster", FirewallSpec{Regions: []string{"r"}, Ports: []int{1}}, "cluster name"},
		{"cluster with a space", FirewallSpec{Cluster: "a b", Regions: []string{"r"}, Ports: []int{1}}, "cluster name"},
		{"no region", FirewallSpec{Cluster: "a", Ports: []int{1}}, "no region"},
		{"no port", FirewallSpec{Cluster: "a", Regions: []string{"r"}}, "no port"},
		{"bad port", FirewallSpec{Cluster: "a", Regions: []string{"r"}, Ports: []int{0}}, "port 0"},
	} {
		if err := tt.spec.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestDecideFirewall(t *testing.T) {
	i1 := multiRegionInstance("i-1", "203.0.113.1", "10.0.0.1", InstanceRunning)
	i2 := multiRegionInstance("i-2", "198.51.100.2", "10.1.0.2", InstanceRunning)
	i3 := multiRegionInstance("i-3", "192.0.2.3", "10.0.0.3", InstanceRunning)
	m1 := fwMember("i-1", i1.Address, true)
	m2 := fwMember("i-2", i2.Address, true)
	m3 := fwMember("i-3", i3.Address, true)
	foreign := IngressRule{Region: "us-east-1", Port: 2379, CIDR: "192.0.2.99/32", Description: "monitoring"}
	foreignSame := IngressRule{Region: "us-east-1", Port: 2379, CIDR: "203.0.113.1/32", Description: "opened by hand"}
	other := IngressRule{Region: "us-east-1", Port: 2379, CIDR: "192.0.2.3/32", Description: "etcd-appliance stack-b i-3"}

	tests := []struct {
		name string
		in   FirewallInputs
		have []IngressRule
		want FirewallPlan
	}{
		{
			name: "fresh: every member authorized in every region",
			in:   FirewallInputs{Members: []MemberStatus{m1, m2, m3}, Group: []Instance{i1, i2, i3}, GroupKnown: true},
			want: FirewallPlan{Authorize: fwCat(fwRules("i-1", "203.0.113.1"), fwRules("i-2", "198.51.100.2"), fwRules("i-3", "192.0.2.3"))},
		},
		{
			name: "in shape: nothing to do, foreign rules ignored",
			in:   FirewallInputs{Members: []MemberStatus{m1, m2}, Group: []Instance{i1, i2}, GroupKnown: true},
			have: fwCat(fwRules("i-1", "203.0.113.1"), fwRules("i-2", "198.51.100.2"), []IngressRule{foreign, other}),
			want: FirewallPlan{},
		},
		{
			name: "terminated and removed: its rules revoked, foreign rules untouched",
			in:   FirewallInputs{Members: []MemberStatus{m1, m2}, Group: []Instance{i1, i2}, GroupKnown: true},
			have: fwCat(fwRules("i-1", "203.0.113.1"), fwRules("i-2", "198.51.100.2"), fwRules("i-3", "192.0.2.3"), []IngressRule{foreign}),
			want: FirewallPlan{Revoke: fwRules("i-3", "192.0.2.3")},
		},
		{
			name: "terminated but still a member: listed as terminated, revoked",
			in: FirewallInputs{Members: []MemberStatus{m1, m2, m3}, GroupKnown: true,
				Group: []Instance{i1, i2, multiRegionInstance("i-3", "192.0.2.3", "10.0.0.3", InstanceTerminated)}},
			have: fwCat(fwRules("i-1", "203.0.113.1"), fwRules("i-2", "198.51.100.2"), fwRules("i-3", "192.0.2.3")),
			want: FirewallPlan{Revoke: fwRules("i-3", "192.0.2.3")},
		},
		{
			name: "member missing from the listing keeps its rules while a member",
			in:   FirewallInputs{Members: []MemberStatus{m1, m2, m3}, Group: []Instance{i1, i2}, GroupKnown: true},
			have: fwCat(fwRules("i-1", "203.0.113.1"), fwRules("i-2", "198.51.100.2"), fwRules("i-3", "192.0.2.3")),
			want: FirewallPlan{},
		},
		{
			name: "a new instance, not a member yet, is authorized so that it can join",
			in:   FirewallInputs{Members: []MemberStatus{m1, m2}, Group: []Instance{i1, i2, i3}, GroupKnown: true},
			have: fwCat(fwRules("i-1", "203.0.113.1"), fwRules("i-2", "198.51.100.2")),
			want: FirewallPlan{Authorize: fwRules("i-3", "192.0.2.3")},
		},
		{
			name: "replacement: old revoked, new authorized in one plan",
			in:   FirewallInputs{Members: []MemberStatus{m1, m2, m3}, Group: []Instance{i1, i2, i3}, GroupKnown: true},
			have: fwCat(fwRules("i-1", "203.0.113.1"), fwRules("i-2", "198.51.100.2"), fwRules("i-9", "192.0.2.9")),
			want: FirewallPlan{Authorize: fwRules("i-3", "192.0.2.3"), Revoke: fwRules("i-9", "192.0.2.9")},
		},
		{
			name: "a rule another owns on the same address is not authorized again",
			in:   FirewallInputs{Members: []MemberStatus{m1}, Group: []Instance{i1}, GroupKnown: true},
			have: fwCat(slices.Delete(fwRules("i-1", "203.0.113.1"), 2, 3), []IngressRule{foreignSame}), // us-east-1 tcp/2379 is foreignSame
			want: FirewallPlan{},
		},
		{
			name: "an unhealthy member keeps its rules: cut off, it could never recover",
			in: FirewallInputs{Members: []MemberStatus{m1, m2, fwMember("i-3", i3.Address, false)},
				Group: []Instance{i1, i2, i3}, GroupKnown: true},
			have: fwCat(fwRules("i-1", "203.0.113.1"), fwRules("i-2", "198.51.100.2"), fwRules("i-3", "192.0.2.3")),
			want: FirewallPlan{},
		},
		{
			name: "group unknown: authorizes, holds revocations",
			in:   FirewallInputs{Members: []MemberStatus{m1, fwMember("i-2", "10.1.0.2", true)}},
			have: fwCat(fwRules("i-3", "192.0.2.3"), fwRules("i-1", "203.0.113.1")),
			want: FirewallPlan{Authorize: fwRules("i-2", "10.1.0.2"),
				Held: "group unknown: keeping 4 rules that may belong to instances not listed"},
		},
		{
			name: "empty health view holds everything",
			in:   FirewallInputs{Group: []Instance{i1}, GroupKnown: true},
			have: fwCat(fwRules("i-3", "192.0.2.3")),
			want: FirewallPlan{Held: "no healthy member in the view: keeping the ingress rules"},
		},
		{
			name: "no healthy member holds everything",
			in:   FirewallInputs{Members: []MemberStatus{fwMember("i-1", i1.Address, false)}, Group: []Instance{i1}, GroupKnown: true},
			have: fwCat(fwRules("i-3", "192.0.2.3")),
			want: FirewallPlan{Held: "no healthy member in the view: keeping the ingress rules"},
		},
		{
			name: "nothing with an IPv4 address holds everything",
			in:   FirewallInputs{Members: []MemberStatus{fwMember("i-1", "fd00::1", true)}, Group: []Instance{{ID: "i-1", Address: "fd00::1", State: InstanceRunning}}, GroupKnown: true},
			have: fwCat(fwRules("i-3", "192.0.2.3")),
			want: FirewallPlan{Held: "no member or instance with an IPv4 address: keeping the ingress rules"},
		},
		{
			name: "moto: no public addresses, the private ones are allowed",
			in: FirewallInputs{Members: []MemberStatus{fwMember("i-1", "127.0.9.4", true)}, GroupKnown: true,
				Group: []Instance{multiRegionInstance("i-1", "", "127.0.9.4", InstanceRunning), multiRegionInstance("i-2", "", "127.0.8.4", InstancePending)}},
			want: FirewallPlan{Authorize: fwCat(fwRules("i-1", "127.0.9.4"), fwRules("i-2", "127.0.8.4"))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DecideFirewall(fwSpec, tt.in, tt.have)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecideFirewall() =\n  %+v\nwant\n  %+v", got, tt.want)
			}
			// Applying the plan and deciding again changes nothing more.
			if got.Held == "" {
				after := AppliedIngress(tt.have, got)
				if again := DecideFirewall(fwSpec, tt.in, after); !again.Empty() {
					t.Errorf("after applying, DecideFirewall() = %+v, want no change", again)
				}
			}
		})
	}
}

func TestFirewallCheckDue(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	a := fwRules("i-1", "203.0.113.1")
	b := fwCat(a, fwRules("i-2", "198.51.100.2"))
	relabelled := fwRules("i-1", "203.0.113.1")
	relabelled[0].Description = "other"
	for _, tt := range []struct {
		name           string
		want, lastWant []IngressRule
		lastRead       time.Time
		due            bool
	}{
		{"never read", a, a, time.Time{}, true},
		{"same rules, read recently", a, a, now.Add(-time.Minute), false},
		{"same rules, descriptions aside", a, relabelled, now.Add(-time.Minute), false},
		{"wanted rules changed", b, a, now.Add(-time.Minute), true},
		{"recheck due", a, a, now.Add(-FirewallRecheck), true},
	} {
		if got := FirewallCheckDue(tt.want, tt.lastWant, tt.lastRead, now); got != tt.due {
			t.Errorf("%s: FirewallCheckDue() = %v, want %v", tt.name, got, tt.due)
		}
	}
}
