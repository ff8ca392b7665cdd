package appliance

import (
	"context"
	"net"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/cluster/clustertest"
)

// TestLearnerOfALostLeaderHasNoLeader: a learner keeps naming the last
// leader it heard of; the appliance believes it only while that leader says
// it leads, so that a learner stranded by a quorum loss publishes no leader
// and takes part in the recovery (issue: recovery deadlocked behind a
// learner's stale view).
func TestLearnerOfALostLeaderHasNoLeader(t *testing.T) {
	for _, tc := range []struct {
		name        string
		leaderLeads bool
		want        bool
	}{
		{"the leader still leads", true, true},
		{"the leader is gone", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testAppliance(t)
			leader := clustertest.Member(0xa, false)
			self := selfMember(a, 0xd)
			self.IsLearner = true
			f := newFakeEtcd([]cluster.Member{leader, self})
			// As etcd does: a learner is refused every member list.
			f.fail["LocalMembers"] = []error{rpctypes.ErrGRPCNotSupportedForLearner, rpctypes.ErrGRPCNotSupportedForLearner}
			f.fail["Members"] = []error{rpctypes.ErrGRPCNotSupportedForLearner, rpctypes.ErrGRPCNotSupportedForLearner}
			f.status[a.clientURL()] = etcdStatus{ClusterID: f.clusterID, MemberID: 0xd, Leader: 0xa, IsLearner: true}
			// The leader is found among the group's instances.
			a.groups.group.(*fakeGroup).instances = []cluster.Instance{
				{ID: "i-1", Address: "127.0.0.1", State: cluster.InstanceRunning},
				{ID: leader.Name, Address: leader.Name, State: cluster.InstanceRunning},
			}
			if _, err := a.groups.list(context.Background(), 0); err != nil {
				t.Fatal(err)
			}
			if tc.leaderLeads {
				f.status[clientURL(leader)] = etcdStatus{ClusterID: f.clusterID, MemberID: 0xa, Leader: 0xa}
			} else {
				delete(f.status, clientURL(leader))
			}
			a.dial = f.dialer()
			ctx := context.Background()
			a.supervisor.role = newCandidacy(a.node, f)
			defer a.supervisor.role.end()
			a.supervisor.look(ctx, ctx, f, newFakeProcess())
			if got := a.peerState().HasLeader; got != tc.want {
				t.Errorf("published has_leader = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestVoterTakesItsStatusAtItsWord(t *testing.T) {
	a := testAppliance(t)
	self := selfMember(a, 0xa)
	f := newFakeEtcd([]cluster.Member{self, clustertest.Member(0xb, false)})
	f.status[a.clientURL()] = etcdStatus{ClusterID: f.clusterID, MemberID: 0xa, Leader: 0xb}
	a.dial = f.dialer()
	ctx := context.Background()
	a.supervisor.role = newCandidacy(a.node, f)
	defer a.supervisor.role.end()
	a.supervisor.look(ctx, ctx, f, newFakeProcess())
	if !a.peerState().HasLeader {
		t.Error("a voter that follows a leader published no leader")
	}
	if f.called("LocalMembers") && f.called("Status "+clientURL(clustertest.Member(0xb, false))) {
		t.Error("a voter's leader was asked again: only a learner's word is checked")
	}
}

// TestSilentInstanceIsReported: one listed instance that never answers
// holds every creation and recovery; it is exported, logged and shown in
// the status with how long it has been silent.
func TestSilentInstanceIsReported(t *testing.T) {
	a := testAppliance(t)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	// Nothing serves the appliance API on 127.0.0.250 (port 1 refuses at once).
	a.ports.API = 1
	a.groups.group.(*fakeGroup).instances = []cluster.Instance{
		{ID: "i-1", Address: "127.0.0.1", State: cluster.InstanceRunning},
		{ID: "i-dead", Address: "127.0.0.250", State: cluster.InstanceRunning},
	}
	ctx := context.Background()
	if _, err := a.starter.gather(ctx); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	in, err := a.starter.gather(ctx)
	if err != nil {
		t.Fatal(err)
	}
	plan := cluster.DecideStartup(in)
	if plan.Action != cluster.Wait {
		t.Fatalf("plan %s (%s), want wait", plan.Action, plan.Reason)
	}
	if got := gauge(t, a.metrics.waiting.unanswered); got != 1 {
		t.Errorf("etcd_appliance_peers_unanswered = %v, want 1", got)
	}
	if got := gauge(t, a.metrics.waiting.unansweredSeconds); got != 120 {
		t.Errorf("etcd_appliance_peer_unanswered_seconds = %v, want 120", got)
	}
	a.setWaiting(a.starter.waitReason(plan), a.starter.unanswered)
	// No etcd answers here: the status says so at once.
	sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	st := a.Status(sctx)
	if len(st.Unanswered) != 1 || st.Unanswered[0].Instance != "i-dead" || st.Waiting == "" {
		t.Errorf("status waiting %q unanswered %+v, want i-dead named", st.Waiting, st.Unanswered)
	}
}

// TestListeningKeepsOnlyWhatAcceptsConnections: the places a lost cluster
// lived are asked only where something listens, so that dead ones cost no
// client deadline; a live one is never left out.
func TestListeningKeepsOnlyWhatAcceptsConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + closed.Addr().String()
	closed.Close()
	live := "http://" + ln.Addr().String()
	got := listening(context.Background(), []string{dead, live, "::not a url"})
	if len(got) != 1 || got[0] != live {
		t.Errorf("listening = %q, want only %s", got, live)
	}
}

// TestHousekeepingFollowsAMembershipChange: between two ticks of
// --reconcile-interval, a cycle runs as soon as the membership changes (a
// replacement added or promoted), and not otherwise.
func TestHousekeepingFollowsAMembershipChange(t *testing.T) {
	a, f, clock := candidate(t)
	s := a.supervisor
	cycles := func() float64 { return counter(t, a.metrics.housekeeping) }
	lookUntil(t, s, leading, "first cycle", func() bool { return cycles() == 1 })
	clock.add(time.Second) // well within --reconcile-interval
	for range 5 {
		s.keepHouse(context.Background(), context.Background(), f, leading)
	}
	if got := cycles(); got != 1 {
		t.Fatalf("%v cycles with the membership unchanged, want 1", got)
	}
	f.mu.Lock()
	f.members = append(f.members, cluster.Member{ID: 0xd, PeerURLs: []string{"http://127.0.0.9:2380"}, IsLearner: true})
	f.mu.Unlock()
	// The membership is read again only once the raft index moved (a
	// member added is a raft entry), and at most once a second.
	moved := leading
	moved.RaftIndex = 42
	s.keepHouse(context.Background(), context.Background(), f, leading)
	if got := cycles(); got != 1 {
		t.Fatalf("%v cycles with the raft index unmoved, want 1: no read of the membership", got)
	}
	clock.add(time.Second)
	s.keepHouse(context.Background(), context.Background(), f, moved)
	if got := cycles(); got != 2 {
		t.Fatalf("%v cycles after a member was added, want 2", got)
	}
	clock.add(time.Second)
	s.keepHouse(context.Background(), context.Background(), f, moved)
	if got := cycles(); got != 2 {
		t.Errorf("%v cycles after one look more, want still 2", got)
	}
}
