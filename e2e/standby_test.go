package e2e

import (
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// TestStandbyInstancesHideNoLiveCluster puts every instance of a running
// cluster out of service without stopping it (an Auto Scaling group's
// Standby: listed, not InService, still running) and launches replacements.
// The replacements must find the live cluster through the instances out of
// service and join it; creating a second cluster beside it would split the
// clients (issue: split brain through Standby instances).
func TestStandbyInstancesHideNoLiveCluster(t *testing.T) {
	g := newGroup(t)
	ctx := testContext(t, 4*time.Minute)
	old, st := startConverged(t, ctx, g, 3)
	live := st.ClusterID
	putKeys(t, ctx, g, "before", 50)

	for _, inst := range old {
		if err := g.SetState(inst.ID, cluster.InstanceStopped); err != nil {
			t.Fatal(err)
		}
	}
	fresh, err := g.LaunchN(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	// Every replacement ends up a running member of the live cluster, and
	// never of another one.
	err = fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		for _, inst := range append(old, fresh...) {
			peer, err := g.Peer(ctx, inst.ID)
			if err != nil {
				return false, err.Error()
			}
			if peer.ClusterID != 0 && peer.ClusterID != live {
				t.Fatalf("%s runs cluster %s beside the live cluster %s: split brain", inst, peer.ClusterID, live)
			}
			if peer.ClusterID != live || !peer.EtcdRunning || !peer.HasLeader {
				return false, inst.ID + " has not joined " + live.String() + " yet"
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, applianceLogTails(g, 40))
	}
	for _, inst := range fresh {
		checkKeys(t, ctx, g, "before", 50, inst.ID)
	}
}
