package main

import (
	"slices"
	"testing"
	"time"
)

// A partial run replaces its own rows in place and keeps the others.
func TestMergeRowsKeepsTheOthers(t *testing.T) {
	doc := "# Benchmarks\n\nheader\n\n| figure (SPEC §7) | target | median | range | runs | note |\n|---|---|---|---|---|---|\n" +
		"| a | ≤ 1 s | **1.00 s** | 1.00 – 1.00 | 1 |  |\n" +
		"| b | — | **2.00 s** | 2.00 – 2.00 | 1 |  |\n\n## How to read these\n"
	rows := tableRows(doc)
	if len(rows) != 2 {
		t.Fatalf("rows %q, want 2", rows)
	}
	b := figure{name: "b", target: "—", unit: "s", samples: []float64{3}}
	c := figure{name: "c", target: "—", unit: "s", samples: []float64{4}}
	got := mergeRows(rows, []figure{b, c})
	want := []string{rows[0], b.row(), c.row()}
	if !slices.Equal(got, want) {
		t.Errorf("merged\n%q\nwant\n%q", got, want)
	}
}

// The nearest rank: p99 of 100 values is the 99th, of 2000 the 1980th.
func TestPercentile(t *testing.T) {
	seq := func(n int) []time.Duration {
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = time.Duration(i + 1)
		}
		return s
	}
	for _, c := range []struct {
		n    int
		p    float64
		want time.Duration
	}{
		{0, 99, 0},
		{1, 50, 1},
		{1, 99, 1},
		{2, 50, 1},
		{100, 50, 50},
		{100, 99, 99},
		{100, 100, 100},
		{2000, 99, 1980},
		{2000, 0, 1},
	} {
		if got := percentile(seq(c.n), c.p); got != c.want {
			t.Errorf("percentile of 1..%d, p%g = %d, want %d", c.n, c.p, got, c.want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		samples []float64
		want    float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(c.samples); got != c.want {
			t.Errorf("median(%v) = %g, want %g", c.samples, got, c.want)
		}
	}
}

// A partial run's sentence replaces the one of its last run, and keeps the
// others'.
func TestPartialHeader(t *testing.T) {
	day := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	h := "Written on 2026-12-01. The rows of `-figures multiregion` were measured again on 2026-12-02." +
		" The rows of `-figures idle` were measured again on 2026-12-03."
	want := "Written on 2026-12-01. The rows of `-figures idle` were measured again on 2026-12-03." +
		" The rows of `-figures multiregion` were measured again on 2026-12-06.\n"
	if got := partialHeader(h, "multiregion", day); got != want {
		t.Errorf("header\n%q\nwant\n%q", got, want)
	}
}
