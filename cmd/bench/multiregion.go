package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// The multi-region figures of issue 14: how often a cluster across regions
// elects a leader when nothing fails, with the timing the appliance derives
// from the round trips between its members next to etcd's defaults, on the
// faithful network (regions in network namespaces, the round trip added by
// the harness's public proxy).

// multiRegionWires are the wires between regions measured: us-east-1 ↔
// eu-west-1 is about 80 ms, US ↔ Asia up to 200 ms and more; the
// harness's proxy delays evenly, so one wire also loses 1% of its chunks
// (each then waits a TCP retransmission timeout), as a congested or
// flapping path between regions does.
var multiRegionWires = []struct {
	rtt  time.Duration
	loss float64
}{
	{80 * time.Millisecond, 0},
	{200 * time.Millisecond, 0},
	{200 * time.Millisecond, 0.01},
}

// multiRegionOnly, when set, measures only the wires whose label (see
// wireLabel) it names: to measure one again.
var multiRegionOnly string

func wireLabel(rtt time.Duration, loss float64) string {
	if loss == 0 {
		return rtt.String() + " between them"
	}
	return fmt.Sprintf("%s and %g%% loss between them", rtt, loss*100)
}

// etcdDefaultTiming are the flags that pin etcd's default raft timing.
var etcdDefaultTiming = []string{"--heartbeat-interval", "100ms", "--election-timeout", "1s"}

// multiRegionWrites is the pace of the light writer that runs during the
// window (a write every multiRegionWrites).
const multiRegionWrites = 100 * time.Millisecond

// measureMultiRegion runs, on each wire, a group of 2+1 members in two
// regions with the default flags (derived timing) and one with etcd's
// default timing side by side for window, each with its leader moved to the
// region of one, and counts the elections (raft term increases) of each.
func measureMultiRegion(ctx context.Context, binary string, window time.Duration) ([]figure, error) {
	var figs []figure
	for _, wire := range multiRegionWires {
		rtt, label := wire.rtt, wireLabel(wire.rtt, wire.loss)
		if multiRegionOnly != "" && !strings.Contains(label, multiRegionOnly) {
			continue
		}
		settings := []struct {
			name string
			args []string
		}{
			{"derived timing (default flags)", nil},
			{"etcd's default timing (--heartbeat-interval 100ms --election-timeout 1s)", etcdDefaultTiming},
		}
		results := make([]multiRegionRun, len(settings))
		errs := make([]error, len(settings))
		var wg sync.WaitGroup
		for k, s := range settings {
			wg.Go(func() { results[k], errs[k] = measureElections(ctx, binary, rtt, wire.loss, s.args, window) })
		}
		wg.Wait()
		for k, s := range settings {
			if errs[k] != nil {
				return nil, fmt.Errorf("%s, %s: %w", s.name, label, errs[k])
			}
			r := results[k]
			perHour := float64(r.elections) * float64(time.Hour) / float64(r.window)
			figs = append(figs, figure{
				name:    fmt.Sprintf("3 members in 2 regions, %s, %s → leader elections per hour, no member failing", label, s.name),
				target:  "0 / h",
				unit:    "/ h",
				samples: []float64{perHour},
				note: fmt.Sprintf("%d elections (raft term %d → %d) over %s; timing %s; %d writes, %d failed, write p50 %s, p99 %s, leader in %s",
					r.elections, r.termBefore, r.termAfter, r.window.Round(time.Second), r.timing,
					r.writes, r.failed, r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.leaderRegion),
			})
			log.Printf("multi-region %s, %s: %d elections in %s", label, s.name, r.elections, r.window.Round(time.Second))
		}
	}
	return figs, nil
}

// multiRegionRun is what one group showed over the window.
type multiRegionRun struct {
	timing                string
	termBefore, termAfter uint64
	elections             uint64
	window                time.Duration
	writes, failed        int
	p50, p99              time.Duration
	// leaderRegion is where the leader was at the end.
	leaderRegion string
}

// measureElections starts a faithful group of 2+1 at rtt and loss with args, waits
// for 3 healthy voters, and over window writes lightly and counts the
// elections.
func measureElections(ctx context.Context, binary string, rtt time.Duration, loss float64, args []string, window time.Duration) (multiRegionRun, error) {
	var r multiRegionRun
	dir, err := os.MkdirTemp("", "etcd-appliance-bench-multi-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	gctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	g, err := fleet.NewAWSMulti(gctx, fleet.AWSMultiOptions{
		Binary: binary, Dir: dir, Args: append(slices.Clone(applianceArgs), args...),
		Sizes: []int{2, 1}, Faithful: true, InterRegionRTT: rtt, InterRegionLoss: loss,
	})
	cancel()
	if err != nil {
		return r, err
	}
	defer g.Close()
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	_, err = g.WaitConverged(wctx, 3)
	cancel()
	if err != nil {
		return r, err
	}
	r.timing = derivedTiming(g)
	// The harder place for the leader: alone in its region, every commit
	// and every heartbeat crosses the wire, and its quorum is the other
	// region's (with the leader among the two, its quorum is in-region and
	// pre-vote keeps a lagging follower from disturbing it).
	if err := moveLeaderTo(ctx, g, g.Regions()[1]); err != nil {
		return r, err
	}
	c, err := g.Client(ctx)
	if err != nil {
		return r, err
	}
	defer c.Close()
	if r.termBefore, _, err = highestTerm(ctx, g); err != nil {
		return r, err
	}
	start := time.Now()
	var lat []time.Duration
	tick := time.NewTicker(multiRegionWrites)
	defer tick.Stop()
	for i := 0; time.Since(start) < window; i++ {
		<-tick.C
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		t0 := time.Now()
		_, err := c.Put(pctx, fmt.Sprintf("/bench/multi/%d", i%100), "x")
		pcancel()
		r.writes++
		if err != nil {
			r.failed++
			continue
		}
		lat = append(lat, time.Since(t0))
	}
	r.window = time.Since(start)
	if r.termAfter, r.leaderRegion, err = highestTerm(ctx, g); err != nil {
		return r, err
	}
	r.elections = r.termAfter - r.termBefore
	slices.Sort(lat)
	if len(lat) > 0 {
		r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return r, nil
}

// moveLeaderTo moves the leadership to a member in region, unless it is
// there already.
func moveLeaderTo(ctx context.Context, g *fleet.AWSMulti, region string) error {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := g.StatusOf(sctx, g.Running()[0].ID)
	if err != nil {
		return err
	}
	var leader, target *cluster.MemberStatus
	for i, m := range st.Members {
		if m.Leader {
			leader = &st.Members[i]
		}
		if g.RegionOf(m.Name) == region && target == nil {
			target = &st.Members[i]
		}
	}
	if leader == nil || target == nil {
		return fmt.Errorf("no leader, or no member in %s: %s", region, fleet.Summarize(st))
	}
	if g.RegionOf(leader.Name) == region {
		return nil
	}
	c, err := g.Client(ctx, leader.Name)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.MoveLeader(sctx, uint64(target.ID)); err != nil {
		return fmt.Errorf("moving the leadership to %s in %s: %w", target.Name, region, err)
	}
	return nil
}

// highestTerm is the highest raft term any running member reports, and
// the region of the leader.
func highestTerm(ctx context.Context, g *fleet.AWSMulti) (term uint64, leaderRegion string, err error) {
	for _, inst := range g.Running() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := g.StatusOf(sctx, inst.ID)
		cancel()
		if err != nil {
			return 0, "", err
		}
		for _, m := range st.Members {
			term = max(term, m.RaftTerm)
			if m.Leader {
				leaderRegion = fmt.Sprintf("%s (%d of 3 members there)", g.RegionOf(m.Name), regionSize(g, g.RegionOf(m.Name)))
			}
		}
	}
	return term, leaderRegion, nil
}

// regionSize is how many running instances region holds.
func regionSize(g *fleet.AWSMulti, region string) int {
	n := 0
	for _, inst := range g.Running() {
		if g.RegionOf(inst.ID) == region {
			n++
		}
	}
	return n
}

// derivedTiming is the timing the first instance's log says it runs with:
// the derived one, else what the flags gave.
func derivedTiming(g *fleet.AWSMulti) string {
	for _, inst := range g.Instances() {
		b, err := os.ReadFile(inst.LogPath)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if i := strings.Index(line, `"timing":"`); i >= 0 && strings.Contains(line, "raft timing") {
				rest := line[i+len(`"timing":"`):]
				if j := strings.Index(rest, `"`); j >= 0 {
					return rest[:j]
				}
			}
		}
	}
	return "as the flags set it"
}
