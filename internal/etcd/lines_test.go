package etcd

import (
	"slices"
	"strings"
	"testing"
)

func TestLineRing(t *testing.T) {
	tests := []struct {
		name   string
		n      int
		writes []string
		flush  bool
		want   []string
	}{
		{"empty", 3, nil, true, []string{}},
		{"whole lines", 3, []string{"a\nb\n"}, false, []string{"a", "b"}},
		{"line split over writes", 3, []string{"hel", "lo\nwor", "ld\n"}, false, []string{"hello", "world"}},
		{"partial line waits for its newline", 3, []string{"a\nb"}, false, []string{"a"}},
		{"flush keeps a last partial line", 3, []string{"a\nb"}, true, []string{"a", "b"}},
		{"keeps only the last n", 3, []string{"1\n2\n3\n4\n5\n"}, false, []string{"3", "4", "5"}},
		{"wraps more than once", 2, []string{"1\n2\n3\n", "4\n5\n6\n7\n"}, false, []string{"6", "7"}},
		{"empty lines count", 3, []string{"a\n\n"}, false, []string{"a", ""}},
		{"zero capacity keeps nothing", 0, []string{"a\n"}, true, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newLineRing(tt.n)
			for _, w := range tt.writes {
				if n, err := r.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if tt.flush {
				r.flush()
			}
			if got := r.Lines(); !slices.Equal(got, tt.want) {
				t.Errorf("Lines() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLineRingCapsLongLines(t *testing.T) {
	r := newLineRing(2)
	long := strings.Repeat("x", maxLineBytes+100)
	r.Write([]byte(long[:10]))
	r.Write([]byte(long[10:] + "\nnext\n"))
	got := r.Lines()
	if len(got) != 2 || len(got[0]) != maxLineBytes || got[1] != "next" {
		t.Errorf("got %d lines, first %d bytes, second %q; want the first cut to %d bytes, then \"next\"",
			len(got), len(got[0]), got[len(got)-1], maxLineBytes)
	}
}
