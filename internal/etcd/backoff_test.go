package etcd

import (
	"testing"
	"time"
)

func TestBackoffNext(t *testing.T) {
	b := DefaultBackoff()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		prev time.Duration
		ran  time.Duration
		want time.Duration
	}{
		{"first crash", 0, time.Second, 200 * time.Millisecond},
		{"crash at once", 0, 0, 200 * time.Millisecond},
		{"second crash doubles", 200 * time.Millisecond, time.Second, 400 * time.Millisecond},
		{"keeps doubling", 6400 * time.Millisecond, time.Second, 12800 * time.Millisecond},
		{"capped at max", 25600 * time.Millisecond, time.Second, 30 * time.Second},
		{"stays at max", 30 * time.Second, time.Second, 30 * time.Second},
		{"huge prev does not overflow", time.Duration(1 << 62), time.Second, 30 * time.Second},
		{"prev below min", 50 * time.Millisecond, time.Second, 200 * time.Millisecond},
		{"just short of stable", 30 * time.Second, time.Minute - time.Nanosecond, 30 * time.Second},
		{"stable minute resets", 30 * time.Second, time.Minute, 200 * time.Millisecond},
		{"stable hour resets", 3200 * time.Millisecond, time.Hour, 200 * time.Millisecond},
		{"clock stepped back counts as a crash", 400 * time.Millisecond, -time.Hour, 800 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := b.Next(tt.prev, t0, t0.Add(tt.ran)); got != tt.want {
				t.Errorf("Next(%v, ran %v) = %v, want %v", tt.prev, tt.ran, got, tt.want)
			}
		})
	}
}

// A crash loop walks from Min to Max and never past it.
func TestBackoffSequence(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 10 * time.Second, ResetAfter: time.Minute}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	want := []time.Duration{1, 2, 4, 8, 10, 10}
	var d time.Duration
	for i, w := range want {
		d = b.Next(d, t0, t0.Add(time.Second))
		if d != w*time.Second {
			t.Fatalf("step %d: delay %v, want %v", i, d, w*time.Second)
		}
	}
}
