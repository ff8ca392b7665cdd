package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// hookCompletion is one CompleteLifecycleAction an appliance sent, with
// what the member list said about the instance at that moment.
type hookCompletion struct {
	instance, hook, result string
	at                     time.Time
	// listed: the instance was a member; voter: a started voter. members
	// is the member list, for the failure messages.
	listed, voter bool
	members       string
}

// hookObserver answers CompleteLifecycleAction in the fault proxy and,
// while the calling appliance waits for the answer, reads the member list
// through c.
type hookObserver struct {
	c    *clientv3.Client
	mu   sync.Mutex
	seen []hookCompletion
}

func (o *hookObserver) observe(params url.Values) {
	comp := hookCompletion{instance: params.Get("InstanceId"), hook: params.Get("LifecycleHookName"),
		result: params.Get("LifecycleActionResult"), at: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := o.c.MemberList(ctx)
	if err != nil {
		comp.members = "member list unreadable: " + err.Error()
		comp.listed = true // unknown: not proof that it left
	} else {
		comp.members = strings.Join(memberList(resp), " ")
		for _, m := range resp.Members {
			if m.Name == comp.instance {
				comp.listed = true
				comp.voter = !m.IsLearner
			}
		}
	}
	o.mu.Lock()
	o.seen = append(o.seen, comp)
	o.mu.Unlock()
}

// of returns the completions of an instance's hook.
func (o *hookObserver) of(instance, hook string) []hookCompletion {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []hookCompletion
	for _, c := range o.seen {
		if c.instance == instance && c.hook == hook {
			out = append(out, c)
		}
	}
	return out
}

// waitLaunchCompleted waits until the instance completed its launch hook.
func waitLaunchCompleted(t *testing.T, o *hookObserver, instance, hook string, within time.Duration) hookCompletion {
	t.Helper()
	var got []hookCompletion
	err := fleet.Poll(testContext(t, within), 100*time.Millisecond, func() (bool, string) {
		got = o.of(instance, hook)
		return len(got) > 0, fmt.Sprintf("%s has not completed the launch hook %s", instance, hook)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Errorf("%s completed the launch hook %d times: %+v; want once", instance, len(got), got)
	}
	return got[0]
}

// TestAWSLaunchHook is the launch gate (issue 10, item 2) on a moto group
// with a launch hook, as an instance refresh or a rolling update drives
// it: a replacement completes the hook with CONTINUE only once it is a
// started voter; an instance of a bad release (an etcd that exits at once)
// completes it with ABANDON after --launch-timeout, saying why, and the
// cluster is untouched.
//
// moto gap (see fleet/awslifecycle.go): moto launches instances InService
// at once and answers CompleteLifecycleAction with 500; the fault proxy
// answers it, and reads the member list at the moment of each call.
func TestAWSLaunchHook(t *testing.T) {
	const hook = "etcd-appliance-launch"
	const launchTimeout = 8 * time.Second
	// The bad release's etcd tells its version (the appliance reads it at
	// start, and exits when it cannot) but exits at once when run.
	bad := filepath.Join(t.TempDir(), "etcd-that-exits")
	script := "#!/bin/sh\nif [ \"$1\" = --version ]; then exec " + binary + " etcd --version; fi\nexit 1\n"
	if err := os.WriteFile(bad, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	g, proxy := newFaultyAWSGroup(t, fleet.AWSOptions{Size: 3})
	ctx := testContext(t, 4*time.Minute)
	st := waitAWSConverged(t, ctx, g, 3)
	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := &hookObserver{c: c}
	answer := testcluster.Answer("autoscaling", "CompleteLifecycleAction")
	answer.Observe = o.observe
	proxy.Inject(answer)
	proxy.Inject(testcluster.Answer("autoscaling", "RecordLifecycleActionHeartbeat"))
	if err := g.PutLaunchHook(ctx, hook); err != nil {
		t.Fatal(err)
	}
	putKeys(t, ctx, g, "before", 50)
	stop := g.Follow(ctx)
	defer stop()

	// A replacement, as a rolling update makes: CONTINUE once a voter.
	victim := followerOf(t, st).Name
	before := map[string]bool{}
	for _, id := range inService(t, ctx, g) {
		before[id] = true
	}
	if err := g.TerminateInASG(ctx, victim, false); err != nil {
		t.Fatal(err)
	}
	replaced := time.Now()
	repl := waitNewInService(t, g, before, 30*time.Second)
	got := waitLaunchCompleted(t, o, repl, hook, convergeTimeout)
	if got.result != "CONTINUE" || !got.voter {
		t.Fatalf("%s completed the launch hook with %s while the members were %s; want CONTINUE as a voter", repl, got.result, got.members)
	}
	t.Logf("replacement %s completed the launch hook with CONTINUE as a voter %s after %s was terminated",
		repl, time.Since(replaced).Round(time.Millisecond), victim)
	after := waitAWSConverged(t, ctx, g, 3)
	if after.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s", st.ClusterID, after.ClusterID)
	}

	// A bad release: the next instance's etcd exits at once. It never
	// becomes a voter, and abandons the hook after --launch-timeout.
	g.SetRelease("--etcd-binary", bad, "--launch-timeout", launchTimeout.String())
	before = map[string]bool{}
	for _, id := range inService(t, ctx, g) {
		before[id] = true
	}
	if err := g.SetDesired(ctx, 4); err != nil {
		t.Fatal(err)
	}
	launched := time.Now()
	doomed := waitNewInService(t, g, before, 30*time.Second)
	got = waitLaunchCompleted(t, o, doomed, hook, launchTimeout+30*time.Second)
	took := time.Since(launched)
	if got.result != "ABANDON" || got.voter {
		t.Fatalf("%s of the bad release completed the launch hook with %s (members %s); want ABANDON, not a voter", doomed, got.result, got.members)
	}
	if took < launchTimeout {
		t.Errorf("%s abandoned after %s, before --launch-timeout %s", doomed, took, launchTimeout)
	}
	log := g.LogTail(doomed, 400)
	for _, want := range []string{"completing the launch hook with ABANDON", "--launch-timeout " + launchTimeout.String(), hook} {
		if !strings.Contains(log, want) {
			t.Errorf("%s's log does not say %q:\n%s", doomed, want, log)
		}
	}
	code, metrics, err := g.Get(ctx, doomed, "/metrics")
	if err != nil || code != 200 || !strings.Contains(string(metrics), `etcd_appliance_launch_hook_result{result="ABANDON"} 1`) {
		t.Errorf("%s's /metrics (%d, %v) lacks etcd_appliance_launch_hook_result{result=\"ABANDON\"} 1", doomed, code, err)
	}
	t.Logf("%s of the bad release abandoned the launch hook %s after its launch", doomed, took.Round(time.Millisecond))

	// The group terminates an abandoned instance; the cluster never
	// counted it and keeps its members and keys.
	if err := g.TerminateInASG(ctx, doomed, true); err != nil {
		t.Fatal(err)
	}
	final := waitAWSConverged(t, ctx, g, 3)
	if final.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s", st.ClusterID, final.ClusterID)
	}
	checkAWSKeysOnEach(t, ctx, g, "before", 50)
	for _, id := range inService(t, ctx, g) {
		if comps := o.of(id, hook); len(comps) > 0 && comps[0].result != "CONTINUE" {
			t.Errorf("member %s completed the launch hook with %s", id, comps[0].result)
		}
	}
}

// waitNewInService waits until the group has an instance in service, with
// a running appliance, that is not among before, and returns it.
func waitNewInService(t *testing.T, g *fleet.AWSGroup, before map[string]bool, within time.Duration) string {
	t.Helper()
	ctx := testContext(t, within)
	var fresh string
	err := fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		running, err := g.Running(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, inst := range running {
			if !before[inst.ID] {
				fresh = inst.ID
				return true, ""
			}
		}
		return false, "no new instance runs"
	})
	if err != nil {
		t.Fatal(err)
	}
	return fresh
}
