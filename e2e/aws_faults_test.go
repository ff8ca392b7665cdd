package e2e

// AWS failing under the appliances (SPEC §4.1, §4.4, §6): a
// testcluster.FaultProxy between the appliances and moto throttles or fails
// their calls while the group changes. A failed listing is unknown, never
// "the group is empty": no healthy member may be removed because of it.

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// assertKeptDuring lists the members through the given instances every 200ms
// until the window ends, and fails the test at once when a member of keep
// (by member id) is missing from a list. Unknown members may come and go.
// A list that fails (an election in flight) is skipped; it returns how many
// lists it read, and fails when none.
func assertKeptDuring(t *testing.T, ctx context.Context, g *fleet.AWSGroup, via []string, keep map[uint64]string, window time.Duration) int {
	t.Helper()
	c, err := g.Client(ctx, via...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	lists := 0
	for wctx.Err() == nil {
		lctx, lcancel := context.WithTimeout(wctx, 2*time.Second)
		resp, err := c.MemberList(lctx, clientv3.WithSerializable())
		lcancel()
		if err == nil {
			lists++
			have := map[uint64]bool{}
			for _, m := range resp.Members {
				have[m.ID] = true
			}
			for id, name := range keep {
				if !have[id] {
					t.Fatalf("member %x (%s) was removed while AWS failed; members now: %v", id, name, memberList(resp))
				}
			}
		}
		select {
		case <-wctx.Done():
		case <-tick.C:
		}
	}
	if ctx.Err() != nil {
		t.Fatal(ctx.Err())
	}
	if lists == 0 {
		t.Fatalf("no member list could be read through %v in %s", via, window)
	}
	return lists
}

func memberList(resp *clientv3.MemberListResponse) []string {
	var out []string
	for _, m := range resp.Members {
		out = append(out, fmt.Sprintf("%x=%s", m.ID, m.Name))
	}
	return out
}

// followerOf returns a member of st that does not lead.
func followerOf(t *testing.T, st cluster.ClusterStatus) cluster.MemberStatus {
	t.Helper()
	for _, m := range st.Members {
		if !m.Leader {
			return m
		}
	}
	t.Fatalf("no follower in %s", fleet.Summarize(st))
	return cluster.MemberStatus{}
}

// survivorsOf returns the member ids and instance ids of st's members but
// the one named victim.
func survivorsOf(st cluster.ClusterStatus, victim string) (map[uint64]string, []string) {
	keep := map[uint64]string{}
	var ids []string
	for _, m := range st.Members {
		if m.Name != victim {
			keep[uint64(m.ID)] = m.Name
			ids = append(ids, m.Name)
		}
	}
	slices.Sort(ids)
	return keep, ids
}

// awsConvergedAfterFault checks the end of a fault scenario: 3 healthy
// voters that are the in-service instances, in the same cluster, without
// the terminated instance's member, with every key, and Route53 listing
// them.
func awsConvergedAfterFault(t *testing.T, ctx context.Context, g *fleet.AWSGroup, before cluster.ClusterStatus, victim string, prefix string, keys int) {
	t.Helper()
	lifted := time.Now()
	after := waitAWSConverged(t, ctx, g, 3)
	t.Logf("converged %s after the fault was lifted: %s", time.Since(lifted).Round(time.Millisecond), fleet.Summarize(after))
	if after.ClusterID != before.ClusterID {
		t.Fatalf("cluster id changed from %s to %s: a new cluster formed", before.ClusterID, after.ClusterID)
	}
	if slices.Contains(memberNames(after), victim) {
		t.Fatalf("member of terminated %s still listed: %s", victim, fleet.Summarize(after))
	}
	if ids := inService(t, ctx, g); !slices.Equal(memberNames(after), ids) {
		t.Fatalf("members %v, want the in-service instances %v", memberNames(after), ids)
	}
	waitAWSRecords(t, ctx, g, after)
	checkAWSKeysOnEach(t, ctx, g, prefix, keys)
}

// TestAWSThrottlingStormDuringReplacement terminates a follower's instance
// through the Auto Scaling API while AWS throttles four in five
// DescribeAutoScalingGroups calls and fails four in five DescribeInstances
// calls with 500 (each attempt drawn anew, so some listings get through
// after the SDK's retries and most do not). While the storm lasts, the
// member list is read every 200ms: only the terminated instance's member
// may leave it. Once the storm ends, the cluster converges: the stale
// member removed, the replacement a voter, Route53 updated, every key kept.
func TestAWSThrottlingStormDuringReplacement(t *testing.T) {
	const storm = 12 * time.Second
	g, proxy := newFaultyAWSGroup(t, fleet.AWSOptions{Size: 3, HostedZone: testZone})
	ctx := testContext(t, 3*time.Minute)
	st := waitAWSConverged(t, ctx, g, 3)
	waitAWSRecords(t, ctx, g, st)
	putKeys(t, ctx, g, "storm", 50)

	throttle := testcluster.Throttle("autoscaling", "DescribeAutoScalingGroups")
	throttle.Rate = 0.8
	fail := testcluster.ServerError("ec2", "DescribeInstances")
	fail.Rate = 0.8
	proxy.ResetCounts()
	liftThrottle, liftFail := proxy.Inject(throttle), proxy.Inject(fail)

	victim := followerOf(t, st)
	keep, via := survivorsOf(st, victim.Name)
	if err := g.TerminateInASG(ctx, victim.Name, false); err != nil {
		t.Fatal(err)
	}
	g.Follow(ctx)
	lists := assertKeptDuring(t, ctx, g, via, keep, storm)
	liftThrottle()
	liftFail()
	calls, injected := proxy.Calls(), proxy.Injected()
	t.Logf("storm of %s over: %d member lists read; calls %v; faulted %v", storm, lists, calls, injected)
	// Every listing asks the group, so its faults prove the storm hit.
	// EC2 is asked only about instances whose view is not known (the
	// replacement), often once or twice: any share of those calls may have
	// drawn a fault, none included.
	if injected["DescribeAutoScalingGroups"] == 0 {
		t.Errorf("DescribeAutoScalingGroups: none of %d calls faulted: the storm missed the appliances", calls["DescribeAutoScalingGroups"])
	}
	awsConvergedAfterFault(t, ctx, g, st, victim.Name, "storm", 50)
}

// TestAWSDescribeInstancesDownDuringTermination terminates a follower's
// instance through the Auto Scaling API while EC2 answers every
// DescribeInstances with 500: the group listing is unknown, so nobody may
// be removed, not even the terminated instance's member. For 8 s (4 stale graces) the member list is read
// every 200ms and must hold all 3 members; then EC2 answers again and the
// cluster converges.
func TestAWSDescribeInstancesDownDuringTermination(t *testing.T) {
	const outage = 4 * staleGrace
	g, proxy := newFaultyAWSGroup(t, fleet.AWSOptions{Size: 3, HostedZone: testZone})
	ctx := testContext(t, 3*time.Minute)
	st := waitAWSConverged(t, ctx, g, 3)
	waitAWSRecords(t, ctx, g, st)
	putKeys(t, ctx, g, "outage", 50)

	proxy.ResetCounts()
	lift := proxy.Inject(testcluster.ServerError("ec2", "DescribeInstances"))
	victim := followerOf(t, st)
	keep, via := survivorsOf(st, victim.Name)
	keep[uint64(victim.ID)] = victim.Name
	if err := g.TerminateInASG(ctx, victim.Name, false); err != nil {
		t.Fatal(err)
	}
	g.Follow(ctx)
	lists := assertKeptDuring(t, ctx, g, via, keep, outage)
	lift()
	calls, injected := proxy.Calls(), proxy.Injected()
	t.Logf("EC2 outage of %s over: %d member lists read; DescribeInstances failed %d times", outage, lists, injected["DescribeInstances"])
	if injected["DescribeInstances"] == 0 || injected["DescribeInstances"] != calls["DescribeInstances"] {
		t.Errorf("DescribeInstances: %d of %d calls faulted; want every one, and some", injected["DescribeInstances"], calls["DescribeInstances"])
	}
	awsConvergedAfterFault(t, ctx, g, st, victim.Name, "outage", 50)
}
