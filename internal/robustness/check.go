package robustness

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Errors Check returns, wrapped with what it found; callers branch on them.
var (
	ErrNotLinearizable = errors.New("history is not linearizable")
	ErrUndecided       = errors.New("linearizability check timed out")
	ErrViolations      = errors.New("history breaks etcd's guarantees")
)

// CheckOptions tunes Check.
type CheckOptions struct {
	// Timeout bounds porcupine's search; 0 means DefaultCheckTimeout. A
	// search that runs out is reported as undecided, never as passed.
	Timeout time.Duration
	// ArtifactDir receives history.json and linearizability.html when the
	// check fails. Empty: nothing is written.
	ArtifactDir string
}

// DefaultCheckTimeout bounds porcupine's search when CheckOptions.Timeout is 0.
const DefaultCheckTimeout = 30 * time.Second

// Report sums up a checked history, for test logs and docs/ROBUSTNESS.md.
type Report struct {
	Operations int `json:"operations"`
	OK         int `json:"ok"`
	Failed     int `json:"failed"`
	Unknown    int `json:"unknown"`
	// UnknownDropped and UnknownSeen are unknown puts the watchers settled
	// before the linearizability check: never applied, or applied and seen.
	UnknownDropped int `json:"unknown_dropped"`
	UnknownSeen    int `json:"unknown_seen"`
	AckedWrites    int `json:"acked_writes"`
	WatchEvents    int `json:"watch_events"`
	// Linearizable is porcupine's verdict: Ok, Illegal, or Unknown when the
	// search timed out.
	Linearizable porcupine.CheckResult `json:"linearizable"`
	Violations   []string              `json:"violations,omitempty"`
	Artifacts    []string              `json:"artifacts,omitempty"`
	CheckTime    time.Duration         `json:"check_time"`
}

func (r Report) String() string {
	s := fmt.Sprintf("%d operations (%d ok, %d failed, %d unknown: %d never applied, %d seen applied), %d acked writes, %d watch events, linearizable: %s in %v",
		r.Operations, r.OK, r.Failed, r.Unknown, r.UnknownDropped, r.UnknownSeen, r.AckedWrites, r.WatchEvents, r.Linearizable, r.CheckTime.Round(time.Millisecond))
	if len(r.Violations) > 0 {
		s += fmt.Sprintf("; %d violations: %s", len(r.Violations), strings.Join(r.Violations, "; "))
	}
	return s
}

// Check checks h: linearizability of its operations, that no two
// acknowledged writes share a revision, and the watch guarantees
// (CheckWatches). On any failure it writes the artifacts and returns an
// error naming them, wrapping ErrNotLinearizable, ErrUndecided or
// ErrViolations.
func Check(h *History, opts CheckOptions) (Report, error) {
	if opts.Timeout == 0 {
		opts.Timeout = DefaultCheckTimeout
	}
	began := time.Now()
	r := Report{Operations: len(h.Operations), AckedWrites: len(h.AckedWrites())}
	for _, op := range h.Operations {
		switch op.Resp.Outcome {
		case OK:
			r.OK++
		case Failed:
			r.Failed++
		default:
			r.Unknown++
		}
	}
	for _, w := range h.Watches {
		for _, resp := range w.Responses {
			r.WatchEvents += len(resp.Events)
		}
	}

	ops, settled := porcupineOperations(h)
	r.UnknownDropped, r.UnknownSeen = settled.dropped, settled.seen
	model := kvModel()
	result, info := porcupine.CheckOperationsVerbose(model, ops, opts.Timeout)
	r.Linearizable = result
	r.Violations = append(uniqueRevisions(h), CheckWatches(h)...)
	r.CheckTime = time.Since(began)

	var errs []error
	switch result {
	case porcupine.Ok:
	case porcupine.Illegal:
		errs = append(errs, ErrNotLinearizable)
	default:
		errs = append(errs, fmt.Errorf("%w after %v", ErrUndecided, opts.Timeout))
	}
	if len(r.Violations) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s", ErrViolations, strings.Join(r.Violations, "; ")))
	}
	if len(errs) == 0 {
		return r, nil
	}
	if opts.ArtifactDir == "" {
		errs = append(errs, errors.New("no artifact directory to keep the history in"))
		return r, errors.Join(errs...)
	}
	if err := os.MkdirAll(opts.ArtifactDir, 0o755); err != nil {
		return r, errors.Join(append(errs, fmt.Errorf("keeping the history: %w", err))...)
	}
	historyPath := filepath.Join(opts.ArtifactDir, "history.json")
	if err := h.Save(historyPath); err != nil {
		errs = append(errs, err)
	} else {
		r.Artifacts = append(r.Artifacts, historyPath)
	}
	if result != porcupine.Ok {
		htmlPath := filepath.Join(opts.ArtifactDir, "linearizability.html")
		if err := porcupine.VisualizePath(model, info, htmlPath); err != nil {
			errs = append(errs, fmt.Errorf("writing the visualization: %w", err))
		} else {
			r.Artifacts = append(r.Artifacts, htmlPath)
		}
	}
	if len(r.Artifacts) > 0 {
		errs = append(errs, fmt.Errorf("artifacts: %s", strings.Join(r.Artifacts, ", ")))
	}
	return r, errors.Join(errs...)
}

// CheckFile checks a history saved by Check or History.Save again.
func CheckFile(path string, opts CheckOptions) (Report, error) {
	h, err := LoadHistory(path)
	if err != nil {
		return Report{}, err
	}
	return Check(h, opts)
}

// settlement counts the unknown puts porcupineOperations settled.
type settlement struct{ dropped, seen int }

// porcupineOperations is the history as porcupine checks it: reads and
// writes etcd answered, and unknown writes with an infinite return time
// unless a watcher that saw the whole run settles them: a put whose unique
// value it never delivered did not happen before the last answered request
// (so it is left out, as if placed after everything), and one it delivered
// happened before the event arrived.
func porcupineOperations(h *History) ([]porcupine.Operation, settlement) {
	seenAt, complete := putsSeen(h)
	var ops []porcupine.Operation
	var st settlement
	for _, op := range h.Operations {
		switch {
		case op.Resp.Outcome == Failed:
			continue // refused: it changed nothing
		case op.Resp.Outcome != OK && !op.isWrite():
			continue // a read without an answer saw nothing
		}
		ret := op.Return
		if op.Resp.Outcome == Unknown {
			ret = math.MaxInt64
			if complete && (op.Req.Kind == OpPut || op.Req.Kind == OpCAS) {
				t, ok := seenAt[keyValue{op.Req.Key, op.Req.Value}]
				if !ok {
					st.dropped++
					continue
				}
				st.seen++
				ret = max(t, op.Call)
			}
		}
		ops = append(ops, porcupine.Operation{
			ClientId: op.Client,
			Input:    op.Req,
			Call:     op.Call,
			Output:   op.Resp,
			Return:   ret,
		})
	}
	return ops, st
}

type keyValue struct{ key, value string }

// putsSeen is when each put value first reached a watcher, and whether some
// watcher covered every revision from the start of the run to the last one
// any answer showed, without a compaction gap.
func putsSeen(h *History) (map[keyValue]int64, bool) {
	var last int64
	for _, op := range h.Operations {
		if op.Resp.Outcome == OK {
			last = max(last, op.Resp.Revision)
		}
	}
	seen := map[keyValue]int64{}
	complete := false
	for _, w := range h.Watches {
		cov := coverageOf(w)
		if cov.covers(h.StartRev+1, last) {
			complete = true
		}
		for _, resp := range w.Responses {
			for _, ev := range resp.Events {
				if ev.Type != "put" {
					continue
				}
				kv := keyValue{ev.Key, ev.Value}
				if t, ok := seen[kv]; !ok || resp.Time < t {
					seen[kv] = resp.Time
				}
			}
		}
	}
	return seen, complete
}

// uniqueRevisions finds acknowledged writes sharing a revision: every write
// Record issues is a transaction of its own, so each has its own revision.
func uniqueRevisions(h *History) []string {
	var out []string
	by := map[int64]Write{}
	for _, w := range h.AckedWrites() {
		if prev, ok := by[w.Revision]; ok {
			out = append(out, fmt.Sprintf("acknowledged writes %s %s and %s %s share revision %d", prev.Kind, prev.Key, w.Kind, w.Key, w.Revision))
			continue
		}
		by[w.Revision] = w
	}
	return out
}
