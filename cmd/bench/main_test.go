package main

import (
	"slices"
	"testing"
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
