package spec

import (
	"fmt"
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
