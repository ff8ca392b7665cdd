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
			name: "live cluster, not listed, a member's instance is terminated: join, removing it first",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(
					startedMember(0xa, "i-a", "10.0.0.1"),
					startedMember(0xb, "i-b", "10.0.0.2"),
					startedMember(0xd, "i-old", "10.0.0.9"),
				)
				in.Group = append(in.Group, instance("i-old", "10.0.0.9", InstanceTerminated))
			}),
			want:      StartupPlan{Action: Join, RemoveMember: 0xd},
			reasonHas: "member d's instance i-old is terminated",
		},
		{
			name: "live cluster, not listed, a member's instance is only absent: join, housekeeping judges it",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(
					startedMember(0xa, "i-a", "10.0.0.1"),
					startedMember(0xb, "i-b", "10.0.0.2"),
					startedMember(0xd, "i-old", "10.0.0.9"),
				)
			}),
			want: StartupPlan{Action: Join},
		},
		{
			name: "live cluster, not listed, a member's instance is stopped: join, it may come back",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(
					startedMember(0xa, "i-a", "10.0.0.1"),
					startedMember(0xb, "i-b", "10.0.0.2"),
					startedMember(0xd, "i-old", "10.0.0.9"),
				)
				in.Group = append(in.Group, instance("i-old", "10.0.0.9", InstanceStopped))
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
			name: "fresh group, stopped and stopping instances that answer without data are no members; terminated ones do not count",
			in: startupInputs("i-b", func(in *StartupInputs) {
				in.Group = append(in.Group,
					instance("i-0", "10.0.0.10", InstanceTerminated),
					instance("i-00", "10.0.0.11", InstanceStopped),
					instance("i-000", "10.0.0.12", InstanceStopping),
				)
				in.Group[0].State = InstanceTerminated // i-a, the lowest live id otherwise
				delete(in.Peers, "i-a")
				for id, a := range freshAnswers(in.Group[4:]) {
					in.Peers[id] = a
				}
			}),
			want: StartupPlan{Action: Bootstrap, Seeder: "i-b"},
		},
		{
			// Standby or stopped instances may run or hold the cluster:
			// nothing is created past one that does not answer.
			name: "fresh group, a stopped instance does not answer",
			in: startupInputs("i-b", func(in *StartupInputs) {
				in.Group = append(in.Group, instance("i-00", "10.0.0.11", InstanceStopped))
			}),
			want:      StartupPlan{Action: Wait},
			reasonHas: "i-00 (10.0.0.11) is stopped but listed",
		},
		{
			name: "fresh group, a Standby instance answers with data",
			in: startupInputs("i-b", func(in *StartupInputs) {
				in.Group = append(in.Group, instance("i-00", "10.0.0.11", InstanceStopped))
				a := freshAnswers(in.Group[3:])["i-00"]
				a.State.HasData, a.State.EtcdRunning, a.State.ClusterID = true, true, 0x77
				in.Peers["i-00"] = a
			}),
			want:      StartupPlan{Action: Wait},
			reasonHas: "i-00 (10.0.0.11), stopped, holds data",
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

// offerABC is the offer the seeder i-a makes for the fixture group.
func offerABC() *BootstrapOffer {
	return &BootstrapOffer{Token: "t1", Members: []NamedPeer{
		{Name: "i-a", PeerURL: peerURL("10.0.0.1")}, {Name: "i-b", PeerURL: peerURL("10.0.0.2")}, {Name: "i-c", PeerURL: peerURL("10.0.0.3")}}}
}

// publishes makes instance from publish offer o, as the seeder or an
// instance that accepted it does while starting etcd on it.
func publishes(from string, o *BootstrapOffer) func(in *StartupInputs) {
	return func(in *StartupInputs) {
		a := in.Peers[from]
		a.State.Offer, a.State.Phase = o, PhaseStarting
		in.Peers[from] = a
	}
}

func allOf(mods ...func(in *StartupInputs)) func(in *StartupInputs) {
	return func(in *StartupInputs) {
		for _, m := range mods {
			m(in)
		}
	}
}

// TestDecideStartupValidatesOffers: an instance accepts an offer only from
// the seeder of its own group view, listing exactly that group, each member
// at its listed address (§4.8); otherwise it waits, naming the offerer and
// what did not match.
func TestDecideStartupValidatesOffers(t *testing.T) {
	withMembers := func(members ...NamedPeer) *BootstrapOffer {
		return &BootstrapOffer{Token: "t2", Members: members}
	}
	a, b, c := NamedPeer{"i-a", peerURL("10.0.0.1")}, NamedPeer{"i-b", peerURL("10.0.0.2")}, NamedPeer{"i-c", peerURL("10.0.0.3")}
	tests := []struct {
		name      string
		in        StartupInputs
		want      StartupPlan
		reasonHas []string
	}{
		{"the seeder's offer of the agreed group: accept",
			startupInputs("i-b", publishes("i-a", offerABC())),
			StartupPlan{Action: BootstrapMember, Offer: offerABC(), Seeder: "i-a"},
			[]string{"i-a"}},
		{"accepted by another member too, which started etcd on it: still the seeder's offer",
			startupInputs("i-c", allOf(publishes("i-a", offerABC()), publishes("i-b", offerABC()), func(in *StartupInputs) {
				p := in.Peers["i-b"]
				p.State.EtcdRunning, p.State.HasData, p.State.Revision = true, true, 1
				in.Peers["i-b"] = p
			})),
			StartupPlan{Action: BootstrapMember, Offer: offerABC(), Seeder: "i-a"},
			[]string{"i-a"}},
		{"an offer from an instance that is not the seeder",
			startupInputs("i-c", publishes("i-b", offerABC())),
			StartupPlan{Action: Wait},
			[]string{"[i-b]", "seeder of the group is i-a"}},
		{"the seeder's offer only republished by a member that accepted it",
			startupInputs("i-c", allOf(publishes("i-a", offerABC()), publishes("i-b", offerABC()), func(in *StartupInputs) {
				delete(in.Peers, "i-a")
			})),
			StartupPlan{Action: Wait},
			[]string{"[i-b]", "seeder of the group is i-a"}},
		{"an offer of part of the group",
			startupInputs("i-b", publishes("i-a", withMembers(a, b))),
			StartupPlan{Action: Wait},
			[]string{"[i-a]", "members [i-a i-b] are not the group [i-a i-b i-c]"}},
		{"an offer with an instance outside the group",
			startupInputs("i-b", publishes("i-a", withMembers(a, b, c, NamedPeer{"i-x", peerURL("10.0.0.9")}))),
			StartupPlan{Action: Wait},
			[]string{"[i-a]", "members [i-a i-b i-c i-x] are not the group"}},
		{"an offer listing a member twice",
			startupInputs("i-b", publishes("i-a", withMembers(a, b, c, NamedPeer{"i-c", peerURL("10.0.0.3")}))),
			StartupPlan{Action: Wait},
			[]string{"[i-a]", "are not the group"}},
		{"an offer with another member off its listed address",
			startupInputs("i-b", publishes("i-a", withMembers(a, b, NamedPeer{"i-c", peerURL("10.9.9.9")}))),
			StartupPlan{Action: Wait},
			[]string{"[i-a]", "i-c", "10.9.9.9", "10.0.0.3"}},
		{"an offer of the group as the seeder saw it before an instance joined the group",
			startupInputs("i-b", allOf(publishes("i-a", offerABC()), func(in *StartupInputs) {
				in.Group = append(in.Group, instance("i-d", "10.0.0.4", InstanceRunning))
				in.Peers["i-d"] = freshAnswers(in.Group)["i-d"]
			})),
			StartupPlan{Action: Wait},
			[]string{"[i-a]", "not the group [i-a i-b i-c i-d]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DecideStartup(tt.in)
			for _, s := range tt.reasonHas {
				if !strings.Contains(got.Reason, s) {
					t.Errorf("reason %q does not mention %q", got.Reason, s)
				}
			}
			got.Reason = ""
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecideStartup() = %+v (offer %+v), want %+v (offer %+v)", got, got.Offer, tt.want, tt.want.Offer)
			}
		})
	}
}

// replacedInputs builds inputs for self in the fixture group after i-b and
// i-c were terminated and i-d (10.0.0.4) and i-e (10.0.0.5) launched, every
// instance of the group answering fresh, then applies mod.
func replacedInputs(self string, mod func(in *StartupInputs)) StartupInputs {
	group := []Instance{
		instance("i-a", "10.0.0.1", InstanceRunning),
		instance("i-b", "10.0.0.2", InstanceTerminated),
		instance("i-c", "10.0.0.3", InstanceTerminated),
		instance("i-d", "10.0.0.4", InstanceRunning),
		instance("i-e", "10.0.0.5", InstanceRunning),
	}
	in := StartupInputs{GroupKnown: true, Group: group, Peers: freshAnswers(groupMembers(group))}
	for _, inst := range group {
		if inst.ID == self {
			in.Self, in.SelfPeerURL = inst, peerURL(inst.Address)
		}
	}
	if mod != nil {
		mod(&in)
	}
	return in
}

// TestDecideStartupDeadOffers: an offer most of whose members are gone
// never forms its cluster. Newcomers ignore it, its holder gives it up (its
// never-led data set aside), and the group bootstraps anew.
func TestDecideStartupDeadOffers(t *testing.T) {
	// heldBy makes i-a hold offerABC, with data at revision rev (-1:
	// none), its etcd running on it when it has data.
	heldBy := func(rev int64) func(in *StartupInputs) {
		return func(in *StartupInputs) {
			publishes("i-a", offerABC())(in)
			if in.Self.ID == "i-a" {
				in.Local.Offer = offerABC()
			}
			if rev < 0 {
				return
			}
			if in.Self.ID == "i-a" {
				in.Local.Exists, in.Local.Known, in.Local.Revision = true, true, rev
				in.Local.ClusterID, in.Local.Voters = 0x5, []string{"i-a", "i-b", "i-c"}
				// A never-led member's raft log ends in the bootstrap
				// entries; a leader appends at a later term.
				in.Local.Log = LogPosition{Term: 1, Index: 3}
				if rev > 1 {
					in.Local.Log = LogPosition{Term: 2, Index: uint64(rev) + 10}
				}
			}
			p := in.Peers["i-a"]
			p.State.EtcdRunning, p.State.HasData, p.State.Revision, p.State.Phase = true, true, rev, PhaseRunning
			p.State.ClusterID, p.State.Voters = 0x5, []string{"i-a", "i-b", "i-c"}
			in.Peers["i-a"] = p
		}
	}
	tests := []struct {
		name      string
		in        StartupInputs
		want      StartupPlan
		reasonHas []string
	}{
		{"the holder of a dead offer, etcd never started on it: give the offer up",
			replacedInputs("i-a", heldBy(-1)),
			StartupPlan{Action: AbandonOffer, Offer: offerABC()},
			[]string{"t1", "[i-b i-c]", "dead"}},
		{"the holder of a dead offer whose etcd created data but never had a leader: set the data aside",
			replacedInputs("i-a", heldBy(1)),
			StartupPlan{Action: AbandonOffer, Offer: offerABC(), Wipe: true},
			[]string{"never had a leader"}},
		{"the holder's data revision not recorded yet: set it aside",
			replacedInputs("i-a", heldBy(0)),
			StartupPlan{Action: AbandonOffer, Offer: offerABC(), Wipe: true},
			[]string{"never had a leader"}},
		{"no revision recorded, but the holder's raft log has a leader's entries: keep the data (CI, 2026-12-06)",
			replacedInputs("i-a", allOf(heldBy(0), func(in *StartupInputs) { in.Local.Log = LogPosition{Term: 2, Index: 56} })),
			StartupPlan{Action: AbandonOffer, Offer: offerABC()},
			[]string{"raft log at 2/56", "keeping the data"}},
		{"no revision recorded and the holder's raft log unreadable: nothing proves it never led, keep the data",
			replacedInputs("i-a", allOf(heldBy(0), func(in *StartupInputs) { in.Local.Log = LogPosition{} })),
			StartupPlan{Action: AbandonOffer, Offer: offerABC()},
			[]string{"keeping the data"}},
		{"the holder's data has writes, so its cluster had a leader: keep the data, drop the offer",
			replacedInputs("i-a", heldBy(42)),
			StartupPlan{Action: AbandonOffer, Offer: offerABC()},
			[]string{"revision 42", "keeping the data"}},
		{"a newcomer ignores a dead offer and waits for its holder to give it up",
			replacedInputs("i-d", heldBy(1)),
			StartupPlan{Action: Wait},
			[]string{"i-a has data"}},
		{"a newcomer ignores a dead offer that its holder no longer starts on",
			replacedInputs("i-d", func(in *StartupInputs) { publishes("i-a", offerABC())(in) }),
			StartupPlan{Action: Wait},
			[]string{"i-a has data or is starting etcd"}},
		{"once the offer is given up, the group bootstraps anew",
			replacedInputs("i-a", nil),
			StartupPlan{Action: Bootstrap, Seeder: "i-a", Offer: &BootstrapOffer{Members: []NamedPeer{
				{Name: "i-a", PeerURL: peerURL("10.0.0.1")}, {Name: "i-d", PeerURL: peerURL("10.0.0.4")}, {Name: "i-e", PeerURL: peerURL("10.0.0.5")}}}},
			nil},
		{"one member of three gone: the offer no longer is the group, its other members refuse it, so its holder gives it up",
			startupInputs("i-a", allOf(heldBy(-1), func(in *StartupInputs) { in.Group[2].State = InstanceTerminated })),
			StartupPlan{Action: AbandonOffer, Offer: offerABC()},
			[]string{"no longer the group [i-a i-b]", "never had a leader"}},
		{"the group grew before the offer formed its cluster: its never-led data is set aside",
			startupInputs("i-a", allOf(heldBy(1), func(in *StartupInputs) {
				in.Group = append(in.Group, instance("i-f", "10.0.0.6", InstanceRunning))
			})),
			StartupPlan{Action: AbandonOffer, Offer: offerABC(), Wipe: true},
			[]string{"no longer the group [i-a i-b i-c i-f]"}},
		{"a changed group, but the holder's data took writes: the offer goes, the data stays",
			startupInputs("i-a", allOf(heldBy(42), func(in *StartupInputs) {
				in.Group = append(in.Group, instance("i-f", "10.0.0.6", InstanceRunning))
			})),
			StartupPlan{Action: AbandonOffer, Offer: offerABC()},
			[]string{"no longer the group", "keeping the data"}},
		{"one member of three gone: a member that did not start yet still accepts",
			startupInputs("i-b", allOf(publishes("i-a", offerABC()), func(in *StartupInputs) {
				in.Group[2].State = InstanceTerminated
				delete(in.Peers, "i-c")
			})),
			StartupPlan{Action: Wait},
			[]string{"not the group [i-a i-b]"}},
		{"members stopped, not gone, may come back: the offer is not dead, but no longer the group; never led, it is given up",
			replacedInputs("i-a", allOf(heldBy(-1), func(in *StartupInputs) {
				in.Group[1].State, in.Group[2].State = InstanceStopped, InstanceStopped
			})),
			StartupPlan{Action: AbandonOffer, Offer: offerABC()},
			[]string{"no longer the group"}},
		{"a dead offer on an unknown group: start again with it",
			replacedInputs("i-a", allOf(heldBy(-1), func(in *StartupInputs) { in.GroupKnown, in.Group = false, nil })),
			StartupPlan{Action: BootstrapMember, Offer: offerABC()},
			nil},
		{"a dead offer while this instance is not in the group: not this instance's to give up",
			replacedInputs("i-a", allOf(heldBy(-1), func(in *StartupInputs) { in.Group[0].State = InstanceTerminated })),
			StartupPlan{Action: BootstrapMember, Offer: offerABC()},
			nil},
		{"a dead offer while a live cluster lists this instance: the live cluster decides",
			replacedInputs("i-a", allOf(heldBy(1), func(in *StartupInputs) {
				in.Local.ClusterID, in.Local.MemberID = liveClusterID, 0xa
				in.Cluster = liveCluster(startedMember(0xa, "i-a", "10.0.0.1"), startedMember(0xd, "i-d", "10.0.0.4"), startedMember(0xe, "i-e", "10.0.0.5"))
			})),
			StartupPlan{Action: StartMember},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DecideStartup(tt.in)
			if got.Reason == "" {
				t.Errorf("plan %+v has no reason", got)
			}
			for _, s := range tt.reasonHas {
				if !strings.Contains(got.Reason, s) {
					t.Errorf("reason %q does not mention %q", got.Reason, s)
				}
			}
			got.Reason = ""
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecideStartup() = %+v (offer %+v), want %+v (offer %+v)", got, got.Offer, tt.want, tt.want.Offer)
			}
		})
	}
}

func TestBootstrapOfferDead(t *testing.T) {
	offer := func(names ...string) *BootstrapOffer {
		o := &BootstrapOffer{Token: "t"}
		for _, n := range names {
			o.Members = append(o.Members, NamedPeer{Name: n})
		}
		return o
	}
	group := []Instance{
		instance("i-a", "10.0.0.1", InstanceRunning),
		instance("i-b", "10.0.0.2", InstancePending),
		instance("i-c", "10.0.0.3", InstanceStopped),
		instance("i-t", "10.0.0.4", InstanceTerminated),
		instance("i-u", "10.0.0.5", InstanceTerminated),
	}
	tests := []struct {
		offer    *BootstrapOffer
		wantGone []string
		wantDead bool
	}{
		{offer("i-a"), nil, false},
		{offer("i-t"), []string{"i-t"}, true},
		{offer("i-a", "i-b", "i-c"), nil, false},
		{offer("i-a", "i-b", "i-t"), []string{"i-t"}, false},
		{offer("i-a", "i-t", "i-u"), []string{"i-t", "i-u"}, true},
		{offer("i-a", "i-t", "i-x"), []string{"i-t", "i-x"}, true},
		{offer("i-a", "i-b", "i-t", "i-u"), []string{"i-t", "i-u"}, true},
		{offer("i-a", "i-b", "i-c", "i-t"), []string{"i-t"}, false},
		{offer("i-a", "i-b", "i-c", "i-t", "i-u"), []string{"i-t", "i-u"}, false},
		{offer("i-a", "i-b", "i-t", "i-u", "i-x"), []string{"i-t", "i-u", "i-x"}, true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.offer.Names(), ","), func(t *testing.T) {
			gone, dead := tt.offer.Dead(group)
			if !slices.Equal(gone, tt.wantGone) || dead != tt.wantDead {
				t.Errorf("Dead() = %v, %v, want %v, %v", gone, dead, tt.wantGone, tt.wantDead)
			}
		})
	}
}

// TestDecideStartupNamesPeersOfAnotherTLS: an empty instance whose peers
// answer with another --tls or CA waits, as for silent peers, and says
// which and why and the remedy; a live cluster it can see is joined
// whatever a stray instance of another --tls runs.
func TestDecideStartupNamesPeersOfAnotherTLS(t *testing.T) {
	ignored := func(why IgnoredAnswer) PeerAnswer { return PeerAnswer{Ignored: why} }
	tests := []struct {
		name      string
		in        StartupInputs
		want      StartupAction
		reasonHas []string
	}{
		{
			name: "every peer runs with TLS, this instance without",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Peers["i-a"], in.Peers["i-b"] = ignored(PeerRunsTLS), ignored(PeerRunsTLS)
			}),
			want:      Wait,
			reasonHas: []string{"peers i-a, i-b each runs with TLS, this instance without", "same --tls"},
		},
		{
			name: "one peer plaintext, one silent: the ignored one is named",
			in: startupInputs("i-a", func(in *StartupInputs) {
				in.Peers["i-b"] = ignored(PeerRunsPlaintext)
				delete(in.Peers, "i-c")
			}),
			want:      Wait,
			reasonHas: []string{"peer i-b runs without TLS, this instance with", "same --tls and CA"},
		},
		{
			name: "peers of another CA",
			in: startupInputs("i-a", func(in *StartupInputs) {
				in.Peers["i-c"] = ignored(PeerUntrusted)
			}),
			want:      Wait,
			reasonHas: []string{"peer i-c shows no member certificate of this instance's cluster CA"},
		},
		{
			name: "a live cluster answers: a stray plaintext instance holds no join",
			in: startupInputs("i-c", func(in *StartupInputs) {
				in.Cluster = liveCluster(startedMember(0xa, "i-a", "10.0.0.1"), startedMember(0xb, "i-b", "10.0.0.2"))
				in.Group = append(in.Group, instance("i-d", "10.0.0.4", InstanceRunning))
				in.Peers["i-d"] = ignored(PeerRunsPlaintext)
			}),
			want: Join,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := DecideStartup(tt.in)
			if plan.Action != tt.want {
				t.Fatalf("plan %s (%s), want %s", plan.Action, plan.Reason, tt.want)
			}
			for _, s := range tt.reasonHas {
				if !strings.Contains(plan.Reason, s) {
					t.Errorf("reason %q lacks %q", plan.Reason, s)
				}
			}
		})
	}
}
