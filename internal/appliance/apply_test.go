package appliance

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/cluster/clustertest"
)

// The apply steps (join, leave, stale removal, promotion) against a fake
// etcd: each table row is an event in (the membership, a call failing
// half-way) and the calls and outcome out.

// selfMember is this test appliance's own member (i-1 on 127.0.0.1).
func selfMember(a *Appliance, id cluster.ID) cluster.Member {
	return cluster.Member{ID: id, Name: a.self.ID, PeerURLs: []string{a.peerURL()}, ClientURLs: []string{a.clientURL()}}
}

// joining wires a test appliance to the fake etcd and a fake launcher whose
// etcd serves from the launch that serveFrom names on (0: never).
func joining(t *testing.T, a *Appliance, f *fakeEtcd, serveFrom int) *fakeLauncher {
	t.Helper()
	a.dial = f.dialer()
	l := &fakeLauncher{serve: func(n int) {
		if serveFrom > 0 && n >= serveFrom {
			f.mu.Lock()
			f.status[a.clientURL()] = etcdStatus{ClusterID: f.clusterID, MemberID: f.nextID - 1, Leader: 0xb}
			f.mu.Unlock()
		}
	}}
	a.starter.launcher = l
	a.starter.publishGrace = 300 * time.Millisecond
	a.starter.promoteWait = time.Second
	return l
}

// joinInputs are the startup inputs of the test appliance with the fake's
// membership live, every member's instance running and no local data.
func joinInputs(t *testing.T, a *Appliance, f *fakeEtcd) (cluster.StartupInputs, cluster.StartupPlan) {
	t.Helper()
	group := []cluster.Instance{{ID: a.self.ID, Address: a.address, State: cluster.InstanceRunning}}
	for _, m := range f.members {
		if m.Name != "" && m.Name != a.self.ID {
			group = append(group, cluster.Instance{ID: m.Name, State: cluster.InstanceRunning})
		}
	}
	a.groups.group.(*fakeGroup).instances = group
	in := cluster.StartupInputs{Self: a.self, SelfPeerURL: a.peerURL(), GroupKnown: true, Group: group, Cluster: f.view()}
	return in, cluster.DecideStartup(in)
}

func TestJoinPhases(t *testing.T) {
	b, c := clustertest.Member(0xb, false), clustertest.Member(0xc, false)
	add := "AddLearner http://127.0.0.1:2380"
	tests := []struct {
		name      string
		fail      map[string][]error
		serveFrom int
		wantErr   error // nil: joined
		wantCalls []string
		launches  int
	}{
		{name: "joins, starts and is promoted", serveFrom: 1,
			wantCalls: []string{"Lock", "Members", "Members", add, "Promote f00", "Unlock"}, launches: 1},
		{name: "the lock is not had", fail: map[string][]error{"Lock": {rpctypes.ErrUnhealthy}}, wantErr: rpctypes.ErrUnhealthy,
			wantCalls: []string{"Lock"}},
		{name: "the member list fails under the lock", fail: map[string][]error{"Members": {rpctypes.ErrTimeout}},
			wantErr: rpctypes.ErrTimeout, wantCalls: []string{"Lock", "Members", "Unlock"}},
		{name: "etcd refuses the learner", fail: map[string][]error{"AddLearner": {rpctypes.ErrTooManyLearners}},
			wantErr: rpctypes.ErrTooManyLearners, wantCalls: []string{"Lock", "Members", "Members", add, "Unlock"}},
		{name: "a joined etcd that does not serve is restarted once", serveFrom: 2,
			wantCalls: []string{"Lock", "Members", "Members", add, "Promote f00", "Unlock"}, launches: 2},
		{name: "promoted by the leader meanwhile", serveFrom: 1, fail: map[string][]error{"Promote": {rpctypes.ErrMemberNotLearner}},
			wantCalls: []string{"Lock", "Members", "Members", add, "Promote f00", "Unlock"}, launches: 1},
		{name: "promotion refused until in sync, then done", serveFrom: 1,
			fail:      map[string][]error{"Promote": {rpctypes.ErrMemberLearnerNotReady, rpctypes.ErrMemberLearnerNotReady}},
			wantCalls: []string{"Lock", "Members", "Members", add, "Promote f00", "Promote f00", "Promote f00", "Unlock"}, launches: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := testAppliance(t)
			f := newFakeEtcd([]cluster.Member{b, c})
			f.fail = tt.fail
			l := joining(t, a, f, tt.serveFrom)
			in, plan := joinInputs(t, a, f)
			if plan.Action != cluster.Join {
				t.Fatalf("plan %s (%s), want join", plan.Action, plan.Reason)
			}
			proc, err := a.starter.apply(context.Background(), in, plan)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || proc != nil {
					t.Fatalf("apply = %v, %v; want %v", proc, err, tt.wantErr)
				}
			} else if err != nil || proc == nil {
				t.Fatalf("apply = %v, %v; want a running etcd", proc, err)
			}
			if got := f.log(false); !slices.Equal(got, tt.wantCalls) {
				t.Errorf("calls %q, want %q", got, tt.wantCalls)
			}
			if len(l.launches) != tt.launches {
				t.Fatalf("%d launches, want %d", len(l.launches), tt.launches)
			}
			if tt.launches == 0 {
				return
			}
			for _, p := range l.procs[:len(l.procs)-1] {
				if !p.stopped {
					t.Error("an etcd restarted to publish again was not stopped first")
				}
			}
			launch := l.launches[0]
			if launch.State != cluster.StateExisting || !slices.Contains(launch.InitialCluster, cluster.NamedPeer{Name: "i-1", PeerURL: a.peerURL()}) {
				t.Errorf("launch %+v, want state existing with this instance in the initial cluster", launch)
			}
			m, ok, err := a.data.readMarker()
			if err != nil || !ok || m.MemberID != 0xf00 || m.ClusterID != f.clusterID || !slices.Equal(m.Voters, []string{"i-b", "i-c"}) {
				t.Errorf("marker %+v (%v, %v), want member f00 of cluster c1 with voters i-b, i-c", m, ok, err)
			}
		})
	}
}

// A member whose instance is terminated blocks every member add (etcd's
// strict reconfiguration check): the joiner removes it first, under the
// lock and the quorum rule, without probing the machine that is gone.
func TestJoinRemovesATerminatedMemberFirst(t *testing.T) {
	b, c, d := clustertest.Member(0xb, false), clustertest.Member(0xc, false), clustertest.Member(0xd, false)
	add := "AddLearner http://127.0.0.1:2380"
	for _, tt := range []struct {
		name      string
		healthyC  bool
		wantCalls []string
		wantRule  cluster.Rule
	}{
		{name: "removed, then joined", healthyC: true,
			wantCalls: []string{"Lock", "Members", "Members", "Remove d", add, "Promote f00", "Unlock"}},
		{name: "kept when its removal leaves no healthy quorum", healthyC: false,
			wantCalls: []string{"Lock", "Members", "Members", "Unlock"}, wantRule: cluster.RuleQuorum},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := testAppliance(t)
			f := newFakeEtcd([]cluster.Member{b, c, d})
			if !tt.healthyC {
				delete(f.status, c.ClientURLs[0])
			}
			joining(t, a, f, 1)
			in, _ := joinInputs(t, a, f)
			for i := range in.Group {
				if in.Group[i].ID == d.Name {
					in.Group[i].State = cluster.InstanceTerminated
				}
			}
			a.groups.group.(*fakeGroup).instances = in.Group
			plan := cluster.DecideStartup(in)
			if plan.Action != cluster.Join || plan.RemoveMember != d.ID {
				t.Fatalf("plan %s removing %s (%s), want a join removing d", plan.Action, plan.RemoveMember, plan.Reason)
			}
			_, err := a.starter.apply(context.Background(), in, plan)
			if got := f.log(false); !slices.Equal(got, tt.wantCalls) {
				t.Errorf("calls %q, want %q", got, tt.wantCalls)
			}
			if f.called("Status " + d.ClientURLs[0]) {
				t.Error("the terminated instance's member was probed")
			}
			if tt.wantRule != "" && !isRule(err, tt.wantRule) {
				t.Errorf("apply = %v, want a refusal by rule %s", err, tt.wantRule)
			}
			if tt.wantRule == "" && err != nil {
				t.Errorf("apply = %v, want joined", err)
			}
		})
	}
}

func TestJoinFailsWhenEtcdCannotStart(t *testing.T) {
	a := testAppliance(t)
	f := newFakeEtcd([]cluster.Member{clustertest.Member(0xb, false), clustertest.Member(0xc, false)})
	l := joining(t, a, f, 1)
	l.err = errors.New("exec: no such file")
	in, plan := joinInputs(t, a, f)
	if _, err := a.starter.apply(context.Background(), in, plan); err == nil {
		t.Fatal("apply succeeded without etcd")
	}
	if f.called("Promote") {
		t.Error("a member whose etcd never started was promoted")
	}
	// The learner stays added for this address: the next plan resumes it.
	in, plan = joinInputs(t, a, f)
	if plan.Action != cluster.ResumeJoin {
		t.Errorf("next plan %s (%s), want resume-join", plan.Action, plan.Reason)
	}
}

func TestJoinDropsAPlanThatChangedUnderTheLock(t *testing.T) {
	a := testAppliance(t)
	f := newFakeEtcd([]cluster.Member{clustertest.Member(0xb, false), clustertest.Member(0xc, false)})
	l := joining(t, a, f, 1)
	in, plan := joinInputs(t, a, f)
	// Meanwhile the instance was added for this address by an earlier try.
	f.members = append(f.members, cluster.Member{ID: 0xd, PeerURLs: []string{a.peerURL()}, IsLearner: true})
	if _, err := a.starter.apply(context.Background(), in, plan); !errors.Is(err, errPlanChanged) {
		t.Fatalf("apply = %v, want errPlanChanged", err)
	}
	if f.called("AddLearner") || len(l.launches) != 0 {
		t.Errorf("acted on a stale plan: calls %q, %d launches", f.log(false), len(l.launches))
	}
}

// TestJoinVersionGate: a join whose etcd the cluster could not run with,
// or that would skip a minor, is refused under the lock before any change
// (a rejoin's removal of its old member included), and says so in the
// status and a metric until a join passes the gate.
func TestJoinVersionGate(t *testing.T) {
	for _, tt := range []struct {
		name     string
		own      string
		versions clusterVersions
		rejoin   bool
		// memberVersion is what the other members' status says they run.
		memberVersion string
		wantWhy       string // "": joins
		wantCalls     []string
	}{
		// The first member of a newer minor lists the members to learn
		// what they run: it takes the restore point (none without a store).
		{name: "one minor ahead joins", own: "3.6.16", versions: clusterVersions{Cluster: "3.5.0"},
			wantCalls: []string{"Lock", "Members", "Members", "AddLearner http://127.0.0.1:2380", "Promote f00", "Unlock"}},
		{name: "two minors ahead is refused", own: "3.7.0", versions: clusterVersions{Cluster: "3.5.0"},
			wantWhy: "2 minors ahead", wantCalls: []string{"Lock", "Members", "Members", "Unlock"}},
		{name: "a refused rejoin keeps its old member", own: "3.7.0", versions: clusterVersions{Cluster: "3.5.0"}, rejoin: true,
			wantWhy: "2 minors ahead", wantCalls: []string{"Lock", "Members", "Members", "Unlock"}},
		{name: "older is refused", own: "3.5.36", versions: clusterVersions{Cluster: "3.6.0"},
			wantWhy: "older than the cluster version 3.6", wantCalls: []string{"Lock", "Members", "Members", "Unlock"}},
		{name: "older joins while a downgrade to it is enabled", own: "3.5.36",
			versions:  clusterVersions{Cluster: "3.6.0", DowngradeTarget: "3.5.0"},
			wantCalls: []string{"Lock", "Members", "Members", "AddLearner http://127.0.0.1:2380", "Promote f00", "Unlock"}},
		{name: "an undecided cluster version is refused", own: "3.6.16", versions: clusterVersions{Cluster: "not_decided"},
			wantWhy: "not decided", wantCalls: []string{"Lock", "Members", "Members", "Unlock"}},
		{name: "a member below etcd's upgrade floor refuses the next minor", own: "3.7.3", versions: clusterVersions{Cluster: "3.6.0"},
			memberVersion: "3.6.5", wantWhy: "3.6.11 or later", wantCalls: []string{"Lock", "Members", "Members", "Unlock"}},
		{name: "members at the floor let the next minor join", own: "3.7.3", versions: clusterVersions{Cluster: "3.6.0"},
			memberVersion: "3.6.11",
			wantCalls:     []string{"Lock", "Members", "Members", "AddLearner http://127.0.0.1:2380", "Promote f00", "Unlock"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := testAppliance(t)
			a.starter.etcdVersion = tt.own
			ms := []cluster.Member{clustertest.Member(0xb, false), clustertest.Member(0xc, false)}
			if tt.rejoin {
				ms = append(ms, selfMember(a, 0xa))
			}
			f := newFakeEtcd(ms)
			delete(f.status, a.clientURL())
			for url, st := range f.status {
				st.Version = tt.memberVersion
				f.status[url] = st
			}
			f.versions = tt.versions
			l := joining(t, a, f, 1)
			in, plan := joinInputs(t, a, f)
			if want := map[bool]cluster.StartupAction{false: cluster.Join, true: cluster.Rejoin}[tt.rejoin]; plan.Action != want {
				t.Fatalf("plan %s (%s), want %s", plan.Action, plan.Reason, want)
			}
			_, err := a.starter.apply(context.Background(), in, plan)
			if got := f.log(false); !slices.Equal(got, tt.wantCalls) {
				t.Errorf("calls %q, want %q", got, tt.wantCalls)
			}
			waiting, _ := a.waitingFor()
			if tt.wantWhy == "" {
				if err != nil || len(l.launches) != 1 || waiting != "" || gauge(t, a.metrics.versionRefused) != 0 {
					t.Fatalf("apply = %v, %d launches, waiting %q; want joined", err, len(l.launches), waiting)
				}
				return
			}
			if !errors.Is(err, cluster.ErrVersionRefused) || !strings.Contains(err.Error(), tt.wantWhy) {
				t.Fatalf("apply = %v, want a version refusal saying %q", err, tt.wantWhy)
			}
			if len(l.launches) != 0 {
				t.Errorf("etcd started despite the refusal")
			}
			if !strings.Contains(waiting, tt.wantWhy) || gauge(t, a.metrics.versionRefused) != 1 {
				t.Errorf("waiting %q, etcd_appliance_join_version_refused %v; want the refusal published", waiting, gauge(t, a.metrics.versionRefused))
			}
			// The next round's plan is a join again: the status keeps saying why.
			if got := a.starter.waitReason(plan); got != waiting {
				t.Errorf("next wait reason %q, want %q", got, waiting)
			}
			// Once the cluster is at a version that fits, the join goes through.
			f.versions = clusterVersions{Cluster: tt.own}
			for url, st := range f.status {
				st.Version = tt.own
				f.status[url] = st
			}
			f.calls = nil
			if _, err := a.starter.apply(context.Background(), in, plan); err != nil {
				t.Fatalf("apply at a fitting cluster version = %v", err)
			}
			if w, _ := a.waitingFor(); a.starter.versionRefusal != "" || gauge(t, a.metrics.versionRefused) != 0 {
				t.Errorf("after joining: refusal %q (waiting %q), gauge %v; want cleared", a.starter.versionRefusal, w, gauge(t, a.metrics.versionRefused))
			}
		})
	}
}

func TestRejoinRemovesTheOldMemberFirst(t *testing.T) {
	a := testAppliance(t)
	f := newFakeEtcd([]cluster.Member{selfMember(a, 0xa), clustertest.Member(0xb, false), clustertest.Member(0xc, false)})
	delete(f.status, a.clientURL()) // this instance's etcd does not run
	joining(t, a, f, 1)
	in, plan := joinInputs(t, a, f)
	if plan.Action != cluster.Rejoin || plan.RemoveMember != 0xa {
		t.Fatalf("plan %s removing %s (%s), want rejoin removing a", plan.Action, plan.RemoveMember, plan.Reason)
	}
	if _, err := a.starter.apply(context.Background(), in, plan); err != nil {
		t.Fatal(err)
	}
	want := []string{"Lock", "Members", "Members", "Remove a", "AddLearner http://127.0.0.1:2380", "Promote f00", "Unlock"}
	if got := f.log(false); !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}

// TestRejoinAndReplaceRefuseTheUnsafeTable: the removal a join makes first
// (a rejoin's of this instance's old member, a replacement's of the stale
// member on its address) obeys the one removal rule (cluster.CheckRemoval),
// on the health it reads under the lock.
func TestRejoinAndReplaceRefuseTheUnsafeTable(t *testing.T) {
	for _, tt := range clustertest.UnsafeRemovals() {
		var target cluster.Member
		for _, m := range tt.Members {
			if m.ID == tt.Target {
				target = m
			}
		}
		host := strings.TrimSuffix(strings.TrimPrefix(target.PeerURLs[0], "http://"), ":2380")
		for _, path := range []struct {
			action cluster.StartupAction
			self   cluster.Instance
		}{
			// The old member is this instance's, by name.
			{cluster.Rejoin, cluster.Instance{ID: target.Name, Address: "127.0.0.9"}},
			// A new instance on the stale member's address.
			{cluster.ReplaceStale, cluster.Instance{ID: "i-new", Address: host}},
		} {
			t.Run(string(path.action)+"/"+tt.Name, func(t *testing.T) {
				a := testAppliance(t)
				path.self.State = cluster.InstanceRunning
				a.identified(path.self)
				f := newFakeEtcd(tt.Members)
				for _, m := range tt.Members {
					if !tt.Healthy[m.ID] {
						delete(f.status, clientURL(m))
					}
				}
				l := joining(t, a, f, 1)
				in, plan := joinInputs(t, a, f)
				if plan.Action != path.action || plan.RemoveMember != tt.Target {
					t.Fatalf("plan %s removing %s (%s), want %s removing %s", plan.Action, plan.RemoveMember, plan.Reason, path.action, tt.Target)
				}
				_, err := a.starter.apply(context.Background(), in, plan)
				if !isRule(err, tt.Rule) {
					t.Fatalf("apply = %v, want a refusal by the %s rule", err, tt.Rule)
				}
				if f.called("Remove") || f.called("AddLearner") || len(l.launches) != 0 {
					t.Errorf("acted despite the refusal: calls %q, %d launches", f.log(false), len(l.launches))
				}
			})
		}
	}
}

func clientURL(m cluster.Member) string {
	if len(m.ClientURLs) == 0 {
		return ""
	}
	return m.ClientURLs[0]
}

// leaving wires a test appliance named self to the fake etcd.
func leaving(t *testing.T, self string, f *fakeEtcd) *Appliance {
	t.Helper()
	a := testAppliance(t)
	a.identified(cluster.Instance{ID: self, Address: "127.0.0.1", State: cluster.InstanceRunning})
	a.dial = f.dialer()
	a.leaver.retry = time.Millisecond
	return a
}

func TestLeavePhases(t *testing.T) {
	tests := []struct {
		name      string
		leader    cluster.ID
		fail      map[string][]error
		wantErr   error // nil: left
		wantCalls []string
	}{
		{name: "a follower leaves", leader: 0xb, wantCalls: []string{"Members", "Lock", "Members", "Remove a", "Unlock"}},
		{name: "the leader hands over first", leader: 0xa,
			wantCalls: []string{"Members", "Lock", "Members", "MoveLeader b", "Remove a", "Unlock"}},
		{name: "a failed hand-over does not stop the leave", leader: 0xa, fail: map[string][]error{"MoveLeader": {rpctypes.ErrTimeout}},
			wantCalls: []string{"Members", "Lock", "Members", "MoveLeader b", "Remove a", "Unlock"}},
		{name: "removal retried while etcd says unstable", leader: 0xb,
			fail:      map[string][]error{"Remove": {rpctypes.ErrUnhealthy, rpctypes.ErrUnhealthy}},
			wantCalls: []string{"Members", "Lock", "Members", "Remove a", "Remove a", "Remove a", "Unlock"}},
		{name: "removed by the leader meanwhile", leader: 0xb, fail: map[string][]error{"Remove": {rpctypes.ErrMemberNotFound}},
			wantErr: errNotMember, wantCalls: []string{"Members", "Lock", "Members", "Remove a", "Unlock"}},
		{name: "any other removal error ends the leave", leader: 0xb, fail: map[string][]error{"Remove": {rpctypes.ErrPermissionDenied}},
			wantErr: rpctypes.ErrPermissionDenied, wantCalls: []string{"Members", "Lock", "Members", "Remove a", "Unlock"}},
		{name: "no lock, no leave", leader: 0xb, fail: map[string][]error{"Lock": {rpctypes.ErrUnhealthy}},
			wantErr: rpctypes.ErrUnhealthy, wantCalls: []string{"Members", "Lock"}},
		{name: "no member list under the lock, no leave", leader: 0xb, fail: map[string][]error{"Members": {nil, rpctypes.ErrTimeout}},
			wantErr: rpctypes.ErrTimeout, wantCalls: []string{"Members", "Lock", "Members", "Unlock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := []cluster.Member{clustertest.Member(0xa, false), clustertest.Member(0xb, false), clustertest.Member(0xc, false)}
			f := newFakeEtcd(ms)
			for url, st := range f.status {
				st.Leader = tt.leader
				f.status[url] = st
			}
			f.fail = tt.fail
			a := leaving(t, "i-a", f)
			err := a.leaver.leave(context.Background(), "test", false)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("leave = %v, want %v", err, tt.wantErr)
			}
			if got := f.log(false); !slices.Equal(got, tt.wantCalls) {
				t.Errorf("calls %q, want %q", got, tt.wantCalls)
			}
		})
	}
}

// TestLeaveRefusesTheUnsafeTable: leaving on shutdown and draining obey the
// one removal rule; a voter that never started counts (the bug of the
// leave that skipped such voters).
func TestLeaveRefusesTheUnsafeTable(t *testing.T) {
	for _, tt := range clustertest.UnsafeRemovals() {
		t.Run(tt.Name, func(t *testing.T) {
			f := newFakeEtcd(tt.Members)
			for _, m := range tt.Members {
				if !tt.Healthy[m.ID] {
					delete(f.status, clientURL(m))
				}
			}
			var self string
			for _, m := range tt.Members {
				if m.ID == tt.Target {
					self = m.Name
				}
			}
			a := leaving(t, self, f)
			err := a.leaver.leave(context.Background(), "test", false)
			if !isRule(err, tt.Rule) {
				t.Fatalf("leave = %v, want a refusal by the %s rule", err, tt.Rule)
			}
			// The lifecycle drain leaves the same way, retrying until its
			// bound, and reports a last voter as such.
			d := drainingAppliance(t, &fakeLifecycle{states: []string{targetTerminated}}).drainer
			d.node, d.leaver = a.node, a.leaver
			d.times.leaveFor = 50 * time.Millisecond
			left, last := d.leaveTerminating(context.Background(), newFakeProcess())
			if left || last != (tt.Rule == cluster.RuleLastVoter) {
				t.Errorf("drain: left %v, last %v; want refused, last voter only under its rule", left, last)
			}
			if f.called("Remove") || f.called("MoveLeader") {
				t.Errorf("acted despite the refusal: %q", f.log(false))
			}
		})
	}
}

// keeping wires the test appliance, as the leader i-1 of the fake's
// membership, to the fake etcd; the group lists instances as given.
func keeping(t *testing.T, f *fakeEtcd, group []cluster.Instance) *Appliance {
	t.Helper()
	a := testAppliance(t)
	a.dial = f.dialer()
	a.groups.group.(*fakeGroup).instances = group
	return a
}

func running(ids ...string) []cluster.Instance {
	var out []cluster.Instance
	for _, id := range ids {
		out = append(out, cluster.Instance{ID: id, State: cluster.InstanceRunning})
	}
	return out
}

func TestHousekeepingPhases(t *testing.T) {
	terminated := cluster.Instance{ID: "i-c", State: cluster.InstanceTerminated}
	tests := []struct {
		name      string
		fail      map[string][]error
		wantCalls []string
		removed   bool
	}{
		{name: "a terminated member is removed under the lock, the learner promoted",
			wantCalls: []string{"Members", "Promote d", "Lock", "Members", "Remove c", "Unlock"}, removed: true},
		{name: "a failed promotion does not stop the cycle", fail: map[string][]error{"Promote": {rpctypes.ErrMemberLearnerNotReady}},
			wantCalls: []string{"Members", "Promote d", "Lock", "Members", "Remove c", "Unlock"}, removed: true},
		{name: "no lock: postponed", fail: map[string][]error{"Lock": {rpctypes.ErrUnhealthy}},
			wantCalls: []string{"Members", "Promote d", "Lock"}},
		{name: "no member list under the lock: postponed", fail: map[string][]error{"Members": {nil, rpctypes.ErrTimeout}},
			wantCalls: []string{"Members", "Promote d", "Lock", "Members", "Unlock"}},
		{name: "the removal fails", fail: map[string][]error{"Remove": {rpctypes.ErrUnhealthy}},
			wantCalls: []string{"Members", "Promote d", "Lock", "Members", "Remove c", "Unlock"}},
		{name: "no member list: nothing", fail: map[string][]error{"Members": {rpctypes.ErrTimeout}},
			wantCalls: []string{"Members"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			self := cluster.Member{ID: 0xa, Name: "i-1", PeerURLs: []string{"http://127.0.0.1:2380"}, ClientURLs: []string{"http://127.0.0.1:2379"}}
			ms := []cluster.Member{self, clustertest.Member(0xb, false), clustertest.Member(0xc, false), clustertest.Member(0xd, true)}
			f := newFakeEtcd(ms)
			f.fail = tt.fail
			a := keeping(t, f, append(running("i-1", "i-b", "i-d"), terminated))
			before := counter(t, a.metrics.removals)
			if err := a.housekeeper.cycle(context.Background(), f, heldRole()); err != nil {
				t.Fatal(err)
			}
			if got := f.log(false); !slices.Equal(got, tt.wantCalls) {
				t.Errorf("calls %q, want %q", got, tt.wantCalls)
			}
			if got := counter(t, a.metrics.removals) - before; got != map[bool]float64{true: 1}[tt.removed] {
				t.Errorf("removals counted %v, want removed=%v", got, tt.removed)
			}
		})
	}
}

// TestHousekeepingDecidesAgainUnderTheLock: a removal planned on one
// membership is dropped when, under the lock, it would break the quorum.
func TestHousekeepingDecidesAgainUnderTheLock(t *testing.T) {
	self := cluster.Member{ID: 0xa, Name: "i-1", PeerURLs: []string{"http://127.0.0.1:2380"}, ClientURLs: []string{"http://127.0.0.1:2379"}}
	b, c := clustertest.Member(0xb, false), clustertest.Member(0xc, false)
	f := newFakeEtcd([]cluster.Member{self, b, c})
	a := keeping(t, f, append(running("i-1", "i-b"), cluster.Instance{ID: "i-c", State: cluster.InstanceTerminated}))
	// b answers the cycle's health check, then goes down before the lock.
	in, _, ok := a.housekeeper.gather(context.Background(), f)
	if !ok {
		t.Fatal("no inputs")
	}
	plan := cluster.DecideHousekeeping(in)
	if plan.Remove == nil || plan.Remove.Member.ID != 0xc {
		t.Fatalf("plan %+v, want c removed", plan)
	}
	delete(f.status, clientURL(b))
	if err := a.housekeeper.removeStale(context.Background(), f, heldRole(), in, plan.Remove); err != nil {
		t.Fatal(err)
	}
	if f.called("Remove") {
		t.Errorf("removed c with b down (calls %q): below the quorum of the remaining voters", f.log(false))
	}
}

// heldRole is a housekeeper role that stays held.
func heldRole() *fakeTenure { return &fakeTenure{done: make(chan struct{})} }

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// candidate wires a supervisor of the test appliance (instance i-1, member
// a) to the fake etcd of members a, b, c and a clock the test moves; i-c is
// no longer listed in the group.
func candidate(t *testing.T) (*Appliance, *fakeEtcd, *testClock) {
	t.Helper()
	self := cluster.Member{ID: 0xa, Name: "i-1", PeerURLs: []string{"http://127.0.0.1:2380"}, ClientURLs: []string{"http://127.0.0.1:2379"}}
	f := newFakeEtcd([]cluster.Member{self, clustertest.Member(0xb, false), clustertest.Member(0xc, false)})
	a := keeping(t, f, running("i-1", "i-b"))
	clock := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a.now = clock.now
	a.supervisor.role = newCandidacy(a.node, f)
	t.Cleanup(a.supervisor.role.end)
	return a, f, clock
}

// leading is the status of member a leading; following of a following b.
var (
	leading   = etcdStatus{ClusterID: 0xc1, MemberID: 0xa, Leader: 0xa}
	following = etcdStatus{ClusterID: 0xc1, MemberID: 0xa, Leader: 0xb}
)

// lookUntil looks at the role until cond holds, failing after a deadline:
// the campaign runs in the background.
func lookUntil(t *testing.T, s *supervisor, st etcdStatus, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
	for !cond() {
		s.keepHouse(context.Background(), context.Background(), s.role.c, st)
		select {
		case <-deadline:
			t.Fatalf("no %s after 5s of looks", what)
		case <-tick.C:
		}
	}
}

func gauge(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// TestHousekeeperRole: housekeeping runs where the role is held, not where
// etcd leads; a role lost, as the client sees it or only as etcd does (a
// process resumed after a pause), stops the cycles before any call.
func TestHousekeeperRole(t *testing.T) {
	t.Run("the etcd leader campaigns at once; the cycle runs once held", func(t *testing.T) {
		a, f, _ := candidate(t)
		s := a.supervisor
		lookUntil(t, s, leading, "housekeeping cycle", func() bool { return f.called("Members") })
		if gauge(t, a.metrics.housekeeper) != 1 || counter(t, a.metrics.housekeeping) != 1 {
			t.Errorf("housekeeper gauge %v, cycles %v; want 1, 1", gauge(t, a.metrics.housekeeper), counter(t, a.metrics.housekeeping))
		}
	})
	t.Run("a follower campaigns after campaignDelay, then keeps house", func(t *testing.T) {
		a, f, clock := candidate(t)
		s := a.supervisor
		for range 20 {
			s.keepHouse(context.Background(), context.Background(), f, following)
		}
		if f.called("HoldRole") {
			t.Fatalf("a follower campaigned before campaignDelay: %q", f.log(false))
		}
		clock.add(campaignDelay)
		lookUntil(t, s, following, "housekeeping cycle", func() bool { return f.called("Members") })
	})
	t.Run("a role that expired stops the cycles and campaigns again", func(t *testing.T) {
		a, f, clock := candidate(t)
		s := a.supervisor
		lookUntil(t, s, leading, "role", func() bool { return s.role.held != nil })
		first := f.tenure()
		first.expire()
		f.campaign = make(chan struct{}) // the next campaign waits in line
		calls := len(f.log(false))
		clock.add(time.Hour)
		lookUntil(t, s, leading, "new campaign", func() bool { return len(f.log(false)) > calls })
		for range 20 {
			s.keepHouse(context.Background(), context.Background(), f, leading)
		}
		// Only a new campaign, and the etcd leader's look at who holds the
		// role meanwhile (nobody here).
		got := slices.DeleteFunc(f.log(false)[calls:], func(c string) bool { return c == "RoleHolder" })
		if !slices.Equal(got, []string{"HoldRole"}) {
			t.Errorf("calls after the role expired %q, want only a new campaign", got)
		}
		if !first.isResigned() || gauge(t, a.metrics.housekeeper) != 0 {
			t.Errorf("expired role resigned %v, gauge %v; want resigned, 0", first.isResigned(), gauge(t, a.metrics.housekeeper))
		}
	})
	t.Run("a role etcd revoked while the process was paused: no cycle, no removal", func(t *testing.T) {
		a, f, clock := candidate(t)
		s := a.supervisor
		lookUntil(t, s, leading, "role", func() bool { return s.role.held != nil })
		f.tenure().revoke() // Done is not closed: the client did not notice yet
		f.campaign = make(chan struct{})
		calls := len(f.log(false))
		clock.add(time.Hour) // i-c absent all along: a removal would be due
		s.keepHouse(context.Background(), context.Background(), f, leading)
		if got := f.log(false)[calls:]; len(got) != 0 {
			t.Errorf("calls after the role was revoked %q, want none", got)
		}
		if s.role.held != nil {
			t.Error("a revoked role is still held")
		}
	})
	t.Run("a role lost under the membership lock removes nothing", func(t *testing.T) {
		a, f, _ := candidate(t)
		held := heldRole()
		in, _, ok := a.housekeeper.gather(context.Background(), f)
		if !ok {
			t.Fatal("no inputs")
		}
		in.StaleGrace = 0
		plan := cluster.DecideHousekeeping(in)
		if plan.Remove == nil {
			t.Fatalf("plan %+v, want c removed", plan)
		}
		held.revoke()
		if err := a.housekeeper.removeStale(context.Background(), f, held, in, plan.Remove); !errors.Is(err, errRoleLost) {
			t.Errorf("removeStale = %v, want errRoleLost", err)
		}
		if f.called("Remove") {
			t.Errorf("removed with the role lost: %q", f.log(false))
		}
	})
}

// TestDeadHolderIsUnseated: the etcd leader's appliance, waiting in line,
// ends the role of a holder whose etcd and appliance both do not answer
// (its instance was killed), instead of waiting out its lease; a holder that
// still answers keeps the role.
func TestDeadHolderIsUnseated(t *testing.T) {
	for _, tc := range []struct {
		name                string
		etcdUp, applianceUp bool
		revoked             bool
	}{
		{"etcd and appliance gone", false, false, true},
		{"etcd restarting, appliance alive", false, true, false},
		{"appliance hung, etcd alive", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, f, clock := candidate(t)
			s := a.supervisor
			holder := clustertest.Member(0xb, false) // a member of the candidate's fake
			if tc.etcdUp {
				f.status[clientURL(holder)] = etcdStatus{ClusterID: f.clusterID, MemberID: 0xb, Leader: 0xa}
			} else {
				delete(f.status, clientURL(holder))
			}
			f.holder, f.holderLease = holder.Name, 77
			f.campaign = make(chan struct{}) // in line behind the holder
			s.role = newCandidacy(a.node, f)
			s.role.answers = func(context.Context, string) bool { return tc.applianceUp }
			s.role.reachable = func(_ context.Context, e []string) []string { return e }
			t.Cleanup(s.role.end)
			lookUntil(t, s, leading, "campaign", func() bool { return f.called("HoldRole") })
			clock.add(holderCheckEvery)
			lookUntil(t, s, leading, "look at the holder", func() bool { return f.called("RoleHolder") })
			if got := f.called("RevokeLease 77"); got != tc.revoked {
				t.Errorf("holder's lease revoked: %v, want %v (calls %q)", got, tc.revoked, f.log(false))
			}
		})
	}
}

// TestCandidacyEndsWithoutWaitingForItsCampaign: the supervision ends (etcd
// exited) while a campaign waits in line; ending must not wait for it, and
// a role it wins afterwards is resigned at once.
func TestCandidacyEndsWithoutWaitingForItsCampaign(t *testing.T) {
	a, f, _ := candidate(t)
	s := a.supervisor
	f.campaign, f.deaf = make(chan struct{}), true
	lookUntil(t, s, leading, "campaign", func() bool { return f.called("HoldRole") })
	ended := make(chan struct{})
	go func() {
		s.role.end()
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("end waited for a campaign that cannot end")
	}
	f.campaign <- struct{}{}
	// waitFor fails the test when the role won late is never resigned.
	waitFor(t, func() bool { tt := f.tenure(); return tt != nil && tt.isResigned() })
}

// TestHousekeeperMemoryStartsEmptyOnRetake: a housekeeper that saw i-c
// absent, lost the role and takes it again an hour later must not count
// the hour: i-c is absent for 10 s as far as this tenure saw.
func TestHousekeeperMemoryStartsEmptyOnRetake(t *testing.T) {
	a, f, clock := candidate(t)
	s := a.supervisor
	lookUntil(t, s, leading, "housekeeping cycle", func() bool { return f.called("Members") })
	if _, ok := a.housekeeper.absentSince[0xc]; !ok {
		t.Fatalf("absence clocks %v, want one for c", a.housekeeper.absentSince)
	}
	f.tenure().expire()
	s.keepHouse(context.Background(), context.Background(), f, following)
	if s.role.held != nil {
		t.Fatal("the expired role is still held")
	}
	f.campaign = make(chan struct{})
	clock.add(time.Hour - 10*time.Second)
	for range 5 {
		s.keepHouse(context.Background(), context.Background(), f, following)
	}
	clock.add(10 * time.Second)
	f.campaign <- struct{}{} // the role comes back
	cycles := counter(t, a.metrics.housekeeping)
	lookUntil(t, s, following, "housekeeping cycle", func() bool { return counter(t, a.metrics.housekeeping) > cycles })
	if f.called("Remove") {
		t.Fatalf("removed c on the first cycle of a new tenure: %q", f.log(false))
	}
	if since := a.housekeeper.absentSince[0xc]; !since.Equal(clock.now()) {
		t.Errorf("c absent since %s, want since the new tenure's first cycle %s", since, clock.now())
	}
	// The new tenure's own clock still removes c after the grace.
	clock.add(a.cfg.StaleGrace)
	lookUntil(t, s, following, "removal", func() bool { return f.called("Remove") })
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestNoClusterIsCreatedBesideALiveOne: instances taken out of service
// (Standby, detached) keep running the cluster where no group instance tells
// of it; before creating one, the seeder asks the cluster's DNS records and
// the members seen before, and joins what answers instead.
func TestNoClusterIsCreatedBesideALiveOne(t *testing.T) {
	a := testAppliance(t)
	hidden := clustertest.Member(0xb, false)
	f := newFakeEtcd([]cluster.Member{hidden})
	a.dial = f.dialer()
	l := &fakeLauncher{}
	a.starter.launcher = l
	zone := &memoryDNS{records: []cluster.DNSRecord{{Name: "orders.example.org.", Type: cluster.RecordA, Values: []string{"10.0.0.9"}}}}
	d := a.housekeeper.dns
	d.dns, d.spec = zone, &cluster.DNSSpec{Zone: "example.org.", Name: "orders", TTL: 60, ClientPort: 2379, PeerPort: 2380}
	self := cluster.Instance{ID: "i-1", Address: "127.0.0.1", State: cluster.InstanceRunning}
	in := cluster.StartupInputs{Self: self, SelfPeerURL: a.peerURL(), GroupKnown: true, Group: []cluster.Instance{self}}
	plan := cluster.StartupPlan{Action: cluster.Bootstrap, Seeder: "i-1",
		Offer: &cluster.BootstrapOffer{Members: []cluster.NamedPeer{{Name: "i-1", PeerURL: a.peerURL()}}}}

	_, err := a.starter.apply(context.Background(), in, plan)
	if !errors.Is(err, errLiveElsewhere) || len(l.launches) != 0 {
		t.Fatalf("apply = %v with %d launches, want errLiveElsewhere and no etcd", err, len(l.launches))
	}
	if !slices.ContainsFunc(f.dials, func(eps []string) bool { return slices.Contains(eps, "http://10.0.0.9:2379") }) {
		t.Errorf("dialled %q, want the address of the cluster's DNS record", f.dials)
	}
	// The next plan sees the live cluster and joins it.
	a.groups.group.(*fakeGroup).instances = []cluster.Instance{self}
	next, err := a.starter.gather(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if next.Cluster == nil || cluster.DecideStartup(next).Action != cluster.Join {
		t.Errorf("next inputs: cluster %+v, plan %s; want the hidden cluster joined", next.Cluster, cluster.DecideStartup(next).Action)
	}
	// With nothing answering anywhere, the creation goes ahead.
	f.fail["Members"] = []error{rpctypes.ErrTimeout, rpctypes.ErrTimeout}
	a.starter.liveAt = nil
	if _, err := a.starter.apply(context.Background(), in, plan); err != nil || len(l.launches) != 1 {
		t.Errorf("apply with no live cluster anywhere = %v, %d launches; want the cluster created", err, len(l.launches))
	}
}
