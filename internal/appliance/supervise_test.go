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
	clock.add(settlingHousekeepingEvery / 2) // within --reconcile-interval, and the pace while a change settles
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
	clock.add(settlingHousekeepingEvery / 2)
	s.keepHouse(context.Background(), context.Background(), f, moved)
	if got := cycles(); got != 2 {
		t.Errorf("%v cycles after one look more, want still 2", got)
	}
}

// TestIsSteady: a member is looked at closely while anything about it
// changes, and for settleAfter after.
func TestIsSteady(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steady := steadiness{Now: now, ChangedAt: now.Add(-settleAfter), Answered: true, Status: leading, InLine: true}
	for _, tc := range []struct {
		name string
		edit func(*steadiness)
		want bool
	}{
		{"leader known, in line, nothing changed for settleAfter", func(*steadiness) {}, true},
		{"a change within settleAfter", func(in *steadiness) { in.ChangedAt = now.Add(-settleAfter + time.Millisecond) }, false},
		{"etcd does not answer", func(in *steadiness) { in.Answered = false }, false},
		{"no leader", func(in *steadiness) { in.Status.Leader = 0 }, false},
		{"a learner", func(in *steadiness) { in.Status.IsLearner = true }, false},
		{"an alarm", func(in *steadiness) { in.Status.Errors = []string{"NOSPACE"} }, false},
		{"neither holding the role nor in line for it", func(in *steadiness) { in.InLine = false }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := steady
			tc.edit(&in)
			if got := isSteady(in); got != tc.want {
				t.Errorf("isSteady = %v, want %v", got, tc.want)
			}
		})
	}
	if lookEvery(true) != steadyWatchInterval || lookEvery(false) != watchInterval {
		t.Errorf("lookEvery steady %s, changing %s", lookEvery(true), lookEvery(false))
	}
}

// TestSteadyMemberAsksLittle is issue 13, item 15: once its member is
// steady, the supervisor looks every steadyWatchInterval, reads no member
// list for the marker while the raft index stands still, and keeps house
// every steadyHousekeepingEvery; a leader change puts it back to close
// looks and --reconcile-interval at once.
func TestSteadyMemberAsksLittle(t *testing.T) {
	self := cluster.Member{ID: 0xa, Name: "i-1", PeerURLs: []string{"http://127.0.0.1:2380"}, ClientURLs: []string{"http://127.0.0.1:2379"}}
	b, c := clustertest.Member(0xb, false), clustertest.Member(0xc, false)
	f := newFakeEtcd([]cluster.Member{self, b, c})
	a := keeping(t, f, running("i-1", b.Name, c.Name))
	clock := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a.now = clock.now
	s := a.supervisor
	s.role = newCandidacy(a.node, f)
	t.Cleanup(s.role.end)
	s.changedAt = clock.now()
	ctx := context.Background()
	proc := newFakeProcess()
	st := leading
	st.RaftIndex, st.RaftTerm = 7, 2
	f.status[a.clientURL()] = st
	look := func() { s.look(ctx, ctx, f, proc) }
	cycles := func() float64 { return counter(t, a.metrics.housekeeping) }
	waitFor(t, func() bool { look(); return cycles() == 1 })
	// The first cycle lists the group; the second finds it steady.
	clock.add(a.cfg.ReconcileInterval)
	look()
	if !a.housekeeper.steady || cycles() != 2 {
		t.Fatal("the housekeeper found the cluster unsteady: the test's cluster is wrong")
	}
	if s.steady {
		t.Fatal("steady right after the role was taken")
	}
	clock.add(settleAfter)
	look()
	if !s.steady {
		t.Fatalf("not steady %s after the last change", settleAfter)
	}
	calls, base := len(f.log(false)), cycles()
	// The marker is due (markerEvery) and housekeeping would be by
	// --reconcile-interval: neither asks anything while all is steady.
	clock.add(max(markerEvery, a.cfg.ReconcileInterval))
	look()
	if got := f.log(false)[calls:]; len(got) != 0 {
		t.Errorf("calls of a steady look %q, want none", got)
	}
	if m, _, err := a.data.readMarker(); err != nil || len(m.Voters) != 3 {
		t.Errorf("marker voters %q (err %v), want the 3 read before", m.Voters, err)
	}
	clock.add(steadyHousekeepingEvery)
	look()
	if got := cycles(); got != base+1 {
		t.Errorf("%v cycles after steadyHousekeepingEvery, want %v", got, base+1)
	}
	// etcd leadership moves: looked at closely again, and the next cycle
	// comes after --reconcile-interval.
	moved := st
	moved.Leader, moved.RaftTerm = 0xb, 3
	f.status[a.clientURL()] = moved
	clock.add(time.Millisecond)
	look()
	if s.steady {
		t.Error("steady right after a leader change")
	}
	clock.add(a.cfg.ReconcileInterval)
	look()
	if got := cycles(); got != base+2 {
		t.Errorf("%v cycles --reconcile-interval after a leader change, want %v", got, base+2)
	}
}

// Housekeeping slows down while all is steady and speeds up while a change
// settles, for a while only.
func TestHousekeepingEvery(t *testing.T) {
	const reconcile = 5 * time.Second
	for _, c := range []struct {
		name              string
		member, cluster   bool
		sinceChange, want time.Duration
	}{
		{"steady", true, true, time.Hour, steadyHousekeepingEvery},
		{"member steady, cluster just changed", true, false, time.Second, settlingHousekeepingEvery},
		{"settling", false, false, settlingFor - time.Second, settlingHousekeepingEvery},
		{"unsettled for long: a member down for good", false, false, settlingFor, reconcile},
		{"member changing, cluster steady", false, true, time.Second, reconcile},
	} {
		if got := housekeepingEvery(reconcile, c.member, c.cluster, c.sinceChange); got != c.want {
			t.Errorf("%s: every %s, want %s", c.name, got, c.want)
		}
	}
	if got := housekeepingEvery(500*time.Millisecond, false, false, 0); got != 500*time.Millisecond {
		t.Errorf("a --reconcile-interval below the settling pace: every %s, want it", got)
	}
}
