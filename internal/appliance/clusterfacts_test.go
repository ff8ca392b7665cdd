package appliance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	snapstore "github.com/etcd-appliance/etcd-appliance/internal/snapshot"
)

func voters(n int) []cluster.Member {
	var ms []cluster.Member
	for i := 1; i <= n; i++ {
		ms = append(ms, cluster.Member{ID: cluster.ID(i), Name: fmt.Sprintf("i-%d", i),
			PeerURLs:   []string{fmt.Sprintf("http://10.0.0.%d:2380", i)},
			ClientURLs: []string{fmt.Sprintf("http://10.0.0.%d:2379", i)}})
	}
	return ms
}

func healthOf(healthy ...cluster.ID) map[cluster.ID]cluster.MemberStatus {
	out := map[cluster.ID]cluster.MemberStatus{}
	for _, id := range healthy {
		out[id] = cluster.MemberStatus{ID: id, Healthy: true}
	}
	return out
}

func TestDecideClusterFacts(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	withLearner := append(voters(3), cluster.Member{ID: 4, Name: "i-4", IsLearner: true,
		ClientURLs: []string{"http://10.0.0.4:2379"}})
	snaps := []snapstore.Meta{
		{Key: "c/a", Revision: 10, Time: now.Add(-3 * time.Hour)},
		{Key: "c/b", Revision: 42, Time: now.Add(-time.Hour)},
		{Key: "c/c", Revision: 30, Time: now.Add(-30 * time.Minute)},
	}
	for _, c := range []struct {
		name string
		in   clusterFactsInputs
		want clusterFacts
	}{
		{"all healthy: one failure to spare", clusterFactsInputs{Members: voters(3), Health: healthOf(1, 2, 3)},
			clusterFacts{MembersKnown: true, Members: 3, Voters: 3, MembersHealthy: 3, VotersHealthy: 3, QuorumMargin: 1}},
		{"one voter down: none to spare", clusterFactsInputs{Members: voters(3), Health: healthOf(1, 3)},
			clusterFacts{MembersKnown: true, Members: 3, Voters: 3, MembersHealthy: 2, VotersHealthy: 2, QuorumMargin: 0}},
		{"two of three down: lost", clusterFactsInputs{Members: voters(3), Health: healthOf(2)},
			clusterFacts{MembersKnown: true, Members: 3, Voters: 3, MembersHealthy: 1, VotersHealthy: 1, QuorumMargin: -1}},
		{"a learner is no voter", clusterFactsInputs{Members: withLearner, Health: healthOf(1, 2, 4)},
			clusterFacts{MembersKnown: true, Members: 4, Voters: 3, MembersHealthy: 3, VotersHealthy: 2, QuorumMargin: 0}},
		{"five voters, two down", clusterFactsInputs{Members: voters(5), Health: healthOf(1, 2, 3)},
			clusterFacts{MembersKnown: true, Members: 5, Voters: 5, MembersHealthy: 3, VotersHealthy: 3, QuorumMargin: 0}},
		{"no member list: nothing known", clusterFactsInputs{Health: healthOf(1)}, clusterFacts{}},
		{"the newest snapshot is the highest revision", clusterFactsInputs{StoreListed: true, SnapshotsListed: true, Snapshots: snaps},
			clusterFacts{StoreKnown: true, StoreUp: true, SnapshotsKnown: true, Snapshots: 3,
				SnapshotTime: now.Add(-time.Hour), SnapshotRevision: 42}},
		{"an empty store: known, none", clusterFactsInputs{StoreListed: true, SnapshotsListed: true},
			clusterFacts{StoreKnown: true, StoreUp: true, SnapshotsKnown: true}},
		{"a failed listing keeps the last good one", clusterFactsInputs{StoreListed: true, StoreErr: errors.New("denied"),
			SnapshotsListed: true, Snapshots: snaps[:1]},
			clusterFacts{StoreKnown: true, StoreUp: false, SnapshotsKnown: true, Snapshots: 1,
				SnapshotTime: now.Add(-3 * time.Hour), SnapshotRevision: 10}},
		{"a store never listed: no snapshot facts", clusterFactsInputs{StoreListed: true, StoreErr: errors.New("denied")},
			clusterFacts{StoreKnown: true}},
		{"holds: their age from the oldest", clusterFactsInputs{Now: now, HoldsKnown: true, Holds: heldRemovals{
			ByRule: map[cluster.Rule]int{cluster.RuleFullStrength: 2}, Oldest: now.Add(-10 * time.Minute)}},
			clusterFacts{HoldsKnown: true, Held: map[cluster.Rule]int{cluster.RuleFullStrength: 2}, HeldFor: 10 * time.Minute}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := decideClusterFacts(c.in)
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestHeldRemovalsOf(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	got := heldRemovalsOf(cluster.Holds{
		{Rule: cluster.RuleFullStrength, Member: 1}: t0.Add(time.Minute),
		{Rule: cluster.RuleFullStrength, Member: 2}: t0,
		{Rule: cluster.RuleQuorum, Member: 3}:       t0.Add(2 * time.Minute),
	})
	if got.ByRule[cluster.RuleFullStrength] != 2 || got.ByRule[cluster.RuleQuorum] != 1 || !got.Oldest.Equal(t0) {
		t.Errorf("summary = %+v", got)
	}
	if none := heldRemovalsOf(nil); none.ByRule != nil || !none.Oldest.IsZero() {
		t.Errorf("no holds summarised as %+v", none)
	}
}

// TestClusterCollectorExportsOnlyWhatIsKnown: the state from the first
// scrape; the membership, store and holds only once gathered.
func TestClusterCollectorExportsOnlyWhatIsKnown(t *testing.T) {
	m := newMetrics(nil, buildInfo{})
	names := func() map[string]bool {
		families, err := m.registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, f := range families {
			if strings.HasPrefix(f.GetName(), "etcd_appliance_cluster_") {
				out[f.GetName()] = true
			}
		}
		return out
	}
	if got := names(); len(got) != 1 || !got["etcd_appliance_cluster_state"] {
		t.Errorf("before anything was gathered: %v, want the state alone", got)
	}
	want := `# HELP etcd_appliance_cluster_state 1 for the state this instance sees the cluster in: starting, serving, leaderless, quorum-lost, recovering.
# TYPE etcd_appliance_cluster_state gauge
etcd_appliance_cluster_state{state="leaderless"} 0
etcd_appliance_cluster_state{state="quorum-lost"} 0
etcd_appliance_cluster_state{state="recovering"} 0
etcd_appliance_cluster_state{state="serving"} 1
etcd_appliance_cluster_state{state="starting"} 0
`
	m.cluster.setState(stateServing)
	if err := testutil.GatherAndCompare(m.registry, strings.NewReader(want), "etcd_appliance_cluster_state"); err != nil {
		t.Error(err)
	}
	taken := time.Unix(1_700_000_000, 0)
	m.cluster.set(clusterFacts{MembersKnown: true, Members: 3, Voters: 3, MembersHealthy: 2, VotersHealthy: 2,
		StoreKnown: true, StoreUp: true, SnapshotsKnown: true, Snapshots: 4, SnapshotTime: taken, SnapshotRevision: 99,
		HoldsKnown: true, Held: map[cluster.Rule]int{cluster.RuleFullStrength: 1}, HeldFor: 90 * time.Second})
	values := map[string]string{
		"etcd_appliance_cluster_members":                    "3",
		"etcd_appliance_cluster_voters_healthy":             "2",
		"etcd_appliance_cluster_quorum_margin":              "0",
		"etcd_appliance_cluster_snapshot_store_up":          "1",
		"etcd_appliance_cluster_snapshots":                  "4",
		"etcd_appliance_cluster_snapshot_timestamp_seconds": "1.7e+09",
		"etcd_appliance_cluster_snapshot_revision":          "99",
		"etcd_appliance_cluster_removal_held_seconds":       "90",
	}
	families, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]float64{}
	for _, f := range families {
		if want, ok := values[f.GetName()]; ok {
			if got := fmt.Sprint(f.GetMetric()[0].GetGauge().GetValue()); got != want {
				t.Errorf("%s = %s, want %s", f.GetName(), got, want)
			}
			delete(values, f.GetName())
		}
		if f.GetName() == "etcd_appliance_cluster_removals_held" {
			for _, s := range f.GetMetric() {
				held[labelValue(s, "rule")] = s.GetGauge().GetValue()
			}
		}
	}
	if len(values) != 0 {
		t.Errorf("not exported: %v", values)
	}
	if len(held) != len(holdRules) || held["full-strength"] != 1 || held["quorum"] != 0 {
		t.Errorf("removals held by rule: %v, want every rule, full-strength at 1", held)
	}
	m.cluster.forgetMembers()
	if got := names(); got["etcd_appliance_cluster_members"] || got["etcd_appliance_cluster_removals_held"] ||
		!got["etcd_appliance_cluster_snapshot_revision"] {
		t.Errorf("after the supervision ended: %v, want the store's facts alone", got)
	}
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestEveryMemberExportsTheSameClusterFacts: a follower, which never took
// a snapshot nor held the role, exports what the housekeeper knows: the
// store's newest snapshot and the holds it published.
func TestEveryMemberExportsTheSameClusterFacts(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	store, err := snapstore.Open(ctx, "file://"+t.TempDir(), snapstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ms := voters(3)
	f := newFakeEtcd(ms)
	delete(f.status, ms[2].ClientURLs[0]) // the third member does not answer
	housekeeper, follower := testAppliance(t), testAppliance(t)
	for _, a := range []*Appliance{housekeeper, follower} {
		a.now = func() time.Time { return now }
		a.supervisor.facts.store = store
	}
	if _, err := store.Put(ctx, snapstore.Meta{Cluster: housekeeper.clusterName(), Time: now.Add(-time.Hour), Revision: 7},
		strings.NewReader("snapshot")); err != nil {
		t.Fatal(err)
	}
	housekeeper.housekeeper.holds = cluster.Holds{{Rule: cluster.RuleFullStrength, Member: 2}: now.Add(-5 * time.Minute)}
	housekeeper.housekeeper.publishHolds(ctx, f)

	var exported []string
	for _, a := range []*Appliance{housekeeper, follower} {
		a.supervisor.facts.refresh(ctx, f)
		families, err := a.metrics.registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, fam := range families {
			if !strings.HasPrefix(fam.GetName(), "etcd_appliance_cluster_") {
				continue
			}
			for _, s := range fam.GetMetric() {
				lines = append(lines, fmt.Sprintf("%s%s %v", fam.GetName(), labelValue(s, "rule"), s.GetGauge().GetValue()))
			}
		}
		exported = append(exported, strings.Join(lines, "\n")+"\n")
	}
	if exported[0] != exported[1] {
		t.Errorf("the housekeeper exports\n%s\nthe follower\n%s", exported[0], exported[1])
	}
	for _, want := range []string{
		"etcd_appliance_cluster_quorum_margin 0",
		"etcd_appliance_cluster_voters_healthy 2",
		fmt.Sprintf("etcd_appliance_cluster_snapshot_timestamp_seconds %v", float64(now.Add(-time.Hour).Unix())),
		"etcd_appliance_cluster_snapshot_revision 7",
		"etcd_appliance_cluster_removals_heldfull-strength 1",
		"etcd_appliance_cluster_removal_held_seconds 300",
	} {
		if !strings.Contains(exported[1], want+"\n") {
			t.Errorf("the follower does not export %q:\n%s", want, exported[1])
		}
	}
}

// TestHeldRemovalsArePublishedOnlyWhenTheyChange: every write is a
// revision, and a revision is a snapshot to take.
func TestHeldRemovalsArePublishedOnlyWhenTheyChange(t *testing.T) {
	ctx := context.Background()
	a := testAppliance(t)
	f := newFakeEtcd(voters(3))
	h := a.housekeeper
	h.publishHolds(ctx, f)
	if _, ok := f.facts[holdsKey]; ok {
		t.Errorf("a cluster that holds nothing got the key: %s", f.facts[holdsKey])
	}
	h.holds = cluster.Holds{{Rule: cluster.RuleQuorum, Member: 3}: time.Unix(1_700_000_000, 0)}
	h.publishHolds(ctx, f)
	if got := string(f.facts[holdsKey]); !strings.Contains(got, `"quorum":1`) {
		t.Fatalf("published %s, want the quorum hold", got)
	}
	f.fail["PutFact"] = []error{errors.New("a write that should not happen")}
	h.publishHolds(ctx, f)
	if len(f.fail["PutFact"]) != 1 {
		t.Error("unchanged holds were written again")
	}
	// A new tenure reads what its predecessor left and corrects it.
	h.reset()
	f.fail["PutFact"] = nil
	h.publishHolds(ctx, f)
	if got := string(f.facts[holdsKey]); got != "{}" {
		t.Errorf("the new tenure left %s, want no holds", got)
	}
}

func TestStartupState(t *testing.T) {
	lost := cluster.StartupInputs{Recovery: cluster.RecoveryInputs{LostSince: time.Unix(1_700_000_000, 0)}}
	for _, c := range []struct {
		in     cluster.StartupInputs
		action cluster.StartupAction
		want   clusterState
	}{
		{cluster.StartupInputs{}, cluster.Wait, stateStarting},
		{cluster.StartupInputs{}, cluster.Join, stateStarting},
		{lost, cluster.Wait, stateQuorumLost},
		{lost, cluster.Recover, stateRecovering},
		{cluster.StartupInputs{}, cluster.Restore, stateRecovering},
	} {
		if got := startupState(c.in, cluster.StartupPlan{Action: c.action}); got != c.want {
			t.Errorf("startupState(lost since %s, %s) = %s, want %s", c.in.Recovery.LostSince, c.action, got, c.want)
		}
	}
}
