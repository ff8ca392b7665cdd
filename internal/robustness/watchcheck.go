package robustness

import (
	"fmt"
)

// revRange is the revisions from First to Last, both included.
type revRange struct{ First, Last int64 }

// coverage is what a watcher can vouch for: the revisions whose events all
// reached it, and the ones compaction took from it.
type coverage struct {
	covered   []revRange
	compacted []revRange
}

// coverageOf reads a watch log: each (re)start from a revision covers up to
// the last event or progress notification that followed, since events
// arrive in revision order and a progress notification says all up to its
// revision were sent. A compaction cancels the watch and skips to the
// compact revision.
func coverageOf(w WatchLog) coverage {
	var c coverage
	var seg *revRange
	closeSeg := func() {
		if seg != nil && seg.Last >= seg.First {
			c.covered = append(c.covered, *seg)
		}
		seg = nil
	}
	for _, resp := range w.Responses {
		switch {
		case resp.Start != 0:
			closeSeg()
			seg = &revRange{First: resp.Start, Last: resp.Start - 1}
		case seg == nil:
		case resp.CompactRev != 0:
			if resp.CompactRev > seg.Last+1 {
				c.compacted = append(c.compacted, revRange{seg.Last + 1, resp.CompactRev - 1})
			}
			closeSeg()
		case resp.Progress:
			seg.Last = max(seg.Last, resp.Revision)
		default:
			for _, ev := range resp.Events {
				seg.Last = max(seg.Last, ev.ModRev)
			}
		}
	}
	closeSeg()
	return c
}

func (c coverage) contains(rev int64) bool {
	for _, r := range c.covered {
		if r.First <= rev && rev <= r.Last {
			return true
		}
	}
	return false
}

// covers reports whether every revision from first to last is covered.
func (c coverage) covers(first, last int64) bool {
	next := first
	for _, r := range c.covered {
		if r.First <= next && r.Last >= next {
			next = r.Last + 1
		}
	}
	return next > last
}

// CheckWatches holds every watcher of h to etcd's watch guarantees and
// returns what breaks them:
//   - revisions never go back, and no (revision, key) event comes twice;
//   - every acknowledged write whose revision the watcher covered arrives,
//     at that revision, with its value;
//   - every event is a write some client issued, at the revision etcd
//     acknowledged if it did.
func CheckWatches(h *History) []string {
	acked := h.AckedWrites()
	ackedAt := map[int64]Write{}
	for _, w := range acked {
		ackedAt[w.Revision] = w
	}
	// Values are unique in a run: a put event names the operation.
	issued := map[keyValue]Operation{}
	unknownDeletes := map[string]bool{}
	for _, op := range h.Operations {
		if !op.isWrite() || op.Resp.Outcome == Failed {
			continue
		}
		switch op.Req.Kind {
		case OpPut, OpCAS:
			issued[keyValue{op.Req.Key, op.Req.Value}] = op
		case OpDelete:
			if op.Resp.Outcome == Unknown {
				unknownDeletes[op.Req.Key] = true
			}
		}
	}

	var out []string
	for _, w := range h.Watches {
		bad := func(format string, a ...any) {
			out = append(out, fmt.Sprintf("watcher %d: ", w.Watcher)+fmt.Sprintf(format, a...))
		}
		type revKey struct {
			rev int64
			key string
		}
		delivered := map[revKey]WatchEvent{}
		var last int64
		for _, resp := range w.Responses {
			for _, ev := range resp.Events {
				rk := revKey{ev.ModRev, ev.Key}
				switch {
				case ev.ModRev < last:
					bad("event %s %s at revision %d after revision %d", ev.Type, ev.Key, ev.ModRev, last)
				case delivered[rk] != (WatchEvent{}):
					bad("event %s %s at revision %d delivered twice", ev.Type, ev.Key, ev.ModRev)
				}
				last = max(last, ev.ModRev)
				delivered[rk] = ev
				bad := func(format string, a ...any) {
					bad("event %s %s at revision %d: %s", ev.Type, ev.Key, ev.ModRev, fmt.Sprintf(format, a...))
				}
				switch ev.Type {
				case "put":
					op, ok := issued[keyValue{ev.Key, ev.Value}]
					switch {
					case !ok:
						bad("value %q was never written", ev.Value)
					case op.acked() && op.Resp.Revision != ev.ModRev:
						bad("value %q was acknowledged at revision %d", ev.Value, op.Resp.Revision)
					}
				case "delete":
					if a, ok := ackedAt[ev.ModRev]; !(ok && a.Kind == OpDelete && a.Key == ev.Key) && !unknownDeletes[ev.Key] {
						bad("no client deleted the key then")
					}
				default:
					bad("unknown event type")
				}
			}
		}

		cov := coverageOf(w)
		for _, a := range acked {
			if !cov.contains(a.Revision) {
				continue
			}
			ev, ok := delivered[revKey{a.Revision, a.Key}]
			switch {
			case !ok:
				bad("acknowledged %s %s at revision %d never arrived", a.Kind, a.Key, a.Revision)
			case string(a.Kind) != ev.Type || ev.Value != a.Value:
				bad("acknowledged %s %s=%q at revision %d arrived as %s %q", a.Kind, a.Key, a.Value, a.Revision, ev.Type, ev.Value)
			}
		}
	}
	return out
}
