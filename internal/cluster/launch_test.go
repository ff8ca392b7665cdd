package cluster

import (
	"reflect"
	"slices"
	"testing"
)

// The launch fixtures reuse the housekeeping members: member 0xN is named
// i-N with the peer URL http://i-N:2380 (voter, learner, unstarted).

const launchToken = "etcd-cluster-a"

func TestLaunchSingleMember(t *testing.T) {
	self, url := "i-a", "http://10.0.0.1:2380"
	only := []NamedPeer{{Name: self, PeerURL: url}}
	tests := []struct {
		name string
		got  Launch
		want Launch
	}{
		{"on data: the membership comes from the WAL, voters kept",
			LaunchOnData(self, url, launchToken),
			Launch{InitialCluster: only, State: StateExisting, Token: launchToken}},
		{"forced: existing data made a one-member cluster, voters kept until it runs",
			LaunchForced(self, url, launchToken),
			Launch{InitialCluster: only, State: StateExisting, Token: launchToken, ForceNewCluster: true}},
		{"new cluster: state new, the member its only voter",
			LaunchNewCluster(self, url, launchToken),
			Launch{InitialCluster: only, State: StateNew, Token: launchToken, Voters: []string{self}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("launch = %+v, want %+v", tt.got, tt.want)
			}
		})
	}
}

func TestLaunchOffer(t *testing.T) {
	newOffer := func() *BootstrapOffer {
		return &BootstrapOffer{Token: "offer-token-1", Members: []NamedPeer{
			{Name: "i-c", PeerURL: "http://10.0.0.3:2380"},
			{Name: "i-a", PeerURL: "http://10.0.0.1:2380"},
			{Name: "i-b", PeerURL: "http://10.0.0.2:2380"},
		}}
	}
	offer, pristine := newOffer(), newOffer()
	got := LaunchOffer(offer)

	if got.State != StateNew {
		t.Errorf("State = %q, want %q: an offer creates the cluster", got.State, StateNew)
	}
	if got.Token != pristine.Token {
		t.Errorf("Token = %q, want the offer's %q", got.Token, pristine.Token)
	}
	if got.ForceNewCluster {
		t.Error("ForceNewCluster set for a bootstrap")
	}
	if want := []string{"i-a", "i-b", "i-c"}; !slices.Equal(got.Voters, want) {
		t.Errorf("Voters = %v, want %v (every offered member, sorted)", got.Voters, want)
	}
	if !slices.Equal(got.InitialCluster, pristine.Members) {
		t.Errorf("InitialCluster = %v, want the offer's members %v", got.InitialCluster, pristine.Members)
	}

	got.InitialCluster[0].Name = "mutated"
	got.InitialCluster = append(got.InitialCluster[:1], NamedPeer{Name: "extra"})
	if !reflect.DeepEqual(offer, pristine) {
		t.Errorf("changing the launch changed the offer: %+v, want %+v", offer, pristine)
	}
}

func TestLaunchJoin(t *testing.T) {
	const self = "i-self"
	selfURL := "http://i-d:2380"
	twoURLs := voter(0xb)
	twoURLs.PeerURLs = []string{"http://i-b:2380", "http://i-b.other:2380"}
	tests := []struct {
		name        string
		ms          []Member
		wantCluster []NamedPeer
		wantVoters  []string
	}{
		{
			name: "this instance added as a learner: its unnamed entry is named self",
			ms:   []Member{voter(0xb), voter(0xa), unstarted(0xd)},
			wantCluster: []NamedPeer{
				{Name: "i-b", PeerURL: "http://i-b:2380"},
				{Name: "i-a", PeerURL: "http://i-a:2380"},
				{Name: self, PeerURL: selfURL},
			},
			wantVoters: []string{"i-a", "i-b"},
		},
		{
			name: "this instance's entry is matched by peer URL, whatever its recorded name",
			ms:   []Member{voter(0xa), {ID: 0xd, Name: "i-old", PeerURLs: []string{selfURL}, IsLearner: true}},
			wantCluster: []NamedPeer{
				{Name: "i-a", PeerURL: "http://i-a:2380"},
				{Name: self, PeerURL: selfURL},
			},
			wantVoters: []string{"i-a"},
		},
		{
			name: "other unstarted members get unique placeholder names",
			ms:   []Member{voter(0xa), unstarted(0xe), unstarted(0xf), unstarted(0xd)},
			wantCluster: []NamedPeer{
				{Name: "i-a", PeerURL: "http://i-a:2380"},
				{Name: "unstarted-e", PeerURL: "http://i-e:2380"},
				{Name: "unstarted-f", PeerURL: "http://i-f:2380"},
				{Name: self, PeerURL: selfURL},
			},
			wantVoters: []string{"i-a"},
		},
		{
			name: "a member with two peer URLs gives two entries under one name",
			ms:   []Member{voter(0xa), twoURLs, unstarted(0xd)},
			wantCluster: []NamedPeer{
				{Name: "i-a", PeerURL: "http://i-a:2380"},
				{Name: "i-b", PeerURL: "http://i-b:2380"},
				{Name: "i-b", PeerURL: "http://i-b.other:2380"},
				{Name: self, PeerURL: selfURL},
			},
			wantVoters: []string{"i-a", "i-b"},
		},
		{
			name: "a voter without a name: voters unknown, its entry still listed",
			ms:   []Member{voter(0xa), {ID: 0xe, PeerURLs: []string{"http://i-e:2380"}}, unstarted(0xd)},
			wantCluster: []NamedPeer{
				{Name: "i-a", PeerURL: "http://i-a:2380"},
				{Name: "unstarted-e", PeerURL: "http://i-e:2380"},
				{Name: self, PeerURL: selfURL},
			},
			wantVoters: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := LaunchJoin(tt.ms, self, selfURL, launchToken)
			if got.State != StateExisting {
				t.Errorf("State = %q, want %q: a join never creates a cluster", got.State, StateExisting)
			}
			if got.Token != launchToken || got.ForceNewCluster {
				t.Errorf("Token, ForceNewCluster = %q, %v; want %q, false", got.Token, got.ForceNewCluster, launchToken)
			}
			if !slices.Equal(got.InitialCluster, tt.wantCluster) {
				t.Errorf("InitialCluster =\n  %v\nwant\n  %v", got.InitialCluster, tt.wantCluster)
			}
			if !reflect.DeepEqual(got.Voters, tt.wantVoters) {
				t.Errorf("Voters = %#v, want %#v", got.Voters, tt.wantVoters)
			}
			checkListsEveryMember(t, got.InitialCluster, tt.ms)
		})
	}
}

// checkListsEveryMember checks what etcd checks of a joining member's
// --initial-cluster: one name per member, with exactly its peer URLs.
func checkListsEveryMember(t *testing.T, ic []NamedPeer, ms []Member) {
	t.Helper()
	byName := map[string][]string{}
	for _, p := range ic {
		byName[p.Name] = append(byName[p.Name], p.PeerURL)
	}
	if len(byName) != len(ms) {
		t.Errorf("--initial-cluster has %d names for %d members: %v", len(byName), len(ms), ic)
	}
	for _, m := range ms {
		found := false
		for name, urls := range byName {
			if slices.Equal(urls, m.PeerURLs) {
				found = true
				delete(byName, name)
				break
			}
		}
		if !found {
			t.Errorf("member %s (peer URLs %v) has no entry of its own in %v", m.ID, m.PeerURLs, ic)
		}
	}
}

func TestVoterNames(t *testing.T) {
	unnamedVoter := Member{ID: 0xe, PeerURLs: []string{"http://i-e:2380"}}
	tests := []struct {
		name string
		ms   []Member
		want []string
	}{
		{"no members", nil, nil},
		{"voters sorted by name", voters(0xc, 0xa, 0xb), []string{"i-a", "i-b", "i-c"}},
		{"learners are not voters", []Member{voter(0xb), learner(0xc), voter(0xa)}, []string{"i-a", "i-b"}},
		{"an unnamed learner does not matter", []Member{voter(0xa), unstarted(0xd)}, []string{"i-a"}},
		{"only learners", []Member{learner(0xa), unstarted(0xd)}, nil},
		{"an unnamed voter makes the list unknown", []Member{voter(0xa), unnamedVoter, voter(0xb)}, nil},
		{"an unnamed voter first makes the list unknown", []Member{unnamedVoter, voter(0xa)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// nil and empty differ: nil keeps the voters recorded before.
			if got := VoterNames(tt.ms); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("VoterNames = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestExitMakesDataUnusable(t *testing.T) {
	tests := []struct {
		kind string
		want bool
	}{
		{"data-corrupt", true},
		// Healthy members log a mismatch when they meet a foreign peer.
		{"cluster-mismatch", false},
		{"removed", false},
		{"other", false},
		{"", false},
		{"Data-Corrupt", false},
	}
	for _, tt := range tests {
		if got := ExitMakesDataUnusable(tt.kind); got != tt.want {
			t.Errorf("ExitMakesDataUnusable(%q) = %v, want %v", tt.kind, got, tt.want)
		}
	}
}
