package appliance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

func TestListGroupSharesRecentListings(t *testing.T) {
	a := testAppliance(t)
	g := a.group.(*fakeGroup)
	g.instances = []cluster.Instance{{ID: "i-1", Address: "127.0.0.1", State: cluster.InstanceRunning}}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	ctx := context.Background()

	if _, err := a.listGroup(ctx, steadyListEvery); err != nil || g.listings != 1 {
		t.Fatalf("first listing: err %v, %d listings, want 1", err, g.listings)
	}
	now = now.Add(steadyListEvery - time.Second)
	if got, err := a.listGroup(ctx, steadyListEvery); err != nil || g.listings != 1 || len(got) != 1 {
		t.Fatalf("recent listing: %v, err %v, %d listings, want the cached one", got, err, g.listings)
	}
	if _, err := a.listGroup(ctx, 0); err != nil || g.listings != 2 {
		t.Fatalf("maxAge 0: err %v, %d listings, want a fresh one", err, g.listings)
	}

	// A failed listing is the answer, never the older listing.
	now = now.Add(steadyListEvery)
	g.err = errors.New("throttled")
	if got, err := a.listGroup(ctx, steadyListEvery); err == nil {
		t.Fatalf("failed listing answered %v", got)
	}
	// ... and it does not refresh the cache's age.
	g.err = nil
	if _, err := a.listGroup(ctx, steadyListEvery); err != nil || g.listings != 4 {
		t.Fatalf("after a failure: err %v, %d listings, want 4", err, g.listings)
	}
}

func TestSteadyOnlyWhenNothingChanges(t *testing.T) {
	voter := func(id cluster.ID, name string) cluster.Member {
		return cluster.Member{ID: id, Name: name, PeerURLs: []string{"http://" + name}, ClientURLs: []string{"http://" + name}}
	}
	members := []cluster.Member{voter(1, "i-1"), voter(2, "i-2")}
	healthy := map[cluster.ID]cluster.MemberStatus{1: {Healthy: true}, 2: {Healthy: true}}
	running := []cluster.Instance{{ID: "i-1", State: cluster.InstanceRunning}, {ID: "i-2", State: cluster.InstanceRunning}}
	learner := voter(2, "i-2")
	learner.IsLearner = true
	unstarted := voter(2, "")
	unstarted.ClientURLs = nil

	for _, tc := range []struct {
		name    string
		listed  []cluster.Instance // nil: never listed
		members []cluster.Member
		health  map[cluster.ID]cluster.MemberStatus
		want    bool
	}{
		{"all started healthy voters, all running", running, members, healthy, true},
		{"never listed", nil, members, healthy, false},
		{"a member unhealthy", running, members, map[cluster.ID]cluster.MemberStatus{1: {Healthy: true}}, false},
		{"a learner", running, []cluster.Member{members[0], learner}, healthy, false},
		{"an unstarted member", running, []cluster.Member{members[0], unstarted}, healthy, false},
		{"an instance terminated", []cluster.Instance{running[0], {ID: "i-2", State: cluster.InstanceTerminated}}, members, healthy, false},
		{"an instance absent", running[:1], members, healthy, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testAppliance(t)
			if tc.listed != nil {
				a.group.(*fakeGroup).instances = tc.listed
				if _, err := a.listGroup(context.Background(), 0); err != nil {
					t.Fatal(err)
				}
			}
			if got := a.steady(tc.members, tc.health); got != tc.want {
				t.Errorf("steady = %v, want %v", got, tc.want)
			}
		})
	}
}
