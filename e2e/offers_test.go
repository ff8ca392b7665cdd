package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// TestOrphanOfferExpires plays a bootstrap whose offer lost its members:
// A accepted an offer of {A, B, C} and runs etcd on it, then B and C are
// replaced by D and E before they accepted. The offer can never get a
// leader; it must not hold the group forever: A gives it up (its never-led
// data set aside, not deleted), and A, D and E form a new cluster.
func TestOrphanOfferExpires(t *testing.T) {
	g := newGroup(t)
	ctx := testContext(t, 3*time.Minute)
	insts, err := g.Add(3)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := insts[0], insts[1], insts[2]

	// The offer as A's bootstrap records it (datadir.go, writeOffer): the
	// JSON of a cluster.BootstrapOffer in <data dir>/bootstrap.json. B and
	// C never run, so they never accept it.
	offer := cluster.BootstrapOffer{Token: g.Name() + "-orphan"}
	for _, inst := range insts {
		offer.Members = append(offer.Members, cluster.NamedPeer{Name: inst.ID, PeerURL: inst.PeerURL()})
	}
	raw, err := json.Marshal(offer)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.DataDir, "bootstrap.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	// A starts etcd on the offer: it creates data and waits for a leader.
	var orphan cluster.ID
	err = fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		peer, err := g.Peer(ctx, a.ID)
		if err != nil {
			return false, err.Error()
		}
		if !peer.EtcdRunning || !peer.HasData || peer.Offer == nil || peer.Offer.Token != offer.Token {
			return false, fmt.Sprintf("%s does not run etcd on the offer yet: %+v", a, peer)
		}
		if peer.HasLeader {
			t.Fatalf("%s's etcd has a leader on an offer of three with one started", a)
		}
		orphan = peer.ClusterID
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s runs etcd on offer %s (cluster %s) without a leader", a, offer.Token, orphan)

	for _, gone := range []*fleet.Instance{b, c} {
		if err := g.SetState(gone.ID, cluster.InstanceTerminated); err != nil {
			t.Fatal(err)
		}
	}
	started := time.Now()
	newcomers, err := g.LaunchN(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	st := waitConverged(t, ctx, g, 3)
	t.Logf("%s gave up the dead offer; cluster %s of %s and %v formed after %s", a, st.ClusterID, a, ids(newcomers),
		time.Since(started).Round(time.Millisecond))

	want := []string{a.ID, newcomers[0].ID, newcomers[1].ID}
	var got []string
	for _, m := range st.Members {
		got = append(got, m.Name)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("members %v, want %v: %s", got, want, fleet.Summarize(st))
	}
	if st.ClusterID == orphan {
		t.Fatalf("the cluster is the orphan offer's %s, want a new one", orphan)
	}
	// The new cluster's offer is withdrawn once its leader is seen.
	err = fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		_, err := os.Stat(filepath.Join(a.DataDir, "bootstrap.json"))
		return os.IsNotExist(err), fmt.Sprintf("%s still records a bootstrap offer after its cluster had a leader", a)
	})
	if err != nil {
		t.Fatal(err)
	}
	// The orphan's data is set aside, never deleted: its offer and its etcd
	// data are kept together under wiped-*.
	wiped, err := filepath.Glob(filepath.Join(a.DataDir, "wiped-*", "bootstrap.json"))
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, w := range wiped {
		var o cluster.BootstrapOffer
		if b, err := os.ReadFile(w); err == nil && json.Unmarshal(b, &o) == nil && o.Token == offer.Token {
			if _, err := os.Stat(filepath.Join(filepath.Dir(w), "etcd", "member", "wal")); err == nil {
				kept = append(kept, filepath.Dir(w))
			}
		}
	}
	if len(kept) != 1 {
		entries, _ := os.ReadDir(a.DataDir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("want the orphan offer's data set aside once under wiped-*, found %v in %s (entries %s)",
			kept, a.DataDir, strings.Join(names, " "))
	}
	putKeys(t, ctx, g, "after", 20)
	checkKeysOnEach(t, ctx, g, "after", 20)
}
