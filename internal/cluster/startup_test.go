package cluster

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The fixtures describe one group: instances i-a, i-b and i-c on 10.0.0.1-3.
// A live cluster 100 has members a, b and c for them.

func instance(id, address string, state InstanceState) Instance {
	return Instance{ID: id, Address: address, State: state}
}

func fixtureGroup() []Instance {
	return []Instance{
		instance("i-a", "10.0.0.1", InstanceRunning),
		instance("i-b", "10.0.0.2", InstanceRunning),
		instance("i-c", "10.0.0.3", InstanceRunning),
	}
}

func peerURL(address string) string { return DefaultPorts.PeerURL("http", address) }

func startedMember(id ID, name, address string) Member {
	return Member{ID: id, Name: name, PeerURLs: []string{peerURL(address)},
		ClientURLs: []string{DefaultPorts.ClientURL("http", address)}}
}

func unstartedMember(id ID, address string) Member {
	return Member{ID: id, PeerURLs: []string{peerURL(address)}, IsLearner: true}
}

const liveClusterID ID = 0x100

func liveCluster(members ...Member) *ClusterView {
	return &ClusterView{ClusterID: liveClusterID, Members: members}
}

func fullLiveCluster() *ClusterView {
	return liveCluster(
		startedMember(0xa, "i-a", "10.0.0.1"),
		startedMember(0xb, "i-b", "10.0.0.2"),
		startedMember(0xc, "i-c", "10.0.0.3"),
	)
}

// freshAnswers is every instance of group answering with no data and no etcd.
func freshAnswers(group []Instance) map[string]PeerAnswer {
	out := map[string]PeerAnswer{}
	for _, inst := range group {
		out[inst.ID] = PeerAnswer{Reachable: true, State: PeerState{InstanceID: inst.ID, Address: inst.Address, PeerURL: peerURL(inst.Address), GroupView: GroupView(group)}}
	}
	return out
}

// startupInputs builds inputs for self from the fixture group, all peers
// answering fresh, then applies mod.
func startupInputs(self string, mod func(in *StartupInputs)) StartupInputs {
	group := fixtureGroup()
	in := StartupInputs{GroupKnown: true, Group: group, Peers: freshAnswers(group)}
	for _, inst := range group {
		if inst.ID == self {
			in.Self = inst
			in.SelfPeerURL = peerURL(inst.Address)
		}
	}
	if mod != nil {
		before := GroupView(in.Group)
		mod(&in)
		// Peers that saw the fixture group see the group as modified, as a
		// consistent listing would show it to everyone.
		for id, a := range in.Peers {
			if slices.Equal(a.State.GroupView, before) {
				a.State.GroupView = GroupView(in.Group)
				in.Peers[id] = a
			}
		}
	}
	return in
}

func intactData(member ID) LocalData {
	return LocalData{Exists: true, Known: true, ClusterID: liveClusterID, MemberID: member, Revision: 42}
}

func TestDecideStartup(t *testing.T) {
	tests := []struct {
		name string
		in   StartupInputs
		// want is compared field by field; its Reason is ignored (it must
		// only be non-empty), reasonHas is checked as a substring.
		want      StartupPlan
		reasonHas string
	}{
		// Row 1: a live cluster answers, I am a started member, my data dir is intact.
		{
			name: "live cluster, started member with intact data starts on it",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = fullLiveCluster()
				in.Local = intactData(0xc)
			}),
			want: StartupPlan{Action: StartMember},
		},
		{
			name: "live cluster, started member with intact data starts even when the group is unknown",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = fullLiveCluster()
				in.Local = intactData(0xc)
				in.GroupKnown, in.Group = false, nil
			}),
			want: StartupPlan{Action: StartMember},
		},
		{
			name: "live cluster, started learner with intact data starts on it",
			in: startupInputs("i-c", func(in *StartupInputs) {
				c := fullLiveCluster()
				c.Members[2].IsLearner = true
				in.Cluster = c
				in.Local = intactData(0xc)
			}),
			want: StartupPlan{Action: StartMember},
		},

		// Row 2: listed, but the data dir is gone or belongs to another cluster/member.
		{
			name: "live cluster, listed but data dir empty: rejoin removing my old member, nothing to wipe",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = fullLiveCluster()
			}),
			want:      StartupPlan{Action: Rejoin, RemoveMember: 0xc},
			reasonHas: "empty",
		},
		{
			name: "live cluster, listed but data of another cluster: rejoin and wipe",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = fullLiveCluster()
				in.Local = LocalData{Exists: true, Known: true, ClusterID: 0x999, MemberID: 0xc}
			}),
			want:      StartupPlan{Action: Rejoin, RemoveMember: 0xc, Wipe: true},
			reasonHas: "999",
		},
		{
			name: "live cluster, listed but data of another member id: rejoin and wipe",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = fullLiveCluster()
				in.Local = LocalData{Exists: true, Known: true, ClusterID: liveClusterID, MemberID: 0xfeed}
			}),
			want:      StartupPlan{Action: Rejoin, RemoveMember: 0xc, Wipe: true},
			reasonHas: "feed",
		},
		{
			name: "live cluster, listed but data identity never recorded: rejoin and wipe",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = fullLiveCluster()
				in.Local = LocalData{Exists: true, Known: false}
			}),
			want:      StartupPlan{Action: Rejoin, RemoveMember: 0xc, Wipe: true},
			reasonHas: "never recorded",
		},
		{
			name: "live cluster, listed, data of this member but etcd cannot run on it: rejoin and wipe",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = fullLiveCluster()
				in.Local = intactData(0xc)
				in.Local.Unusable = "corrupt WAL"
			}),
			want:      StartupPlan{Action: Rejoin, RemoveMember: 0xc, Wipe: true},
			reasonHas: "corrupt WAL",
		},

		// Row 3: another member holds my peer URL (the address was reused).
		{
			name: "live cluster, a started stale member holds my address: replace it",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(
					startedMember(0xa, "i-a", "10.0.0.1"),
					startedMember(0xb, "i-b", "10.0.0.2"),
					startedMember(0xd, "i-old", "10.0.0.3"),
				)
			}),
			want:      StartupPlan{Action: ReplaceStale, RemoveMember: 0xd},
			reasonHas: "i-old",
		},
		{
			name: "live cluster, a started stale member holds my address and I have old data: replace it and wipe",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(
					startedMember(0xa, "i-a", "10.0.0.1"),
					startedMember(0xb, "i-b", "10.0.0.2"),
					startedMember(0xd, "i-old", "10.0.0.3"),
				)
				in.Local = LocalData{Exists: true, Known: true, ClusterID: liveClusterID, MemberID: 0xd}
			}),
			want: StartupPlan{Action: ReplaceStale, RemoveMember: 0xd, Wipe: true},
		},
		{
			name: "live cluster, address reuse is not acted on while the group is unknown",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(
					startedMember(0xa, "i-a", "10.0.0.1"),
					startedMember(0xd, "i-old", "10.0.0.3"),
				)
				in.GroupKnown, in.Group = false, nil
			}),
			want: StartupPlan{Action: Wait},
		},
		{
			name: "live cluster, a member whose address only starts like mine is not mine: join",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(
					startedMember(0xa, "i-a", "10.0.0.1"),
					startedMember(0xd, "i-other", "10.0.0.30"),
				)
			}),
			want: StartupPlan{Action: Join},
		},
		{
			name: "live cluster, an unstarted member was added for my address: resume the join",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(
					startedMember(0xa, "i-a", "10.0.0.1"),
					startedMember(0xb, "i-b", "10.0.0.2"),
					unstartedMember(0xe, "10.0.0.3"),
				)
			}),
			want: StartupPlan{Action: ResumeJoin},
		},
		{
			name: "live cluster, an unstarted member was added for my address and I have old data: resume and wipe",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(
					startedMember(0xa, "i-a", "10.0.0.1"),
					unstartedMember(0xe, "10.0.0.3"),
				)
				in.Local = LocalData{Exists: true, Known: false}
			}),
			want: StartupPlan{Action: ResumeJoin, Wipe: true},
		},

		// Row 4: I am not listed: join as a learner.
		{
			name: "live cluster, not listed, no data: join",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(
					startedMember(0xa, "i-a", "10.0.0.1"),
					startedMember(0xb, "i-b", "10.0.0.2"),
				)
			}),
			want: StartupPlan{Action: Join},
		},
		{
			name: "live cluster, not listed, old data of another cluster: join and wipe",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(startedMember(0xa, "i-a", "10.0.0.1"))
				in.Local = LocalData{Exists: true, Known: true, ClusterID: 0x999, MemberID: 0xc}
			}),
			want:      StartupPlan{Action: Join, Wipe: true},
			reasonHas: "set aside",
		},
		{
			name: "live cluster, not listed (was removed), old data of this cluster: join and wipe",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(startedMember(0xa, "i-a", "10.0.0.1"), startedMember(0xb, "i-b", "10.0.0.2"))
				in.Local = intactData(0xc)
			}),
			want: StartupPlan{Action: Join, Wipe: true},
		},
		{
			name: "live cluster, not listed, I am a pending instance of the group: join",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(startedMember(0xa, "i-a", "10.0.0.1"))
				in.Group[2].State = InstancePending
				in.Self = in.Group[2]
			}),
			want: StartupPlan{Action: Join},
		},
		{
			name: "live cluster, not listed, group listing failed: wait",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(startedMember(0xa, "i-a", "10.0.0.1"))
				in.GroupKnown, in.Group = false, nil
			}),
			want:      StartupPlan{Action: Wait},
			reasonHas: "group listing failed",
		},
		{
			name: "live cluster, not listed, I am not in the group listing: wait",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(startedMember(0xa, "i-a", "10.0.0.1"))
				in.Group = in.Group[:2]
			}),
			want:      StartupPlan{Action: Wait},
			reasonHas: "i-c",
		},
		{
			name: "live cluster, not listed, my instance is listed as stopping: wait",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(startedMember(0xa, "i-a", "10.0.0.1"))
				in.Group[2].State = InstanceStopping
			}),
			want: StartupPlan{Action: Wait},
		},

		// Row 5: no live cluster, I have data: whole-group reboot.
		{
			name: "no live cluster, local data: start on it",
			in: startupInputs("i-b", func(in *StartupInputs) {
				in.Local = intactData(0xb)
			}),
			want: StartupPlan{Action: StartOnData},
		},
		{
			name: "no live cluster, local data, group unknown: start on it",
			in: startupInputs("i-b", func(in *StartupInputs) {
				in.Local = intactData(0xb)
				in.GroupKnown, in.Group, in.Peers = false, nil, nil
			}),
			want: StartupPlan{Action: StartOnData},
		},
		{
			name: "no live cluster, local data, peers unreachable: start on it",
			in: startupInputs("i-b", func(in *StartupInputs) {
				in.Local = LocalData{Exists: true}
				in.Peers = map[string]PeerAnswer{"i-a": {Reachable: false}}
			}),
			want: StartupPlan{Action: StartOnData},
		},
		{
			name: "no live cluster, local data etcd cannot run on: wait, never wipe what may be the newest data",
			in: startupInputs("i-a", func(in *StartupInputs) {
				in.Local = intactData(0xa)
				in.Local.Unusable = "corrupt WAL"
			}),
			want:      StartupPlan{Action: Wait},
			reasonHas: "corrupt WAL",
		},

		// Row 6: no live cluster, every instance answered, none has data, I am the seeder.
		{
			name: "fresh group, every peer answered, I am the seeder (lowest id): bootstrap",
			in:   startupInputs("i-a", nil),
			want: StartupPlan{Action: Bootstrap, Seeder: "i-a"},
		},
		{
			name: "fresh group, every peer answered, I am not the seeder: wait for it",
			in:   startupInputs("i-b", nil),
			want: StartupPlan{Action: Wait, Seeder: "i-a"},
		},
		{
			name: "fresh group of one: bootstrap",
			in: startupInputs("i-a", func(in *StartupInputs) {
				in.Group = in.Group[:1]
				in.Peers = freshAnswers(in.Group)
			}),
			want: StartupPlan{Action: Bootstrap, Seeder: "i-a"},
		},
		{
			name: "fresh group, a pending instance counts and answered: it is the seeder",
			in: startupInputs("i-b", func(in *StartupInputs) {
				in.Group[0].State = InstancePending
			}),
			want: StartupPlan{Action: Wait, Seeder: "i-a"},
		},
		{
			name: "fresh group, terminated, stopped and stopping instances do not count",
			in: startupInputs("i-b", func(in *StartupInputs) {
				in.Group = append(in.Group,
					instance("i-0", "10.0.0.10", InstanceTerminated),
					instance("i-00", "10.0.0.11", InstanceStopped),
					instance("i-000", "10.0.0.12", InstanceStopping),
				)
				in.Group[0].State = InstanceTerminated // i-a, the lowest live id otherwise
				delete(in.Peers, "i-a")
			}),
			want: StartupPlan{Action: Bootstrap, Seeder: "i-b"},
		},
		{
			name: "fresh group, a terminated instance that still answers is not the seeder",
			in: startupInputs("i-b", func(in *StartupInputs) {
				in.Group[0].State = InstanceTerminated
			}),
			want: StartupPlan{Action: Bootstrap, Seeder: "i-b"},
		},
		{
			name: "fresh group, an answer from an instance outside the group is ignored",
			in: startupInputs("i-a", func(in *StartupInputs) {
				in.Peers["i-0"] = PeerAnswer{Reachable: true, State: PeerState{InstanceID: "i-0"}}
			}),
			want: StartupPlan{Action: Bootstrap, Seeder: "i-a"},
		},
		{
			name: "fresh group, seeder is the highest revision before the lowest id",
			in: startupInputs("i-a", func(in *StartupInputs) {
				a := in.Peers["i-c"]
				a.State.Revision = 7
				in.Peers["i-c"] = a
			}),
			want: StartupPlan{Action: Wait, Seeder: "i-c"},
		},
		{
			name: "fresh group, the highest revision bootstraps",
			in: startupInputs("i-c", func(in *StartupInputs) {
				a := in.Peers["i-c"]
				a.State.Revision = 7
				in.Peers["i-c"] = a
			}),
			want: StartupPlan{Action: Bootstrap, Seeder: "i-c"},
		},

		// Row 7: anything else waits. The split-brain rule: never bootstrap on a partial view.
		{
			name:      "no live cluster, group listing failed, no data: wait",
			in:        startupInputs("i-a", func(in *StartupInputs) { in.GroupKnown, in.Group = false, nil }),
			want:      StartupPlan{Action: Wait},
			reasonHas: "group listing failed",
		},
		{
			name: "no live cluster, group listing known but empty: wait",
			in:   startupInputs("i-a", func(in *StartupInputs) { in.Group = nil }),
			want: StartupPlan{Action: Wait},
		},
		{
			name: "no live cluster, I am not in the group listing: wait",
			in:   startupInputs("i-a", func(in *StartupInputs) { in.Group = in.Group[1:] }),
			want: StartupPlan{Action: Wait},
		},
		{
			name:      "split brain: a peer's answer is missing",
			in:        startupInputs("i-a", func(in *StartupInputs) { delete(in.Peers, "i-c") }),
			want:      StartupPlan{Action: Wait},
			reasonHas: "i-c",
		},
		{
			name: "split brain: a peer is unreachable",
			in: startupInputs("i-a", func(in *StartupInputs) {
				in.Peers["i-c"] = PeerAnswer{Reachable: false}
			}),
			want:      StartupPlan{Action: Wait},
			reasonHas: "partial view",
		},
		{
			name: "split brain: a peer is unreachable although an old answer of it is kept",
			in: startupInputs("i-a", func(in *StartupInputs) {
				a := in.Peers["i-c"]
				a.Reachable = false
				in.Peers["i-c"] = a
			}),
			want: StartupPlan{Action: Wait},
		},
		{
			name: "split brain: a different instance answered at a peer's address",
			in: startupInputs("i-a", func(in *StartupInputs) {
				in.Peers["i-c"] = PeerAnswer{Reachable: true, State: PeerState{InstanceID: "i-z", Address: "10.0.0.3"}}
			}),
			want: StartupPlan{Action: Wait},
		},
		{
			name: "split brain: a peer answered without an instance id",
			in: startupInputs("i-a", func(in *StartupInputs) {
				in.Peers["i-c"] = PeerAnswer{Reachable: true, State: PeerState{Address: "10.0.0.3"}}
			}),
			want: StartupPlan{Action: Wait},
		},
		{
			name: "split brain: my own answer is missing",
			in:   startupInputs("i-a", func(in *StartupInputs) { delete(in.Peers, "i-a") }),
			want: StartupPlan{Action: Wait},
		},
		{
			name: "split brain: partitioned alone, only I answered",
			in: startupInputs("i-a", func(in *StartupInputs) {
				in.Peers = map[string]PeerAnswer{"i-a": in.Peers["i-a"]}
			}),
			want: StartupPlan{Action: Wait},
		},
		{
			name: "split brain: nobody answered, not even me",
			in:   startupInputs("i-a", func(in *StartupInputs) { in.Peers = nil }),
			want: StartupPlan{Action: Wait},
		},
		{
			name: "split brain: a pending instance has not answered yet",
			in: startupInputs("i-a", func(in *StartupInputs) {
				in.Group = append(in.Group, instance("i-d", "10.0.0.4", InstancePending))
			}),
			want:      StartupPlan{Action: Wait},
			reasonHas: "i-d",
		},
		{
			name: "no live cluster, a peer runs etcd: wait for it",
			in: startupInputs("i-a", func(in *StartupInputs) {
				a := in.Peers["i-b"]
				a.State.EtcdRunning = true
				in.Peers["i-b"] = a
			}),
			want:      StartupPlan{Action: Wait},
			reasonHas: "i-b",
		},
		{
			name: "no live cluster, a peer has data: wait for it",
			in: startupInputs("i-a", func(in *StartupInputs) {
				a := in.Peers["i-c"]
				a.State.HasData, a.State.ClusterID, a.State.Revision = true, liveClusterID, 99
				in.Peers["i-c"] = a
			}),
			want:      StartupPlan{Action: Wait},
			reasonHas: "i-c",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DecideStartup(tt.in)
			if got.Reason == "" {
				t.Errorf("plan %+v has no reason", got)
			}
			if tt.reasonHas != "" && !strings.Contains(got.Reason, tt.reasonHas) {
				t.Errorf("reason %q does not mention %q", got.Reason, tt.reasonHas)
			}
			got.Reason = ""
			if got.Action == Bootstrap && tt.want.Offer == nil {
				checkSeederOffer(t, tt.in, got.Offer)
				got.Offer = nil
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecideStartup() = %+v (offer %+v), want %+v (offer %+v)", got, got.Offer, tt.want, tt.want.Offer)
			}
		})
	}
}

// checkSeederOffer asserts that a seeder offers exactly the group instances,
// in id order, each at its own peer URL, and leaves the token to the caller.
func checkSeederOffer(t *testing.T, in StartupInputs, offer *BootstrapOffer) {
	t.Helper()
	if offer == nil {
		t.Fatal("bootstrap plan without an offer")
	}
	var want []NamedPeer
	for _, inst := range groupMembers(in.Group) {
		want = append(want, NamedPeer{Name: inst.ID, PeerURL: peerURL(inst.Address)})
	}
	if !reflect.DeepEqual(offer.Members, want) || offer.Token != "" {
		t.Errorf("offer = %+v, want members %+v and no token", offer, want)
	}
}

func TestDecideStartupBootstrapOffers(t *testing.T) {
	offerAB := &BootstrapOffer{Token: "t1", Members: []NamedPeer{
		{Name: "i-a", PeerURL: peerURL("10.0.0.1")}, {Name: "i-b", PeerURL: peerURL("10.0.0.2")}, {Name: "i-c", PeerURL: peerURL("10.0.0.3")}}}
	offerOther := &BootstrapOffer{Token: "t2", Members: []NamedPeer{{Name: "i-b", PeerURL: peerURL("10.0.0.2")}}}
	withOffer := func(from string, o *BootstrapOffer) func(in *StartupInputs) {
		return func(in *StartupInputs) {
			a := in.Peers[from]
			a.State.Offer, a.State.Phase = o, PhaseStarting
			in.Peers[from] = a
		}
	}
	tests := []struct {
		name string
		in   StartupInputs
		want StartupPlan
	}{
		{"the seeder offers and lists me: start as a member of the offer",
			startupInputs("i-b", withOffer("i-a", offerAB)),
			StartupPlan{Action: BootstrapMember, Offer: offerAB}},
		{"an offer that does not list me: wait for the cluster to be live, then join",
			startupInputs("i-c", withOffer("i-b", offerOther)),
			StartupPlan{Action: Wait}},
		{"an offer listing my name at another address is not mine",
			startupInputs("i-b", withOffer("i-a", &BootstrapOffer{Token: "t3", Members: []NamedPeer{{Name: "i-b", PeerURL: peerURL("10.9.9.9")}}})),
			StartupPlan{Action: Wait}},
		{"two different offers: accept none",
			startupInputs("i-c", func(in *StartupInputs) {
				withOffer("i-a", offerAB)(in)
				withOffer("i-b", &BootstrapOffer{Token: "t9", Members: offerAB.Members})(in)
			}),
			StartupPlan{Action: Wait}},
		{"the same offer published by two members is one offer",
			startupInputs("i-c", func(in *StartupInputs) {
				withOffer("i-a", offerAB)(in)
				withOffer("i-b", offerAB)(in)
			}),
			StartupPlan{Action: BootstrapMember, Offer: offerAB}},
		{"an offer from an unreachable peer is not seen",
			startupInputs("i-b", func(in *StartupInputs) {
				withOffer("i-a", offerAB)(in)
				a := in.Peers["i-a"]
				a.Reachable = false
				in.Peers["i-a"] = a
			}),
			StartupPlan{Action: Wait}},
		{"an offer accepted before, no data yet: start again with it, even on an unknown group",
			startupInputs("i-b", func(in *StartupInputs) {
				in.Local.Offer = offerAB
				in.GroupKnown, in.Group = false, nil
			}),
			StartupPlan{Action: BootstrapMember, Offer: offerAB}},
		{"an offer accepted before but a live cluster answers: the live cluster decides",
			startupInputs("i-b", func(in *StartupInputs) {
				in.Local.Offer = offerAB
				in.Cluster = liveCluster(startedMember(0xa, "i-a", "10.0.0.1"), unstartedMember(0xb, "10.0.0.2"))
			}),
			StartupPlan{Action: ResumeJoin}},
		{"the seeder never offers a peer URL off the peer's address",
			startupInputs("i-a", func(in *StartupInputs) {
				a := in.Peers["i-c"]
				a.State.PeerURL = peerURL("10.9.9.9")
				in.Peers["i-c"] = a
			}),
			StartupPlan{Action: Wait}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DecideStartup(tt.in)
			if got.Reason == "" {
				t.Errorf("plan %+v has no reason", got)
			}
			got.Reason, got.Seeder = "", ""
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecideStartup() = %+v (offer %+v), want %+v (offer %+v)", got, got.Offer, tt.want, tt.want.Offer)
			}
		})
	}
}

// TestDecideStartupBootstrapsOnlyOnACompleteView runs every combination of
// answers of a fresh group of three, from every instance's point of view: an
// instance bootstraps only when every instance answered as itself with no
// data and no etcd, and then only the seeder does.
func TestDecideStartupBootstrapsOnlyOnACompleteView(t *testing.T) {
	kinds := []string{"fresh", "missing", "unreachable", "other-instance", "has-data", "runs-etcd", "starting", "other-view"}
	answer := func(inst Instance, kind string) (PeerAnswer, bool) {
		fresh := PeerAnswer{Reachable: true, State: PeerState{InstanceID: inst.ID, Address: inst.Address, PeerURL: peerURL(inst.Address), GroupView: GroupView(fixtureGroup())}}
		switch kind {
		case "missing":
			return PeerAnswer{}, false
		case "unreachable":
			fresh.Reachable = false
		case "other-instance":
			fresh.State.InstanceID = "i-intruder"
		case "has-data":
			fresh.State.HasData = true
		case "runs-etcd":
			fresh.State.EtcdRunning = true
		case "starting":
			fresh.State.Phase = PhaseStarting
		case "other-view":
			fresh.State.GroupView = []string{"i-a", "i-b"}
		}
		return fresh, true
	}
	group := fixtureGroup()
	combos := 0
	for _, ka := range kinds {
		for _, kb := range kinds {
			for _, kc := range kinds {
				peers := map[string]PeerAnswer{}
				for i, k := range []string{ka, kb, kc} {
					if a, ok := answer(group[i], k); ok {
						peers[group[i].ID] = a
					}
				}
				complete := ka == "fresh" && kb == "fresh" && kc == "fresh"
				bootstraps := 0
				for _, self := range group {
					got := DecideStartup(StartupInputs{Self: self, GroupKnown: true, Group: group, Peers: peers})
					combos++
					switch {
					case got.Action == Bootstrap:
						bootstraps++
						if !complete || self.ID != "i-a" {
							t.Errorf("answers a=%s b=%s c=%s: %s bootstraps (%s)", ka, kb, kc, self.ID, got.Reason)
						}
					case got.Action != Wait:
						t.Errorf("answers a=%s b=%s c=%s: %s plans %s, want wait or bootstrap", ka, kb, kc, self.ID, got.Action)
					}
				}
				if complete && bootstraps != 1 {
					t.Errorf("complete fresh group: %d instances bootstrap, want exactly 1", bootstraps)
				}
			}
		}
	}
	if combos != 3*8*8*8 {
		t.Fatalf("ran %d combinations", combos)
	}
}

// TestDecideStartupOneSeederPerGroup checks that instances sharing a complete
// view agree on one seeder whatever the revisions they report.
func TestDecideStartupOneSeederPerGroup(t *testing.T) {
	group := fixtureGroup()
	for _, revs := range [][3]int64{{0, 0, 0}, {5, 0, 0}, {0, 5, 0}, {0, 0, 5}, {3, 5, 5}, {5, 5, 3}, {5, 3, 5}} {
		peers := freshAnswers(group)
		for i, inst := range group {
			a := peers[inst.ID]
			a.State.Revision = revs[i]
			peers[inst.ID] = a
		}
		var bootstrappers, seeders []string
		for _, self := range group {
			got := DecideStartup(StartupInputs{Self: self, GroupKnown: true, Group: group, Peers: peers})
			if got.Action == Bootstrap {
				bootstrappers = append(bootstrappers, self.ID)
			}
			seeders = append(seeders, got.Seeder)
		}
		if len(bootstrappers) != 1 {
			t.Errorf("revisions %v: bootstrappers %v, want exactly one", revs, bootstrappers)
			continue
		}
		for _, s := range seeders {
			if s != bootstrappers[0] {
				t.Errorf("revisions %v: seeders %v disagree with bootstrapper %s", revs, seeders, bootstrappers[0])
			}
		}
	}
}

func TestSeeder(t *testing.T) {
	st := func(id string, rev int64) PeerState { return PeerState{InstanceID: id, Revision: rev} }
	tests := []struct {
		name    string
		answers []PeerState
		want    string
	}{
		{"no answers", nil, ""},
		{"one instance", []PeerState{st("i-b", 0)}, "i-b"},
		{"all without data: lowest id", []PeerState{st("i-c", 0), st("i-a", 0), st("i-b", 0)}, "i-a"},
		{"highest revision beats lower id", []PeerState{st("i-a", 3), st("i-b", 10), st("i-c", 4)}, "i-b"},
		{"revision tie: lowest id among the highest", []PeerState{st("i-a", 3), st("i-c", 10), st("i-b", 10)}, "i-b"},
		{"ids compare as strings", []PeerState{st("i-9", 0), st("i-10", 0)}, "i-10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every order of the answers picks the same seeder.
			for _, perm := range permutations(tt.answers) {
				before := append([]PeerState(nil), perm...)
				if got := Seeder(perm); got != tt.want {
					t.Errorf("Seeder(%v) = %q, want %q", perm, got, tt.want)
				}
				if !reflect.DeepEqual(perm, before) {
					t.Errorf("Seeder reordered its input: %v, was %v", perm, before)
				}
			}
		})
	}
}

func permutations(s []PeerState) [][]PeerState {
	if len(s) <= 1 {
		return [][]PeerState{append([]PeerState(nil), s...)}
	}
	var out [][]PeerState
	for i := range s {
		rest := append(append([]PeerState(nil), s[:i]...), s[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]PeerState{s[i]}, p...))
		}
	}
	return out
}

func TestQuorum(t *testing.T) {
	for n, want := range map[int]int{0: 1, 1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			if got := Quorum(n); got != want {
				t.Errorf("Quorum(%d) = %d, want %d", n, got, want)
			}
		})
	}
}
