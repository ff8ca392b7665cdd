package cluster

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestIDText(t *testing.T) {
	for _, id := range []ID{0, 1, 0xa, 0x8e9e05c52164694d, ^ID(0)} {
		b, err := id.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != id.String() {
			t.Errorf("MarshalText(%d) = %q, String() = %q", uint64(id), b, id.String())
		}
		var back ID
		if err := back.UnmarshalText(b); err != nil || back != id {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", b, back, err, id)
		}
	}
	if got := ID(0x8e9e05c52164694d).String(); got != "8e9e05c52164694d" {
		t.Errorf("String() = %q, want etcdctl's hex", got)
	}
	var id ID = 7
	if err := id.UnmarshalText(nil); err != nil || id != 0 {
		t.Errorf("empty text: id %v err %v, want 0 and no error", id, err)
	}
	if err := id.UnmarshalText([]byte("not-hex")); err == nil {
		t.Error("UnmarshalText(not-hex) succeeded")
	}
}

func TestIDJSON(t *testing.T) {
	in := struct {
		Member  ID          `json:"member"`
		Healthy map[ID]bool `json:"healthy"`
	}{Member: 0xab, Healthy: map[ID]bool{0xcd: true}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"member":"ab","healthy":{"cd":true}}`; string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	out := in
	out.Member, out.Healthy = 0, nil
	if err := json.Unmarshal(b, &out); err != nil || !reflect.DeepEqual(out, in) {
		t.Errorf("round trip = %+v, %v; want %+v", out, err, in)
	}
}

func TestInstanceStateInGroup(t *testing.T) {
	for state, want := range map[InstanceState]bool{
		InstancePending: true, InstanceRunning: true,
		InstanceStopping: false, InstanceStopped: false, InstanceTerminated: false, "": false, "shutting-down": false,
	} {
		if got := state.InGroup(); got != want {
			t.Errorf("%q.InGroup() = %v, want %v", state, got, want)
		}
	}
}

func TestPortsURLs(t *testing.T) {
	p := Ports{Client: 12379, Peer: 12380}
	tests := []struct{ got, want string }{
		{p.PeerURL("http", "10.0.0.1"), "http://10.0.0.1:12380"},
		{p.ClientURL("https", "10.0.0.1"), "https://10.0.0.1:12379"},
		{p.PeerURL("https", "fd00::1"), "https://[fd00::1]:12380"},
		{DefaultPorts.PeerURL("http", "127.0.0.2"), "http://127.0.0.2:2380"},
		{DefaultPorts.ClientURL("http", "127.0.0.2"), "http://127.0.0.2:2379"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	if DefaultPorts != (Ports{Client: 2379, Peer: 2380, Metrics: 2381, API: 2378}) {
		t.Errorf("DefaultPorts = %+v, want SPEC §5's", DefaultPorts)
	}
}

func TestMemberHasPeerHost(t *testing.T) {
	tests := []struct {
		name     string
		peerURLs []string
		address  string
		want     bool
	}{
		{"same host", []string{"http://10.0.0.3:2380"}, "10.0.0.3", true},
		{"same host, other port", []string{"https://10.0.0.3:12380"}, "10.0.0.3", true},
		{"second url", []string{"http://10.0.0.9:2380", "http://10.0.0.3:2380"}, "10.0.0.3", true},
		{"longer address with my address as prefix", []string{"http://10.0.0.30:2380"}, "10.0.0.3", false},
		{"other host", []string{"http://10.0.0.4:2380"}, "10.0.0.3", false},
		{"ipv6", []string{"http://[fd00::3]:2380"}, "fd00::3", true},
		{"dns name", []string{"https://ec2-1-2-3-4.compute.amazonaws.com:2380"}, "ec2-1-2-3-4.compute.amazonaws.com", true},
		{"unparsable url", []string{"http://%zz"}, "10.0.0.3", false},
		{"no urls", nil, "10.0.0.3", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (Member{PeerURLs: tt.peerURLs}).HasPeerHost(tt.address); got != tt.want {
				t.Errorf("HasPeerHost(%q) on %v = %v, want %v", tt.address, tt.peerURLs, got, tt.want)
			}
		})
	}
}

func TestMemberHasPeerURL(t *testing.T) {
	m := Member{PeerURLs: []string{"http://10.0.0.3:2380", "http://10.0.0.4:2380"}}
	for u, want := range map[string]bool{
		"http://10.0.0.4:2380":  true,
		"http://10.0.0.3:2380":  true,
		"https://10.0.0.3:2380": false,
		"http://10.0.0.3:2381":  false,
		"http://10.0.0.30:2380": false,
	} {
		if got := m.HasPeerURL(u); got != want {
			t.Errorf("HasPeerURL(%q) = %v, want %v", u, got, want)
		}
	}
}

func TestMemberStartedAndByName(t *testing.T) {
	if (Member{ID: 1}).Started() {
		t.Error("a member without a name is reported started")
	}
	if (Member{ID: 1, Name: "i-a"}).Started() {
		t.Error("a named member without client URLs (an initial member that never ran) is reported started")
	}
	if !(Member{ID: 1, Name: "i-a", ClientURLs: []string{"http://10.0.0.1:2379"}}).Started() {
		t.Error("a member that published its client URLs is reported unstarted")
	}
	v := &ClusterView{Members: []Member{{ID: 1}, {ID: 2, Name: "i-a"}, {ID: 3, Name: "i-b"}}}
	if _, ok := v.MemberByName(""); ok {
		t.Error(`MemberByName("") matched an unnamed member`)
	}
	if m, ok := v.MemberByName("i-b"); !ok || m.ID != 3 {
		t.Errorf("MemberByName(i-b) = %v, %v", m, ok)
	}
	if _, ok := v.MemberByName("i-z"); ok {
		t.Error("MemberByName(i-z) found a member")
	}
}

func TestClusterStatusHealthyVoters(t *testing.T) {
	s := ClusterStatus{Members: []MemberStatus{
		{Role: RoleVoter, Healthy: true},
		{Role: RoleVoter, Healthy: false},
		{Role: RoleLearner, Healthy: true},
		{Role: RoleUnstarted, Healthy: true},
		{Role: RoleVoter, Healthy: true},
	}}
	if got := s.HealthyVoters(); got != 2 {
		t.Errorf("HealthyVoters() = %d, want 2", got)
	}
}
