package etcd

import "time"

// Backoff is the restart delay of SPEC §4.3: a child that keeps crashing is
// restarted ever more slowly, from Min up to Max, and one that ran for
// ResetAfter is taken to have been healthy, so its next crash restarts it
// after Min again.
type Backoff struct {
	Min, Max, ResetAfter time.Duration
}

// DefaultBackoff restarts after 200ms at first, at most every 30s, and
// forgets earlier crashes after a stable minute.
func DefaultBackoff() Backoff {
	return Backoff{Min: 200 * time.Millisecond, Max: 30 * time.Second, ResetAfter: time.Minute}
}

// Next is the delay before restarting a child that started at started and
// exited at exited, when prev was the delay before that start (0 for the
// first start). It reads no clock: the caller passes both times.
func (b Backoff) Next(prev time.Duration, started, exited time.Time) time.Duration {
	switch {
	case exited.Sub(started) >= b.ResetAfter:
		return b.Min
	case prev < b.Min:
		return b.Min
	case prev >= b.Max/2: // doubling would pass Max (or overflow)
		return max(b.Max, b.Min)
	default:
		return prev * 2
	}
}
