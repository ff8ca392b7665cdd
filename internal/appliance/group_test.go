package appliance

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

func TestListGroupSharesRecentListings(t *testing.T) {
	a := testAppliance(t)
	g := a.groups.group.(*fakeGroup)
	g.instances = []cluster.Instance{{ID: "i-1", Address: "127.0.0.1", State: cluster.InstanceRunning}}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	ctx := context.Background()

	if _, err := a.groups.list(ctx, cluster.SteadyListEvery); err != nil || g.listings != 1 {
		t.Fatalf("first listing: err %v, %d listings, want 1", err, g.listings)
	}
	now = now.Add(cluster.SteadyListEvery - time.Second)
	if got, err := a.groups.list(ctx, cluster.SteadyListEvery); err != nil || g.listings != 1 || len(got) != 1 {
		t.Fatalf("recent listing: %v, err %v, %d listings, want the cached one", got, err, g.listings)
	}
	if _, err := a.groups.list(ctx, 0); err != nil || g.listings != 2 {
		t.Fatalf("maxAge 0: err %v, %d listings, want a fresh one", err, g.listings)
	}

	// A failed listing is the answer, never the older listing.
	now = now.Add(cluster.SteadyListEvery)
	g.err = errors.New("throttled")
	if got, err := a.groups.list(ctx, cluster.SteadyListEvery); err == nil {
		t.Fatalf("failed listing answered %v", got)
	}
	// ... and it does not refresh the cache's age.
	g.err = nil
	if _, err := a.groups.list(ctx, cluster.SteadyListEvery); err != nil || g.listings != 4 {
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
				a.groups.group.(*fakeGroup).instances = tc.listed
				if _, err := a.groups.list(context.Background(), 0); err != nil {
					t.Fatal(err)
				}
			}
			if got := cluster.Steady(tc.members, healthyByID(tc.health), a.groups.last()); got != tc.want {
				t.Errorf("steady = %v, want %v", got, tc.want)
			}
		})
	}
}

// checkingGroup is a fakeGroup that also confirms terminations.
type checkingGroup struct {
	fakeGroup
	terminated map[string]bool
	asked      [][]string
	err        error
}

func (g *checkingGroup) Terminated(_ context.Context, ids []string) ([]string, error) {
	g.asked = append(g.asked, ids)
	if g.err != nil {
		return nil, g.err
	}
	var out []string
	for _, id := range ids {
		if g.terminated[id] {
			out = append(out, id)
		}
	}
	return out, nil
}

func TestConfirmedTerminationsJoinTheListing(t *testing.T) {
	a := testAppliance(t)
	g := &checkingGroup{terminated: map[string]bool{"i-gone": true}}
	tm := newTerminations(a.node, g)
	members := []cluster.Member{{ID: 1, Name: "i-1"}, {ID: 2, Name: "i-gone"}, {ID: 3, Name: "i-away"}, {ID: 4}}
	listing := []cluster.Instance{{ID: "i-1", State: cluster.InstanceRunning}}
	ctx := context.Background()

	got := tm.withConfirmed(ctx, listing, members)
	want := []cluster.Instance{listing[0], {ID: "i-gone", State: cluster.InstanceTerminated}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("listing = %+v, want %+v", got, want)
	}
	if len(g.asked) != 1 || !reflect.DeepEqual(g.asked[0], []string{"i-gone", "i-away"}) {
		t.Errorf("asked about %v, want the absent named members once", g.asked)
	}
	if len(listing) != 1 {
		t.Errorf("the cached listing was changed: %+v", listing)
	}
	// A confirmed termination is remembered; only the unconfirmed are asked again.
	tm.withConfirmed(ctx, listing, members)
	if len(g.asked) != 2 || !reflect.DeepEqual(g.asked[1], []string{"i-away"}) {
		t.Errorf("second check asked about %v, want only i-away", g.asked)
	}
	// A failed check confirms nothing new.
	g.err = errors.New("throttled")
	got = tm.withConfirmed(ctx, listing, []cluster.Member{{ID: 1, Name: "i-1"}, {ID: 3, Name: "i-away"}})
	if len(got) != 1 {
		t.Errorf("failed check changed the listing: %+v", got)
	}
	if tm.gone["i-gone"] {
		t.Error("a removed member's confirmation was kept")
	}
}
