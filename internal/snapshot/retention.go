package snapshot

import (
	"slices"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/snapshot/spec"
)

// Retention says which snapshots Thin keeps (see spec.Retention, where
// internal/config builds and checks it from the --retain-* flags).
type Retention = spec.Retention

// maxClockSkew is how far in the future the newest snapshot may be before
// Thin distrusts the clock.
const maxClockSkew = time.Minute

// Thin splits snapshots, as of now, into those that retention r keeps and
// those it drops, each newest first. Whatever r says, it keeps the newest
// good snapshot, the newest Verified one, or the newest one when none is
// verified: the snapshot recovery would restore.
//
// It drops nothing when the newest snapshot is more than a minute in the
// future: then this clock and the clock that stamped the snapshot
// disagree, every age computed from now is wrong, and deleting is the one
// mistake that cannot be undone. Thinning waits until the clocks agree.
func Thin(snaps []Meta, now time.Time, r Retention) (keep, drop []Meta) {
	sorted := slices.Clone(snaps)
	sortNewestFirst(sorted)
	if len(sorted) == 0 || sorted[0].Time.After(now.Add(maxClockSkew)) {
		return sorted, nil
	}
	good := slices.IndexFunc(sorted, func(m Meta) bool { return m.Verified })
	if good < 0 {
		good = 0
	}
	// Newest first, the first snapshot met in an hour or a day is that
	// hour's or day's newest.
	hours := map[time.Time]bool{}
	days := map[time.Time]bool{}
	for i, m := range sorted {
		age := now.Sub(m.Time)
		t := m.Time.UTC()
		hour := t.Truncate(time.Hour)
		day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		newestOfHour := age < r.Hourly && !hours[hour]
		newestOfDay := age < r.Daily && !days[day]
		if age < r.Hourly {
			hours[hour] = true
		}
		if age < r.Daily {
			days[day] = true
		}
		if i == good || age < r.Recent || newestOfHour || newestOfDay {
			keep = append(keep, m)
		} else {
			drop = append(drop, m)
		}
	}
	return keep, drop
}
