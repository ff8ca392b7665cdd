package fleet_test

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// TestNetnsPartition runs three real appliances in network namespaces,
// cuts the peer port between the leader and a follower and heals it, then
// isolates the follower entirely: the test's own path to every instance
// stays open throughout, and Close leaves nothing behind.
func TestNetnsPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real appliances in network namespaces")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	binary, err := testcluster.BuildBinary(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	g, err := fleet.New(fleet.Options{Binary: binary, Dir: t.TempDir(), Netns: true})
	if err != nil {
		t.Fatal(err) // names what is missing: root, ip or nft
	}
	var namespaces []string
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(g.LogTails(30))
		}
		if err := g.Close(); err != nil {
			t.Error(err)
		}
		if left := g.NetlabLeftovers(); len(left) > 0 {
			t.Errorf("after Close, the netlab left %v", left)
		}
		nss, _ := exec.Command("ip", "netns", "list").Output()
		links, _ := exec.Command("ip", "-o", "link").Output()
		for _, ns := range namespaces {
			if strings.Contains(string(nss), ns) || strings.Contains(string(links), ns+"@") {
				t.Errorf("after Close, %s is still there:\n%s\n%s", ns, nss, links)
			}
		}
	})

	insts, err := g.LaunchN(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, inst := range insts {
		namespaces = append(namespaces, inst.Netns)
	}
	st, err := g.WaitConverged(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	var leader, follower *fleet.Instance
	for _, m := range st.Members {
		inst := g.Instance(m.Name)
		switch {
		case m.Leader:
			leader = inst
		case follower == nil:
			follower = inst
		}
	}
	if leader == nil || follower == nil {
		t.Fatalf("no leader and follower in %s", fleet.Summarize(st))
	}
	hostPort := func(inst *fleet.Instance, port int) string {
		return net.JoinHostPort(inst.Address, strconv.Itoa(port))
	}
	peerPort, apiPort := cluster.DefaultPorts.Peer, cluster.DefaultPorts.API
	unreachable := func(from, to *fleet.Instance, port int) {
		t.Helper()
		dctx, dcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer dcancel()
		if err := g.DialFrom(dctx, from.ID, hostPort(to, port)); err == nil {
			t.Fatalf("%s reached %s across the cut", from, hostPort(to, port))
		}
	}
	reachable := func(from, to *fleet.Instance, port int) {
		t.Helper()
		if err := g.DialFrom(ctx, from.ID, hostPort(to, port)); err != nil {
			t.Fatal(err)
		}
	}
	reachable(follower, leader, peerPort)

	// The peer port, both ways: the API port and the root's path stay.
	if err := g.CutBoth(leader.ID, follower.ID, peerPort); err != nil {
		t.Fatal(err)
	}
	unreachable(follower, leader, peerPort)
	unreachable(leader, follower, peerPort)
	reachable(follower, leader, apiPort)
	if _, err := g.StatusOf(ctx, follower.ID); err != nil {
		t.Fatalf("the root namespace lost %s's status to a cut between instances: %v", follower, err)
	}
	if err := g.HealAll(); err != nil {
		t.Fatal(err)
	}
	reachable(follower, leader, peerPort)
	if _, err := g.WaitConverged(ctx, 3); err != nil {
		t.Fatalf("after HealAll: %v", err)
	}

	// Isolation: the other two keep a quorum and take writes; the
	// isolated one still answers the test.
	if err := g.Isolate(follower.ID); err != nil {
		t.Fatal(err)
	}
	unreachable(follower, leader, cluster.DefaultPorts.Client)
	unreachable(leader, follower, apiPort)
	if _, err := g.StatusOf(ctx, follower.ID); err != nil {
		t.Fatalf("the root namespace lost the isolated %s: %v", follower, err)
	}
	c, err := g.Client(ctx, leader.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	if _, err := c.Put(pctx, "netns-partition", "quorum without "+follower.ID); err != nil {
		t.Fatalf("the two connected members took no write: %v", err)
	}
	if err := g.HealAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.WaitConverged(ctx, 3); err != nil {
		t.Fatalf("after healing the isolation: %v", err)
	}
}
