package snapshot

import (
	"fmt"
	"slices"
	"time"
)

// Retention says which snapshots thinning keeps: all of the most recent
// ones, then one an hour, then one a day. A zero window keeps nothing of
// its kind.
type Retention struct {
	// Recent keeps every snapshot younger than it (--retain-recent).
	Recent time.Duration
	// Hourly keeps the newest snapshot of each hour (UTC) younger than
	// it (--retain-hourly).
	Hourly time.Duration
	// Daily keeps the newest snapshot of each day (UTC) younger than it
	// (--retain-daily).
	Daily time.Duration
}

// DefaultRetention keeps an hour of snapshots, then one an hour for a day,
// then one a day for a week: about 12 + 23 + 6 snapshots at the default
// backup interval of 5 minutes.
func DefaultRetention() Retention {
	return Retention{Recent: time.Hour, Hourly: 24 * time.Hour, Daily: 7 * 24 * time.Hour}
}

// Validate checks the windows, naming the flags that set them.
func (r Retention) Validate() error {
	for _, w := range []struct {
		flag string
		d    time.Duration
	}{{"--retain-recent", r.Recent}, {"--retain-hourly", r.Hourly}, {"--retain-daily", r.Daily}} {
		if w.d < 0 {
			return fmt.Errorf("%s %s: must not be negative (0 keeps none of these)", w.flag, w.d)
		}
	}
	// A coarser window inside a finer one keeps nothing more; it is a
	// slip of the unit (--retain-daily 7h for 7 days, 168h).
	if r.Hourly > 0 && r.Hourly < r.Recent {
		return fmt.Errorf("--retain-hourly %s is shorter than --retain-recent %s, so it keeps nothing more: make it longer, or 0", r.Hourly, r.Recent)
	}
	if r.Daily > 0 && r.Daily < max(r.Recent, r.Hourly) {
		return fmt.Errorf("--retain-daily %s is shorter than --retain-recent %s or --retain-hourly %s, so it keeps nothing more: make it longer (e.g. 168h for 7 days), or 0",
			r.Daily, r.Recent, r.Hourly)
	}
	return nil
}

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
