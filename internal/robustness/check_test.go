package robustness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// artifactDir is where a failing check keeps its history: the test's
// artifact directory (kept with go test -artifacts), or a directory of its
// own under $ROBUSTNESS_ARTIFACTS.
func artifactDir(t *testing.T) string {
	if root := os.Getenv("ROBUSTNESS_ARTIFACTS"); root != "" {
		return filepath.Join(root, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	}
	return t.ArtifactDir()
}

func get(k string) Request            { return Request{Kind: OpGet, Key: k} }
func put(k, v string) Request         { return Request{Kind: OpPut, Key: k, Value: v} }
func cas(k, expect, v string) Request { return Request{Kind: OpCAS, Key: k, Expect: expect, Value: v} }
func del(k string) Request            { return Request{Kind: OpDelete, Key: k} }
func ok(rev int64) Response           { return Response{Outcome: OK, Revision: rev} }
func found(rev int64) Response        { return Response{Outcome: OK, Found: true, Revision: rev} }
func got(v string, mod, rev int64) Response {
	return Response{Outcome: OK, Found: true, Value: v, ModRev: mod, Revision: rev}
}
func unknown() Response { return Response{Outcome: Unknown, Err: "context deadline exceeded"} }

func op(client int, call, ret int64, req Request, resp Response) Operation {
	return Operation{Client: client, Call: call, Return: ret, Req: req, Resp: resp}
}

func history(ops ...Operation) *History {
	return &History{Prefix: "/t/", Keys: []string{"a", "b"}, StartRev: 1, Operations: ops}
}

func mustPass(t *testing.T, h *History) Report {
	t.Helper()
	r, err := Check(h, CheckOptions{Timeout: 10 * time.Second, ArtifactDir: artifactDir(t)})
	if err != nil {
		t.Fatalf("Check: %v\nreport: %v", err, r)
	}
	if r.Linearizable != porcupine.Ok {
		t.Fatalf("Linearizable = %s, want Ok", r.Linearizable)
	}
	return r
}

func mustBeIllegal(t *testing.T, h *History) Report {
	t.Helper()
	r, err := Check(h, CheckOptions{Timeout: 10 * time.Second, ArtifactDir: t.TempDir()})
	if !errors.Is(err, ErrNotLinearizable) || r.Linearizable != porcupine.Illegal {
		t.Fatalf("Check = %v, %v; want Illegal and ErrNotLinearizable", r, err)
	}
	return r
}

// Puts, reads (one racing a put), a delete and a read of the absent key, on
// two keys.
func TestLinearizableHistory(t *testing.T) {
	h := history(
		op(0, 0, 10, put("a", "x"), ok(2)),
		op(1, 5, 15, put("b", "y"), ok(3)),
		op(0, 20, 30, get("a"), got("x", 2, 3)),
		op(1, 25, 40, put("a", "z"), ok(4)),
		op(2, 30, 35, get("a"), got("x", 2, 3)), // before the racing put
		op(0, 36, 45, get("a"), got("z", 4, 4)), // after it
		op(2, 50, 60, del("b"), found(5)),
		op(1, 55, 58, get("b"), got("y", 3, 4)), // before the delete
		op(0, 70, 80, get("b"), ok(5)),
		op(0, 90, 95, del("b"), ok(5)), // nothing left to delete
	)
	r := mustPass(t, h)
	if r.Operations != 10 || r.OK != 10 || r.AckedWrites != 4 {
		t.Errorf("report = %+v, want 10 operations, all ok, 4 acked writes", r)
	}
}

// A read that returns the value a put replaced, after that put returned,
// is stale: the history is Illegal and the artifacts say why.
func TestStaleReadIsIllegal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "artifacts")
	h := history(
		op(0, 0, 10, put("a", "x"), ok(2)),
		op(0, 20, 30, put("a", "y"), ok(3)),
		op(1, 40, 50, get("a"), got("x", 2, 2)),
	)
	r, err := Check(h, CheckOptions{Timeout: 10 * time.Second, ArtifactDir: dir})
	if !errors.Is(err, ErrNotLinearizable) || r.Linearizable != porcupine.Illegal {
		t.Fatalf("Check = %v, %v; want Illegal", r, err)
	}
	for _, name := range []string{"history.json", "linearizability.html"} {
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err != nil {
			t.Errorf("artifact %s: %v", name, err)
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error %q does not name %s", err, path)
		}
	}
	// The saved history fails again when replayed.
	if _, err := CheckFile(filepath.Join(dir, "history.json"), CheckOptions{}); !errors.Is(err, ErrNotLinearizable) {
		t.Errorf("CheckFile of the saved history: %v, want ErrNotLinearizable", err)
	}
}

// A put without an answer may have been applied or not; a read may show
// either, but not a revision it cannot have had.
func TestUnknownPut(t *testing.T) {
	base := func(read Response) *History {
		return history(
			op(0, 0, 10, put("a", "x"), ok(2)),
			op(1, 20, 30, put("a", "y"), unknown()),
			op(0, 40, 50, get("a"), read),
			op(0, 60, 70, get("a"), read),
		)
	}
	t.Run("applied", func(t *testing.T) { mustPass(t, base(got("y", 5, 6))) })
	t.Run("not applied", func(t *testing.T) { mustPass(t, base(got("x", 2, 6))) })
	t.Run("applied at the old revision", func(t *testing.T) { mustBeIllegal(t, base(got("y", 2, 6))) })
	t.Run("never written", func(t *testing.T) { mustBeIllegal(t, base(got("z", 5, 6))) })
	t.Run("reads disagree", func(t *testing.T) {
		h := base(got("y", 5, 6))
		h.Operations[3].Resp = got("x", 2, 6)
		mustBeIllegal(t, h)
	})
	t.Run("failed", func(t *testing.T) {
		h := base(got("x", 2, 6))
		h.Operations[1].Resp = Response{Outcome: Failed, Err: "etcdserver: request is too large"}
		r := mustPass(t, h)
		if r.Failed != 1 {
			t.Errorf("Failed = %d, want 1", r.Failed)
		}
	})
}

// A compare-and-swap succeeds exactly when the value is the one expected.
func TestCompareAndSwap(t *testing.T) {
	t.Run("linearizable", func(t *testing.T) {
		mustPass(t, history(
			op(0, 0, 10, put("a", "x"), ok(2)),
			op(0, 20, 30, cas("a", "x", "y"), found(3)),
			op(1, 40, 50, cas("a", "x", "z"), ok(3)), // x is gone
			op(1, 60, 70, get("a"), got("y", 3, 3)),
			op(2, 80, 90, del("a"), found(4)),
			op(2, 100, 110, cas("a", "y", "w"), ok(4)), // no key, no match
		))
	})
	t.Run("swapped a replaced value", func(t *testing.T) {
		mustBeIllegal(t, history(
			op(0, 0, 10, put("a", "x"), ok(2)),
			op(0, 20, 30, put("a", "y"), ok(3)),
			op(1, 40, 50, cas("a", "x", "z"), found(4)),
		))
	})
	t.Run("unknown", func(t *testing.T) {
		for _, read := range []Response{got("y", 4, 4), got("x", 2, 4)} {
			mustPass(t, history(
				op(0, 0, 10, put("a", "x"), ok(2)),
				op(1, 20, 30, cas("a", "x", "y"), unknown()),
				op(0, 40, 50, get("a"), read),
			))
		}
	})
}

// Two acknowledged writes cannot share a revision, even on different keys,
// which the per-key model cannot see.
func TestSharedRevisionIsAViolation(t *testing.T) {
	h := history(
		op(0, 0, 10, put("a", "x"), ok(2)),
		op(1, 0, 10, put("b", "y"), ok(2)),
	)
	r, err := Check(h, CheckOptions{ArtifactDir: t.TempDir()})
	if !errors.Is(err, ErrViolations) || len(r.Violations) != 1 {
		t.Fatalf("Check = %v, %v; want one violation", r, err)
	}
}

// A search that runs out of time is undecided, never passed.
func TestUndecidedIsNotPassed(t *testing.T) {
	// Hundreds of unknown puts, all concurrent, read back one by one in
	// reverse: linearizable, but a search far longer than a microsecond.
	const n = 300
	var ops []Operation
	for i := range n {
		ops = append(ops, op(i, int64(i), int64(i)+1, put("a", fmt.Sprint("v", i)), unknown()))
	}
	for i := range n {
		rev := int64(10 + i)
		ops = append(ops, op(n, 1000+10*rev, 1005+10*rev, get("a"), got(fmt.Sprint("v", n-1-i), rev, rev)))
	}
	r, err := Check(history(ops...), CheckOptions{Timeout: time.Microsecond, ArtifactDir: t.TempDir()})
	if err == nil || r.Linearizable == porcupine.Ok {
		t.Fatalf("Check = %v, %v; want an error", r, err)
	}
	if r.Linearizable != porcupine.Unknown || !errors.Is(err, ErrUndecided) {
		t.Errorf("Check = %v, %v; want Unknown and ErrUndecided", r.Linearizable, err)
	}
}

// TestReplay checks a saved history again:
//
//	ROBUSTNESS_REPLAY=history.json go test -run TestReplay ./internal/robustness/
//
// Without it, it replays a linearizable history saved here: the replay
// path itself (save, load, check) must pass.
func TestReplay(t *testing.T) {
	path := os.Getenv("ROBUSTNESS_REPLAY")
	if path == "" {
		path = filepath.Join(t.TempDir(), "history.json")
		h := history(
			op(0, 1, 2, put("a", "x"), ok(2)),
			op(1, 3, 4, get("a"), got("x", 2, 2)),
		)
		if err := h.Save(path); err != nil {
			t.Fatal(err)
		}
	}
	r, err := CheckFile(path, CheckOptions{ArtifactDir: artifactDir(t)})
	t.Logf("%s: %v", path, r)
	if err != nil {
		t.Fatal(err)
	}
}
