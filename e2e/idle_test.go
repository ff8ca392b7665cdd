package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

const (
	// idleWindow is how long the idle request rate is counted over.
	idleWindow = 20 * time.Second
	// idleRequestLimit is the most requests a second an etcd member of an
	// idle group may receive: SPEC §7's 60 a minute per appliance, with a
	// tenth for the window's edges.
	idleRequestLimit = 1.1
	// idleDeadline bounds how long a converged group takes to settle.
	idleDeadline = 2 * time.Minute
)

// TestIdleRequestRate is issue 13, item 15: an idle group of 3 (healthy,
// leader stable, no writes, membership unchanged) asks each etcd member at
// most 60 requests a minute: every gRPC request and stream message (a lease
// keep-alive) as the member itself counts them. Nothing but the appliances
// talks to the members, and nothing here asks the appliances for /v1/status
// (whose member probes are requests to etcd) once the group converged. The
// counters are read every second; the group must settle, within
// idleDeadline, into an idleWindow whose rate is at most idleRequestLimit on
// every member.
func TestIdleRequestRate(t *testing.T) {
	g := newGroup(t)
	ctx := testContext(t, 4*time.Minute)
	insts, _ := startConverged(t, ctx, g, 3)

	type reading struct {
		at   time.Time
		load []fleet.EtcdLoad
	}
	var readings []reading
	var last string
	err := fleet.Poll(testContext(t, idleDeadline), time.Second, func() (bool, string) {
		r := reading{at: time.Now()}
		for _, inst := range insts {
			load, err := inst.EtcdLoad(ctx)
			if err != nil {
				return false, err.Error()
			}
			r.load = append(r.load, load)
		}
		readings = append(readings, r)
		// The oldest reading at least idleWindow before this one.
		i := len(readings) - 1
		for i > 0 && r.at.Sub(readings[i].at) < idleWindow {
			i--
		}
		from := readings[i]
		window := r.at.Sub(from.at)
		if window < idleWindow {
			return false, fmt.Sprintf("counted over %s only", window.Round(time.Second))
		}
		var b strings.Builder
		settled := true
		for k, inst := range insts {
			d := r.load[k].Since(from.load[k])
			rate := d.Total() / window.Seconds()
			if rate > idleRequestLimit {
				settled = false
			}
			fmt.Fprintf(&b, "\n  %s: %.2f requests/s (%s)", inst.ID, rate, perSecond(d, window))
		}
		last = fmt.Sprintf("over the last %s:%s", window.Round(time.Second), b.String())
		return settled, last
	})
	if err != nil {
		t.Fatalf("the idle group never kept every member at ≤ %.1f requests/s over %s within %s: %v",
			idleRequestLimit, idleWindow, idleDeadline, err)
	}
	t.Logf("idle, %s", last)
}

// perSecond lists a load's requests a second by method, most first.
func perSecond(l fleet.EtcdLoad, window time.Duration) string {
	methods := slices.Collect(maps.Keys(l.Requests))
	slices.SortFunc(methods, func(a, b string) int {
		if l.Requests[a] != l.Requests[b] {
			if l.Requests[a] > l.Requests[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, m := range methods {
		parts = append(parts, fmt.Sprintf("%s %.2f", m[strings.LastIndex(m, "/")+1:], l.Requests[m]/window.Seconds()))
	}
	return strings.Join(parts, ", ")
}
