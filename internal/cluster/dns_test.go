package cluster

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var dnsSpec = DNSSpec{Zone: "Example.org", Name: "etcd", TTL: 60, ClientPort: 2379, PeerPort: 2380}

// dnsVoter is a started member at address addr with the default ports.
func dnsVoter(id ID, name, addr string, healthy bool) MemberStatus {
	return MemberStatus{
		ID: id, Name: name, Role: RoleVoter, Healthy: healthy,
		PeerURL: "http://" + addr + ":2380", ClientURL: "http://" + addr + ":2379",
	}
}

func TestDNSSpecDomainAndValidate(t *testing.T) {
	if got := dnsSpec.Domain(); got != "etcd.example.org." {
		t.Errorf("Domain() = %q", got)
	}
	if err := dnsSpec.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	for _, tt := range []struct {
		name string
		mod  func(*DNSSpec)
		want string
	}{
		{"no zone", func(s *DNSSpec) { s.Zone = "." }, "no hosted zone"},
		{"no name", func(s *DNSSpec) { s.Name = "" }, "no name"},
		{"bad label", func(s *DNSSpec) { s.Name = "my_cluster" }, `label "my_cluster"`},
		{"dash label", func(s *DNSSpec) { s.Name = "-etcd" }, `label "-etcd"`},
		{"zero ttl", func(s *DNSSpec) { s.TTL = 0 }, "TTL 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := dnsSpec
			tt.mod(&s)
			if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestDNSSpecOwns(t *testing.T) {
	for name, want := range map[string]bool{
		"etcd.example.org.":                       true,
		"ETCD.example.org":                        true,
		"i-0abc.etcd.example.org.":                true,
		"_etcd-server._tcp.etcd.example.org.":     true,
		"_etcd-client._tcp.etcd.example.org.":     true,
		"_etcd-server-ssl._tcp.etcd.example.org.": true, // the other TLS variant goes when TLS changes
		"_etcd-client-ssl._tcp.etcd.example.org.": true,
		"_other._tcp.etcd.example.org.":           false,
		"deep.i-0abc.etcd.example.org.":           false,
		"example.org.":                            false,
		"etcd2.example.org.":                      false,
		"i-0abc.etcd2.example.org.":               false,
		"xetcd.example.org.":                      false,
	} {
		if got := dnsSpec.Owns(name); got != want {
			t.Errorf("Owns(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestWantedRecords(t *testing.T) {
	three := []MemberStatus{
		dnsVoter(0xc, "i-0C", "10.0.0.3", true),
		dnsVoter(0xa, "i-0a", "10.0.0.1", true),
		dnsVoter(0xb, "i-0b", "10.0.0.2", true),
	}
	for _, tt := range []struct {
		name    string
		spec    DNSSpec
		members []MemberStatus
		want    []DNSRecord
	}{
		{
			name: "three healthy voters, sorted, names lower case", spec: dnsSpec, members: three,
			want: []DNSRecord{
				{"_etcd-client._tcp.etcd.example.org.", "SRV", 60, []string{
					"0 0 2379 i-0a.etcd.example.org.", "0 0 2379 i-0b.etcd.example.org.", "0 0 2379 i-0c.etcd.example.org."}},
				{"_etcd-server._tcp.etcd.example.org.", "SRV", 60, []string{
					"0 0 2380 i-0a.etcd.example.org.", "0 0 2380 i-0b.etcd.example.org.", "0 0 2380 i-0c.etcd.example.org."}},
				{"etcd.example.org.", "A", 60, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}},
				{"i-0a.etcd.example.org.", "A", 60, []string{"10.0.0.1"}},
				{"i-0b.etcd.example.org.", "A", 60, []string{"10.0.0.2"}},
				{"i-0c.etcd.example.org.", "A", 60, []string{"10.0.0.3"}},
			},
		},
		{
			name: "TLS uses the -ssl services and the URL's ports",
			spec: DNSSpec{Zone: "example.org.", Name: "etcd", TTL: 30, TLS: true},
			members: []MemberStatus{{ID: 0xa, Name: "i-a", Role: RoleVoter, Healthy: true,
				PeerURL: "https://10.0.0.1:12380", ClientURL: "https://10.0.0.1:12379"}},
			want: []DNSRecord{
				{"_etcd-client-ssl._tcp.etcd.example.org.", "SRV", 30, []string{"0 0 12379 i-a.etcd.example.org."}},
				{"_etcd-server-ssl._tcp.etcd.example.org.", "SRV", 30, []string{"0 0 12380 i-a.etcd.example.org."}},
				{"etcd.example.org.", "A", 30, []string{"10.0.0.1"}},
				{"i-a.etcd.example.org.", "A", 30, []string{"10.0.0.1"}},
			},
		},
		{
			name: "unhealthy voters, learners and unstarted members are left out", spec: dnsSpec,
			members: []MemberStatus{
				dnsVoter(0xa, "i-a", "10.0.0.1", true),
				dnsVoter(0xb, "i-b", "10.0.0.2", false),
				{ID: 0xc, Name: "i-c", Role: RoleLearner, Healthy: true, PeerURL: "http://10.0.0.3:2380", ClientURL: "http://10.0.0.3:2379"},
				{ID: 0xd, Role: RoleUnstarted, Healthy: false, PeerURL: "http://10.0.0.4:2380"},
			},
			want: []DNSRecord{
				{"_etcd-client._tcp.etcd.example.org.", "SRV", 60, []string{"0 0 2379 i-a.etcd.example.org."}},
				{"_etcd-server._tcp.etcd.example.org.", "SRV", 60, []string{"0 0 2380 i-a.etcd.example.org."}},
				{"etcd.example.org.", "A", 60, []string{"10.0.0.1"}},
				{"i-a.etcd.example.org.", "A", 60, []string{"10.0.0.1"}},
			},
		},
		{
			name: "a name that is no DNS label falls back to the member id; IPv6 gets AAAA", spec: dnsSpec,
			members: []MemberStatus{{ID: 0x8e9e05c52164694d, Name: "node_1", Role: RoleVoter, Healthy: true,
				PeerURL: "http://[fd00::1]:2380", ClientURL: "http://[fd00::1]:2379"}},
			want: []DNSRecord{
				{"8e9e05c52164694d.etcd.example.org.", "AAAA", 60, []string{"fd00::1"}},
				{"_etcd-client._tcp.etcd.example.org.", "SRV", 60, []string{"0 0 2379 8e9e05c52164694d.etcd.example.org."}},
				{"_etcd-server._tcp.etcd.example.org.", "SRV", 60, []string{"0 0 2380 8e9e05c52164694d.etcd.example.org."}},
				{"etcd.example.org.", "AAAA", 60, []string{"fd00::1"}},
			},
		},
		{
			name: "a member advertising a host name is the SRV target itself", spec: dnsSpec,
			members: []MemberStatus{{ID: 0xa, Name: "i-a", Role: RoleVoter, Healthy: true,
				PeerURL: "http://ec2-1-2-3-4.compute.amazonaws.com:2380", ClientURL: "http://ec2-1-2-3-4.compute.amazonaws.com:2379"}},
			want: []DNSRecord{
				{"_etcd-client._tcp.etcd.example.org.", "SRV", 60, []string{"0 0 2379 ec2-1-2-3-4.compute.amazonaws.com."}},
				{"_etcd-server._tcp.etcd.example.org.", "SRV", 60, []string{"0 0 2380 ec2-1-2-3-4.compute.amazonaws.com."}},
			},
		},
		{
			name: "multi-region: the cluster name holds the public IPs of members advertising host names", spec: dnsSpec,
			members: []MemberStatus{
				{ID: 0xa, Name: "i-a", Role: RoleVoter, Healthy: true, PublicIP: "1.2.3.4",
					PeerURL: "http://ec2-1-2-3-4.compute.amazonaws.com:2380", ClientURL: "http://ec2-1-2-3-4.compute.amazonaws.com:2379"},
				{ID: 0xb, Name: "i-b", Role: RoleVoter, Healthy: true, PublicIP: "5.6.7.8",
					PeerURL: "http://ec2-5-6-7-8.eu-west-1.compute.amazonaws.com:2380", ClientURL: "http://ec2-5-6-7-8.eu-west-1.compute.amazonaws.com:2379"},
				{ID: 0xc, Name: "i-c", Role: RoleVoter, Healthy: false, PublicIP: "9.9.9.9",
					PeerURL: "http://ec2-9-9-9-9.compute.amazonaws.com:2380", ClientURL: "http://ec2-9-9-9-9.compute.amazonaws.com:2379"},
			},
			want: []DNSRecord{
				{"_etcd-client._tcp.etcd.example.org.", "SRV", 60, []string{"0 0 2379 ec2-1-2-3-4.compute.amazonaws.com.", "0 0 2379 ec2-5-6-7-8.eu-west-1.compute.amazonaws.com."}},
				{"_etcd-server._tcp.etcd.example.org.", "SRV", 60, []string{"0 0 2380 ec2-1-2-3-4.compute.amazonaws.com.", "0 0 2380 ec2-5-6-7-8.eu-west-1.compute.amazonaws.com."}},
				{"etcd.example.org.", "A", 60, []string{"1.2.3.4", "5.6.7.8"}},
			},
		},
		{
			name: "URLs without a port take the spec's ports", spec: dnsSpec,
			members: []MemberStatus{{ID: 0xa, Name: "i-a", Role: RoleVoter, Healthy: true,
				PeerURL: "http://10.0.0.1", ClientURL: "http://10.0.0.1"}},
			want: []DNSRecord{
				{"_etcd-client._tcp.etcd.example.org.", "SRV", 60, []string{"0 0 2379 i-a.etcd.example.org."}},
				{"_etcd-server._tcp.etcd.example.org.", "SRV", 60, []string{"0 0 2380 i-a.etcd.example.org."}},
				{"etcd.example.org.", "A", 60, []string{"10.0.0.1"}},
				{"i-a.etcd.example.org.", "A", 60, []string{"10.0.0.1"}},
			},
		},
		{name: "nobody healthy", spec: dnsSpec, members: []MemberStatus{dnsVoter(0xa, "i-a", "10.0.0.1", false)}, want: []DNSRecord{}},
		{name: "no members", spec: dnsSpec, want: []DNSRecord{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := WantedRecords(tt.spec, tt.members)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("WantedRecords() =\n%s\nwant\n%s", recordLines(got), recordLines(tt.want))
			}
			for _, r := range got {
				if !tt.spec.Owns(r.Name) {
					t.Errorf("wanted record %s is not owned by the spec: it would never be deleted", r)
				}
			}
		})
	}
}

func TestWantedRecordsOrderIndependent(t *testing.T) {
	a := []MemberStatus{dnsVoter(0xa, "i-a", "10.0.0.1", true), dnsVoter(0xb, "i-b", "10.0.0.2", true)}
	b := []MemberStatus{a[1], a[0]}
	if !reflect.DeepEqual(WantedRecords(dnsSpec, a), WantedRecords(dnsSpec, b)) {
		t.Error("the member order changed the wanted records")
	}
}

func TestDiffRecords(t *testing.T) {
	three := WantedRecords(dnsSpec, []MemberStatus{
		dnsVoter(0xa, "i-a", "10.0.0.1", true), dnsVoter(0xb, "i-b", "10.0.0.2", true), dnsVoter(0xc, "i-c", "10.0.0.3", true),
	})
	// i-c replaced by i-d at a new address.
	replaced := WantedRecords(dnsSpec, []MemberStatus{
		dnsVoter(0xa, "i-a", "10.0.0.1", true), dnsVoter(0xb, "i-b", "10.0.0.2", true), dnsVoter(0xd, "i-d", "10.0.0.4", true),
	})
	foreign := []DNSRecord{
		{"www.example.org.", "A", 300, []string{"192.0.2.1"}},
		{"etcd.example.org.", "TXT", 300, []string{`"owner=ops"`}},
		{"x.i-a.etcd.example.org.", "A", 300, []string{"192.0.2.2"}},
		{"etcd2.example.org.", "A", 60, []string{"10.0.9.9"}},
	}
	find := func(rs []DNSRecord, name string) DNSRecord {
		for _, r := range rs {
			if r.Name == name {
				return r
			}
		}
		t.Fatalf("no record %s", name)
		return DNSRecord{}
	}
	for _, tt := range []struct {
		name             string
		want, have       []DNSRecord
		upserts, deletes []string // record names
	}{
		{name: "empty zone: everything is upserted", want: three,
			upserts: []string{"_etcd-client._tcp.etcd.example.org.", "_etcd-server._tcp.etcd.example.org.",
				"etcd.example.org.", "i-a.etcd.example.org.", "i-b.etcd.example.org.", "i-c.etcd.example.org."}},
		{name: "in shape: no change", want: three, have: append(append([]DNSRecord{}, three...), foreign...)},
		{name: "values in another order and upper case: no change", want: three, have: func() []DNSRecord {
			have := append([]DNSRecord{}, three...)
			r := find(have, "etcd.example.org.")
			have[2] = DNSRecord{Name: "ETCD.example.org", Type: "A", TTL: r.TTL, Values: []string{"10.0.0.3", "10.0.0.1", "10.0.0.2"}}
			srv := find(have, "_etcd-client._tcp.etcd.example.org.")
			have[0] = DNSRecord{Name: srv.Name, Type: "SRV", TTL: 60, Values: []string{
				"0 0 2379 I-C.etcd.example.org.", "0 0 2379 i-b.etcd.example.org.", "0 0 2379 i-a.etcd.example.org."}}
			return have
		}()},
		{name: "a member replaced: the three multi-value records and the new member upserted, the old member deleted",
			want: replaced, have: append(append([]DNSRecord{}, three...), foreign...),
			upserts: []string{"_etcd-client._tcp.etcd.example.org.", "_etcd-server._tcp.etcd.example.org.",
				"etcd.example.org.", "i-d.etcd.example.org."},
			deletes: []string{"i-c.etcd.example.org."}},
		{name: "a TTL changed", want: three, have: func() []DNSRecord {
			have := append([]DNSRecord{}, three...)
			have[3] = DNSRecord{Name: have[3].Name, Type: have[3].Type, TTL: 300, Values: have[3].Values}
			return have
		}(), upserts: []string{"i-a.etcd.example.org."}},
		{name: "nothing wanted: every owned record goes, foreign ones stay", have: append(append([]DNSRecord{}, three...), foreign...),
			deletes: []string{"_etcd-client._tcp.etcd.example.org.", "_etcd-server._tcp.etcd.example.org.",
				"etcd.example.org.", "i-a.etcd.example.org.", "i-b.etcd.example.org.", "i-c.etcd.example.org."}},
		{name: "TLS switched on: the plain services go", want: WantedRecords(DNSSpec{Zone: "example.org", Name: "etcd", TTL: 60, TLS: true},
			[]MemberStatus{dnsVoter(0xa, "i-a", "10.0.0.1", true), dnsVoter(0xb, "i-b", "10.0.0.2", true), dnsVoter(0xc, "i-c", "10.0.0.3", true)}),
			have:    three,
			upserts: []string{"_etcd-client-ssl._tcp.etcd.example.org.", "_etcd-server-ssl._tcp.etcd.example.org."},
			deletes: []string{"_etcd-client._tcp.etcd.example.org.", "_etcd-server._tcp.etcd.example.org."}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up, del := DiffRecords(tt.want, tt.have, dnsSpec.Owns)
			if got := recordNames(up); !reflect.DeepEqual(got, tt.upserts) {
				t.Errorf("upserts = %q, want %q", got, tt.upserts)
			}
			if got := recordNames(del); !reflect.DeepEqual(got, tt.deletes) {
				t.Errorf("deletes = %q, want %q", got, tt.deletes)
			}
			for _, d := range del {
				if !reflect.DeepEqual(d, find(tt.have, d.Name)) {
					t.Errorf("delete %s is not the record as read", d)
				}
			}
			for _, u := range up {
				if !reflect.DeepEqual(u, find(tt.want, u.Name)) {
					t.Errorf("upsert %s is not the wanted record", u)
				}
			}
		})
	}
}

func TestDecideDNS(t *testing.T) {
	members := []MemberStatus{dnsVoter(0xa, "i-a", "10.0.0.1", true), dnsVoter(0xb, "i-b", "10.0.0.2", true)}
	published := WantedRecords(dnsSpec, members)

	if p := DecideDNS(dnsSpec, members, published, false); !p.Empty() || p.Held != "" {
		t.Errorf("in shape: plan %+v, want no change", p)
	}
	p := DecideDNS(dnsSpec, members[:1], published, false)
	if got := recordNames(p.Deletes); !reflect.DeepEqual(got, []string{"i-b.etcd.example.org."}) {
		t.Errorf("one member gone: deletes %q", got)
	}
	if len(p.Upserts) != 3 {
		t.Errorf("one member gone: upserts %q, want the SRVs and the cluster A", recordNames(p.Upserts))
	}
	for _, view := range [][]MemberStatus{nil, {dnsVoter(0xa, "i-a", "10.0.0.1", false)}} {
		p := DecideDNS(dnsSpec, view, published, false)
		if !p.Empty() || p.Held == "" {
			t.Errorf("empty health view %v: plan %+v, want the records held", view, p)
		}
	}
	p = DecideDNS(dnsSpec, nil, published, true)
	if len(p.Deletes) != len(published) || len(p.Upserts) != 0 || p.Held != "" {
		t.Errorf("withdraw: plan %+v, want every record deleted", p)
	}
}

func TestDNSCheckDue(t *testing.T) {
	want := WantedRecords(dnsSpec, []MemberStatus{dnsVoter(0xa, "i-a", "10.0.0.1", true)})
	other := WantedRecords(dnsSpec, []MemberStatus{dnsVoter(0xb, "i-b", "10.0.0.2", true)})
	for _, tt := range []struct {
		name     string
		synced   []DNSRecord
		lastRead time.Time
		now      time.Time
		due      bool
	}{
		{"never read", want, time.Time{}, t0, true},
		{"read recently, unchanged", want, t0, t0.Add(DNSRecheck - time.Second), false},
		{"read recently, members changed", other, t0, t0.Add(time.Second), true},
		{"recheck due", want, t0, t0.Add(DNSRecheck), true},
	} {
		if got := DNSCheckDue(want, tt.synced, tt.lastRead, tt.now); got != tt.due {
			t.Errorf("%s: DNSCheckDue = %v, want %v", tt.name, got, tt.due)
		}
	}
}

func recordNames(rs []DNSRecord) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func recordLines(rs []DNSRecord) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString("  " + r.String() + "\n")
	}
	return b.String()
}

func TestCertNames(t *testing.T) {
	spec := DNSSpec{Zone: "Example.org.", Name: "etcd", TTL: 60, TLS: true}
	if got, want := spec.CertNames("i-0ABC"), []string{"i-0abc.etcd.example.org", "etcd.example.org"}; !slices.Equal(got, want) {
		t.Errorf("CertNames(i-0ABC) = %q, want %q", got, want)
	}
	if got, want := spec.CertNames("not a label"), []string{"etcd.example.org"}; !slices.Equal(got, want) {
		t.Errorf("CertNames(not a label) = %q, want %q", got, want)
	}
}
