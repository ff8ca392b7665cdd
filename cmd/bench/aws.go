package main

import (
	"context"
	"fmt"
	"log"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// benchZone is the hosted zone of the AWS figures.
const benchZone = "bench.example.org"

// steadyArgs are the production defaults but for the startup poll: the
// steady-state call rate is a figure of the default --reconcile-interval.
var steadyArgs = []string{"--startup-interval=200ms", "--log-format=json"}

// measureAWS measures the AWS figures against moto: the steady-state AWS
// calls of a converged group of 3 (counted at the fault proxy over window),
// and, runs times, a replacement through the Auto Scaling API.
func measureAWS(ctx context.Context, binary string, runs int, window time.Duration) ([]figure, error) {
	calls, r53Changes, err := measureSteadyCalls(ctx, binary, window)
	if err != nil {
		return nil, fmt.Errorf("steady-state AWS calls: %w", err)
	}
	replace, err := measureASGReplacement(ctx, binary, runs)
	if err != nil {
		return nil, fmt.Errorf("replacement through the ASG: %w", err)
	}
	return []figure{calls, r53Changes, replace}, nil
}

// newAWSGroup starts a group of 3 in moto with the harness's fault proxy
// between the appliances and moto, which counts their AWS calls.
func newAWSGroup(ctx context.Context, binary string, args []string) (*fleet.AWSGroup, *testcluster.FaultProxy, func(), error) {
	dir, err := os.MkdirTemp("", "etcd-appliance-bench-aws-")
	if err != nil {
		return nil, nil, nil, err
	}
	g, proxy, err := testcluster.NewAWSWithFaults(ctx, fleet.AWSOptions{
		Binary: binary, Dir: dir, Args: args, Size: 3, HostedZone: benchZone,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, nil, err
	}
	return g, proxy, func() { g.Close(); os.RemoveAll(dir) }, nil
}

// waitAWSConverged waits for 3 healthy voters and their records in Route53.
func waitAWSConverged(ctx context.Context, g *fleet.AWSGroup) error {
	st, err := g.WaitConverged(ctx, 3)
	if err != nil {
		return err
	}
	want := cluster.WantedRecords(g.DNSSpec(), st.Members)
	return fleet.Poll(ctx, 50*time.Millisecond, func() (bool, string) {
		have, err := g.Records(ctx)
		if err != nil {
			return false, err.Error()
		}
		return cluster.EqualRecords(want, have), fmt.Sprintf("Route53 holds %v, want %v", have, want)
	})
}

// measureSteadyCalls counts, at the fault proxy between the appliances and
// moto, every AWS request of a converged group of 3 over window, and
// extrapolates to an hour. Every attempt counts, as AWS bills and throttles
// attempts.
func measureSteadyCalls(ctx context.Context, binary string, window time.Duration) (figure, figure, error) {
	calls := figure{name: "steady-state AWS calls per cluster (group of 3 on moto, nothing changing)",
		target: "≤ 360 / h", unit: "/ h"}
	changes := figure{name: "steady-state Route53 ChangeResourceRecordSets", target: "0 / h", unit: "/ h"}
	g, proxy, done, err := newAWSGroup(ctx, binary, steadyArgs)
	if err != nil {
		return calls, changes, err
	}
	defer done()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = waitAWSConverged(wctx, g)
	cancel()
	if err != nil {
		return calls, changes, err
	}
	// Let the first housekeeping cycles after convergence (learner
	// promotion, the first DNS write and its read-back) pass.
	time.Sleep(settle)
	proxy.ResetCounts()
	time.Sleep(window)
	counts := proxy.Calls()
	perHour := func(n int) float64 { return float64(n) * float64(time.Hour) / float64(window) }
	total := 0
	var parts []string
	for _, action := range slices.Sorted(maps.Keys(counts)) {
		total += counts[action]
		parts = append(parts, fmt.Sprintf("%s %.0f", action, perHour(counts[action])))
	}
	calls.samples = []float64{perHour(total)}
	calls.note = fmt.Sprintf("counted over %s, default --reconcile-interval; per API /h: %s", window, strings.Join(parts, ", "))
	changes.samples = []float64{perHour(counts["ChangeResourceRecordSets"])}
	changes.note = fmt.Sprintf("counted over %s", window)
	log.Printf("steady-state AWS calls over %s: %v", window, counts)
	return calls, changes, nil
}

// measureASGReplacement terminates an instance through the Auto Scaling
// API runs times and times, from the start of the replacement's appliance
// process, until 3 healthy voters without the stale member are the
// in-service instances and Route53 lists them.
func measureASGReplacement(ctx context.Context, binary string, runs int) (figure, error) {
	replace := figure{name: "instance terminated through the ASG (moto) → new voter healthy, stale member gone, DNS updated",
		target: "≤ 5 s", unit: "s", note: "timed from the replacement's process start"}
	g, _, done, err := newAWSGroup(ctx, binary, applianceArgs)
	if err != nil {
		return replace, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := waitAWSConverged(ctx, g); err != nil {
		return replace, err
	}
	for i := range runs {
		time.Sleep(settle) // see measureGroupFigures
		running, err := g.Running(ctx)
		if err != nil {
			return replace, err
		}
		if err := g.TerminateInASG(ctx, running[0].ID, false); err != nil {
			return replace, err
		}
		var started []string
		err = fleet.Poll(ctx, 20*time.Millisecond, func() (bool, string) {
			s, _, err := g.Sync(ctx)
			if err != nil {
				return false, err.Error()
			}
			started = append(started, s...)
			return len(started) > 0, "no replacement started"
		})
		if err != nil {
			return replace, err
		}
		start, err := processStart(g.Instance(started[0]).PID())
		if err != nil {
			return replace, err
		}
		if err := waitReplaced(ctx, g); err != nil {
			return replace, fmt.Errorf("replacement run %d: %w", i, err)
		}
		replace.samples = append(replace.samples, time.Since(start).Seconds())
		log.Printf("replacement through the ASG: run %d done", i)
	}
	return replace, nil
}

// waitReplaced polls until the members are exactly the in-service
// instances, all started, healthy voters, and Route53 lists them: the
// figure of §7. Unlike WaitConverged it asks one instance, and does not
// wait until every instance's own view of the group caught up (each
// appliance lists the group on its own schedule).
func waitReplaced(ctx context.Context, g *fleet.AWSGroup) error {
	return fleet.Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		ids, err := g.InService(ctx)
		if err != nil {
			return false, err.Error()
		}
		st, err := g.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for _, m := range st.Members {
			if m.Role != cluster.RoleVoter || !m.Healthy {
				return false, fmt.Sprintf("member %s (%s) is a %s, healthy %t", m.ID, m.Name, m.Role, m.Healthy)
			}
			names = append(names, m.Name)
		}
		slices.Sort(names)
		if !slices.Equal(names, ids) {
			return false, fmt.Sprintf("members %v, in service %v", names, ids)
		}
		have, err := g.Records(ctx)
		if err != nil {
			return false, err.Error()
		}
		want := cluster.WantedRecords(g.DNSSpec(), st.Members)
		return cluster.EqualRecords(want, have), fmt.Sprintf("Route53 holds %v, want %v", have, want)
	})
}

// processStart is when a process started, from /proc (10 ms resolution).
func processStart(pid int) (time.Time, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return time.Time{}, err
	}
	uptime, err := os.ReadFile("/proc/uptime")
	now := time.Now()
	if err != nil {
		return time.Time{}, err
	}
	// The fields after the command name, which may hold spaces: field 22
	// of the line, starttime, is the 20th after it, in clock ticks (100/s
	// on Linux) since boot.
	_, rest, _ := strings.Cut(string(stat), ") ")
	fields := strings.Fields(rest)
	if len(fields) < 20 {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ticks, err := strconv.ParseFloat(fields[19], 64)
	if err != nil {
		return time.Time{}, err
	}
	up, err := strconv.ParseFloat(strings.Fields(string(uptime))[0], 64)
	if err != nil {
		return time.Time{}, err
	}
	return now.Add(-time.Duration((up - ticks/100) * float64(time.Second))), nil
}
