package main

import (
	"context"
	"fmt"
	"log"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// The TLS figures of SPEC §7: what --tls auto costs a fresh group's
// bootstrap and a client's writes, each next to the same measured with TLS
// off in the same run.

// Each run writes tlsWarmup puts, then times tlsWrites more, one after the
// other, of a value of tlsValueSize bytes.
const (
	tlsWarmup    = 200
	tlsWrites    = 2000
	tlsValueSize = 64
	// tlsSettle is how long a just-converged group runs untouched before
	// its writes: the appliances look closely for a while after a change,
	// and their requests to etcd would land among the writes.
	tlsSettle = 2 * time.Second
)

// tlsRun is what one group, with TLS or without, showed.
type tlsRun struct {
	bootstrap time.Duration
	p50, p99  time.Duration
}

// measureTLS starts, runs times each, a fresh group of 3 with TLS and one
// without, alternating which goes first so that the machine's noise hits
// both alike; times each to 3 healthy voters, then times a client's
// sequential writes to it.
func measureTLS(ctx context.Context, binary string, runs int) ([]figure, error) {
	bootTLS := figure{name: "fresh group of 3 with --tls auto → 3 healthy voters", target: "≤ 1.1 × plaintext", unit: "s"}
	bootPlain := figure{name: "reference: fresh group of 3, plaintext → 3 healthy voters", target: "—", unit: "s"}
	p99TLS := figure{name: "group of 3 with --tls auto → client write latency p99", target: "≤ 1.1 × plaintext", unit: "ms"}
	p99Plain := figure{name: "reference: group of 3, plaintext → client write latency p99", target: "—", unit: "ms"}
	p50TLS := figure{name: "group of 3 with --tls auto → client write latency p50", target: "—", unit: "ms"}
	p50Plain := figure{name: "reference: group of 3, plaintext → client write latency p50", target: "—", unit: "ms"}
	for i := range runs {
		for _, on := range tlsOrder(i) {
			r, err := measureTLSRun(ctx, binary, on)
			if err != nil {
				return nil, fmt.Errorf("tls %v, run %d: %w", on, i, err)
			}
			boot, p50, p99 := &bootPlain, &p50Plain, &p99Plain
			if on {
				boot, p50, p99 = &bootTLS, &p50TLS, &p99TLS
			}
			boot.samples = append(boot.samples, r.bootstrap.Seconds())
			p50.samples = append(p50.samples, ms(r.p50))
			p99.samples = append(p99.samples, ms(r.p99))
			log.Printf("tls %v: run %d done: bootstrap %s, write p50 %s, p99 %s", on, i,
				r.bootstrap.Round(time.Millisecond), r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
		}
	}
	bootTLS.note = fmt.Sprintf("%s plaintext (ratio of the medians); includes the first appliance creating the cluster CA "+
		"and every appliance issuing its member certificate, which plaintext does without", ratio(bootTLS, bootPlain))
	p99TLS.note = fmt.Sprintf("%s plaintext (ratio of the medians); per run, %d sequential puts of %d B after %d of warm-up, "+
		"by one client with the 3 members' client URLs", ratio(p99TLS, p99Plain), tlsWrites, tlsValueSize, tlsWarmup)
	p50TLS.note = fmt.Sprintf("%s plaintext (ratio of the medians)", ratio(p50TLS, p50Plain))
	return []figure{bootTLS, bootPlain, p99TLS, p99Plain, p50TLS, p50Plain}, nil
}

// tlsOrder is the order of run i: TLS first in even runs, plaintext first
// in odd ones, so that neither always meets the machine as the other left it.
func tlsOrder(i int) []bool {
	if i%2 == 0 {
		return []bool{true, false}
	}
	return []bool{false, true}
}

// measureTLSRun times a fresh group of 3, with TLS or without, from the
// start of its processes to 3 healthy voters, and then the latency of a
// client's sequential writes to it.
func measureTLSRun(ctx context.Context, binary string, tls bool) (tlsRun, error) {
	var r tlsRun
	g, done, err := newGroupWith(fleet.Options{Binary: binary, Args: applianceArgs, TLS: tls})
	if err != nil {
		return r, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	start := time.Now()
	if _, err := g.LaunchN(ctx, 3); err != nil {
		return r, err
	}
	if _, err := g.WaitConverged(ctx, 3); err != nil {
		return r, err
	}
	r.bootstrap = time.Since(start)

	time.Sleep(tlsSettle)
	c, err := g.Client(ctx)
	if err != nil {
		return r, err
	}
	defer c.Close()
	value := strings.Repeat("x", tlsValueSize)
	lat := make([]time.Duration, 0, tlsWrites)
	for i := range tlsWarmup + tlsWrites {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		t0 := time.Now()
		_, err := c.Put(pctx, fmt.Sprintf("/bench/tls/%d", i%100), value)
		d := time.Since(t0)
		pcancel()
		if err != nil {
			return r, fmt.Errorf("put %d: %w", i, err)
		}
		if i >= tlsWarmup {
			lat = append(lat, d)
		}
	}
	slices.Sort(lat)
	r.p50, r.p99 = percentile(lat, 50), percentile(lat, 99)
	return r, nil
}

// percentile is the nearest-rank p-th percentile of sorted: the smallest
// value that at least p % of the values are at most; 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// ratio is the median of f over the median of ref, as "1.04 ×".
func ratio(f, ref figure) string {
	if m := median(ref.samples); m > 0 && len(f.samples) > 0 {
		return fmt.Sprintf("%.2f ×", median(f.samples)/m)
	}
	return "no ratio to"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
