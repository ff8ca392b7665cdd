package snapshot

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/snapshot/spec"
)

// at is a time of the retention tests' clock, "2006-01-02 15:04" in UTC.
func at(t testing.TB, s string) time.Time {
	t.Helper()
	ts, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// snap is a snapshot taken at "2006-01-02 15:04"; a trailing " v" marks it
// verified.
func snap(t testing.TB, s string) Meta {
	t.Helper()
	stamp, verified := strings.CutSuffix(s, " v")
	ts := at(t, stamp)
	rev := ts.Unix()/60 - 29_000_000
	return Meta{Key: Key("c", ts, rev), Cluster: "c", Time: ts, Revision: rev, Verified: verified}
}

func stamps(snaps []Meta) []string {
	out := []string{}
	for _, m := range snaps {
		s := m.Time.UTC().Format("2006-01-02 15:04")
		if m.Verified {
			s += " v"
		}
		out = append(out, s)
	}
	return out
}

func TestThin(t *testing.T) {
	def := spec.DefaultRetention()
	for _, tt := range []struct {
		name  string
		now   string
		r     Retention
		snaps []string
		keep  []string // newest first; the rest is dropped
	}{
		{
			name: "nothing to thin",
			now:  "2026-05-10 12:00", r: def,
		},
		{
			name: "every snapshot of the last hour",
			now:  "2026-05-10 12:00", r: def,
			snaps: []string{"2026-05-10 11:59 v", "2026-05-10 11:30 v", "2026-05-10 11:01 v", "2026-05-10 11:00 v", "2026-05-10 10:59 v"},
			// 11:00 is exactly an hour old: out of the recent window, and
			// not the newest of its hour; 10:59 is the newest of hour 10.
			keep: []string{"2026-05-10 11:59 v", "2026-05-10 11:30 v", "2026-05-10 11:01 v", "2026-05-10 10:59 v"},
		},
		{
			name: "the newest of each hour for a day",
			now:  "2026-05-10 12:00", r: def,
			snaps: []string{"2026-05-10 10:50 v", "2026-05-10 10:40 v", "2026-05-10 09:55 v", "2026-05-10 09:05 v", "2026-05-09 12:30 v", "2026-05-09 12:10 v", "2026-05-09 11:50 v"},
			// 9 May 11:50 is older than a day and not the newest of
			// its day (12:30 is).
			keep: []string{"2026-05-10 10:50 v", "2026-05-10 09:55 v", "2026-05-09 12:30 v"},
		},
		{
			name: "the newest of each day for a week",
			now:  "2026-05-10 12:00", r: def,
			snaps: []string{
				"2026-05-10 11:30 v",
				"2026-05-08 23:55 v", "2026-05-08 06:00 v",
				"2026-05-04 08:00 v", "2026-05-04 07:00 v",
				"2026-05-03 12:01 v", // 7 days old less a minute
				"2026-05-03 11:59 v", // older than 7 days
				"2026-04-01 00:00 v",
			},
			keep: []string{"2026-05-10 11:30 v", "2026-05-08 23:55 v", "2026-05-04 08:00 v", "2026-05-03 12:01 v"},
		},
		{
			name: "the newest verified snapshot survives everything",
			now:  "2026-05-10 12:00", r: def,
			snaps: []string{"2026-05-10 11:55", "2026-05-10 11:50", "2026-05-01 10:00 v", "2026-04-30 10:00 v"},
			keep:  []string{"2026-05-10 11:55", "2026-05-10 11:50", "2026-05-01 10:00 v"},
		},
		{
			name: "without a verified snapshot the newest one survives",
			now:  "2026-05-10 12:00", r: Retention{},
			snaps: []string{"2026-05-01 10:00", "2026-05-02 10:00", "2026-04-30 10:00"},
			keep:  []string{"2026-05-02 10:00"},
		},
		{
			name: "zero windows keep only the newest good one",
			now:  "2026-05-10 12:00", r: Retention{},
			snaps: []string{"2026-05-10 11:59", "2026-05-10 11:58 v", "2026-05-10 11:57 v"},
			keep:  []string{"2026-05-10 11:58 v"},
		},
		{
			name: "a snapshot less than a minute in the future is recent",
			now:  "2026-05-10 12:00", r: def,
			snaps: []string{"2026-05-10 12:01 v", "2026-05-10 11:00 v", "2026-05-10 10:59 v", "2026-05-10 10:58 v"},
			keep:  []string{"2026-05-10 12:01 v", "2026-05-10 11:00 v", "2026-05-10 10:59 v"},
		},
		{
			name: "clock skew: a snapshot more than a minute in the future stops thinning",
			now:  "2026-05-10 12:00", r: def,
			snaps: []string{"2026-05-10 12:02 v", "2026-04-01 10:00 v", "2026-03-01 10:00 v"},
			keep:  []string{"2026-05-10 12:02 v", "2026-04-01 10:00 v", "2026-03-01 10:00 v"},
		},
		{
			name: "hours and days are UTC's, whatever the snapshots' zones",
			now:  "2026-05-10 12:00", r: Retention{Daily: 7 * 24 * time.Hour},
			snaps: []string{"2026-05-09 00:30 v", "2026-05-08 23:30 v", "2026-05-08 22:30 v"},
			keep:  []string{"2026-05-09 00:30 v", "2026-05-08 23:30 v"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var snaps []Meta
			for _, s := range tt.snaps {
				m := snap(t, s)
				// Any zone: the buckets are UTC's.
				m.Time = m.Time.In(time.FixedZone("X", -5*3600))
				snaps = append(snaps, m)
			}
			// Any order in, newest first out.
			slices.Reverse(snaps)
			input := slices.Clone(snaps)
			keep, drop := Thin(snaps, at(t, tt.now), tt.r)
			if got := stamps(keep); !slices.Equal(got, append([]string{}, tt.keep...)) {
				t.Errorf("keep %v\nwant %v", got, tt.keep)
			}
			if len(keep)+len(drop) != len(snaps) {
				t.Errorf("keep %d + drop %d != %d snapshots", len(keep), len(drop), len(snaps))
			}
			for _, m := range drop {
				if slices.ContainsFunc(keep, func(k Meta) bool { return k.Key == m.Key }) {
					t.Errorf("%s both kept and dropped", m.Key)
				}
			}
			if !slices.EqualFunc(input, snaps, func(a, b Meta) bool { return a.Key == b.Key }) {
				t.Errorf("Thin reordered its input")
			}
		})
	}
}

// TestThinAWeekOfSnapshots takes a snapshot every 5 minutes for 8 days and
// thins after each, as the leader does. Verification fails from the
// second-to-last day's noon on, so the newest good snapshot ages out of
// every window; it must survive all the same.
func TestThinAWeekOfSnapshots(t *testing.T) {
	start := at(t, "2026-01-01 00:00")
	end := start.Add(8 * 24 * time.Hour) // exclusive
	verifyUntil := at(t, "2026-01-07 12:00")
	r := spec.DefaultRetention()
	var stored []Meta
	for now := start; now.Before(end); now = now.Add(5 * time.Minute) {
		m := snap(t, now.Format("2006-01-02 15:04"))
		m.Verified = now.Before(verifyUntil)
		stored = append(stored, m)
		keep, drop := Thin(stored, now, r)
		good := newestGood(stored)
		if !slices.ContainsFunc(keep, func(k Meta) bool { return k.Key == good.Key }) {
			t.Fatalf("at %s the newest good snapshot %s was dropped", now, good.Key)
		}
		if len(keep)+len(drop) != len(stored) {
			t.Fatalf("at %s: %d kept + %d dropped != %d", now, len(keep), len(drop), len(stored))
		}
		stored = keep
	}
	// The last thinning ran at 2026-01-08 23:55.
	var want []string
	for m := 55; m >= 0; m -= 5 { // recent: 23:00 to 23:55
		want = append(want, fmt.Sprintf("2026-01-08 23:%02d", m))
	}
	for h := 22; h >= 0; h-- { // hourly: the newest of each hour of the last day
		want = append(want, fmt.Sprintf("2026-01-08 %02d:55", h))
	}
	want = append(want, "2026-01-07 23:55")   // daily, from here on
	want = append(want, "2026-01-07 11:55 v") // the newest good one
	for d := 6; d >= 2; d-- {
		want = append(want, fmt.Sprintf("2026-01-%02d 23:55 v", d))
	}
	if got := stamps(stored); !slices.Equal(got, want) {
		t.Errorf("after 8 days kept %d:\n%v\nwant %d:\n%v", len(got), got, len(want), want)
	}
	// 12 recent + 23 hourly + 6 daily + the newest good one.
	if len(stored) != 12+23+6+1 {
		t.Errorf("kept %d snapshots, want 42", len(stored))
	}
}

// newestGood is the snapshot recovery would restore: the newest verified
// one, else the newest.
func newestGood(snaps []Meta) Meta {
	sorted := slices.Clone(snaps)
	sortNewestFirst(sorted)
	for _, m := range sorted {
		if m.Verified {
			return m
		}
	}
	return sorted[0]
}
