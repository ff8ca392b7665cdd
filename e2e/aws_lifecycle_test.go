package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// TestAWSTerminationThroughLifecycleHook is the termination path of §4.5:
// the group starts terminating the leader's instance, whose appliance sees
// its target lifecycle state turn Terminated, hands leadership over,
// removes its own member, stops etcd and completes the hook; only then does
// the group terminate it and launch a replacement, which joins. The
// cluster keeps quorum and every key throughout, and Route53 follows.
//
// moto gap (see fleet/awslifecycle.go): moto neither holds the
// instance in Terminating:Wait nor serves CompleteLifecycleAction; the
// harness turns the IMDS state, the fault proxy answers the completion, and
// the test terminates the instance once it is completed.
func TestAWSTerminationThroughLifecycleHook(t *testing.T) {
	const hook = "etcd-appliance-terminate"
	g, proxy := newFaultyAWSGroup(t, fleet.AWSOptions{Size: 3, HostedZone: testZone})
	ctx := testContext(t, 3*time.Minute)
	if err := g.PutTerminationHook(ctx, hook); err != nil {
		t.Fatal(err)
	}
	proxy.Inject(testcluster.Answer("autoscaling", "CompleteLifecycleAction"))
	st := waitAWSConverged(t, ctx, g, 3)
	waitAWSRecords(t, ctx, g, st)
	putKeys(t, ctx, g, "before", 100)

	old := leaderOf(t, st)
	victim := old.Name
	var others []string
	for _, m := range st.Members {
		if m.Name != victim {
			others = append(others, m.Name)
		}
	}
	c, err := g.Client(ctx, others...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Writes go on while the member leaves: the cluster never loses quorum.
	stopWrites := make(chan struct{})
	wrote := make(chan error, 1)
	go func() { wrote <- writeUntil(ctx, c, "during", stopWrites) }()

	if err := g.StartTermination(victim); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	err = fleet.Poll(testContext(t, 60*time.Second), 100*time.Millisecond, func() (bool, string) {
		n := proxy.Injected()["CompleteLifecycleAction"]
		return n > 0, "the hook was not completed"
	})
	if err != nil {
		t.Fatal(err)
	}
	completed := time.Since(started)
	close(stopWrites)
	if err := <-wrote; err != nil {
		t.Errorf("writes failed while %s left: %v", victim, err)
	}

	// Completed only after leaving: the member is gone, etcd stopped.
	resp, err := c.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if names := memberList(resp); slices.Contains(names, victim) || len(names) != 2 {
		t.Fatalf("after the hook was completed the members are %v, want the two others", names)
	}
	peer, err := g.Peer(ctx, victim)
	if err != nil || peer.EtcdRunning || peer.Phase != cluster.PhaseStopped {
		t.Fatalf("%s after completing: %+v (err %v), want etcd stopped", victim, peer, err)
	}
	log := g.LogTail(victim, 300)
	for _, want := range []string{"left the cluster", "the group is terminating this instance", "leadership moved before leaving", hook} {
		if !strings.Contains(log, want) {
			t.Errorf("%s's log does not say %q:\n%s", victim, want, log)
		}
	}
	t.Logf("%s left and completed the hook %s after its target state turned Terminated", victim, completed.Round(time.Millisecond))

	// The group goes on: it terminates the instance and launches a replacement.
	if err := g.TerminateInASG(ctx, victim, false); err != nil {
		t.Fatal(err)
	}
	stop := g.Follow(ctx)
	defer stop()
	after := waitAWSConverged(t, ctx, g, 3)
	if after.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s", st.ClusterID, after.ClusterID)
	}
	if ids := inService(t, ctx, g); !slices.Equal(memberNames(after), ids) {
		t.Fatalf("members %v, want the in-service instances %v", memberNames(after), ids)
	}
	waitAWSRecords(t, ctx, g, after)
	checkAWSKeysOnEach(t, ctx, g, "before", 100)
}

// writeUntil writes keys under prefix through c until stop closes; every
// write must succeed (each gets a few seconds and retries, as a client
// with a timeout would).
func writeUntil(ctx context.Context, c *clientv3.Client, prefix string, stop <-chan struct{}) error {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		// No write may stay refused for long: 10 s is an outage.
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		err := fleet.Poll(wctx, 50*time.Millisecond, func() (bool, string) {
			pctx, cancel := context.WithTimeout(wctx, 2*time.Second)
			defer cancel()
			_, err := c.Put(pctx, fmt.Sprintf("%s/%06d", prefix, i), "x")
			return err == nil, fmt.Sprint(err)
		})
		wcancel()
		if err != nil {
			return fmt.Errorf("write %d: %w", i, err)
		}
	}
}
