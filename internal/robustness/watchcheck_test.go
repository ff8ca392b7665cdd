package robustness

import (
	"errors"
	"strings"
	"testing"
)

func started(rev int64) WatchResponse  { return WatchResponse{Start: rev} }
func progress(rev int64) WatchResponse { return WatchResponse{Progress: true, Revision: rev} }
func events(evs ...WatchEvent) WatchResponse {
	return WatchResponse{Revision: evs[len(evs)-1].ModRev, Events: evs}
}
func putEv(k, v string, rev int64) WatchEvent {
	return WatchEvent{Type: "put", Key: k, Value: v, ModRev: rev}
}
func delEv(k string, rev int64) WatchEvent { return WatchEvent{Type: "delete", Key: k, ModRev: rev} }

// writes is a history of acknowledged puts a=v2, b=v3, a=v4, a delete of b
// at 5 and a=v6, each at the revision its name says.
func writes(watch ...WatchResponse) *History {
	h := history(
		op(0, 0, 10, put("a", "v2"), ok(2)),
		op(0, 10, 20, put("b", "v3"), ok(3)),
		op(0, 20, 30, put("a", "v4"), ok(4)),
		op(0, 30, 40, del("b"), found(5)),
		op(0, 40, 50, put("a", "v6"), ok(6)),
	)
	h.Watches = []WatchLog{{Prefix: "/t/", Responses: watch}}
	return h
}

func TestCheckWatches(t *testing.T) {
	tests := []struct {
		name  string
		watch []WatchResponse
		want  []string // one substring per violation; none: passes
	}{
		{
			name: "complete",
			watch: []WatchResponse{started(2),
				events(putEv("a", "v2", 2)), events(putEv("b", "v3", 3), putEv("a", "v4", 4)),
				events(delEv("b", 5)), events(putEv("a", "v6", 6)), progress(6)},
		},
		{
			name: "partial coverage",
			watch: []WatchResponse{started(2),
				events(putEv("a", "v2", 2)), events(putEv("b", "v3", 3))},
		},
		{
			name: "gap",
			watch: []WatchResponse{started(2),
				events(putEv("a", "v2", 2)), events(putEv("a", "v4", 4)),
				events(delEv("b", 5)), events(putEv("a", "v6", 6))},
			want: []string{"acknowledged put b at revision 3 never arrived"},
		},
		{
			name: "gap before a progress notification",
			watch: []WatchResponse{started(2),
				events(putEv("a", "v2", 2), putEv("b", "v3", 3), putEv("a", "v4", 4), delEv("b", 5)), progress(6)},
			want: []string{"acknowledged put a at revision 6 never arrived"},
		},
		{
			name: "reorder",
			watch: []WatchResponse{started(2),
				events(putEv("a", "v2", 2)), events(putEv("a", "v4", 4)), events(putEv("b", "v3", 3)),
				events(delEv("b", 5)), events(putEv("a", "v6", 6))},
			want: []string{"event put b at revision 3 after revision 4"},
		},
		{
			name: "duplicate",
			watch: []WatchResponse{started(2),
				events(putEv("a", "v2", 2)), events(putEv("b", "v3", 3)), events(putEv("b", "v3", 3)),
				events(putEv("a", "v4", 4), delEv("b", 5), putEv("a", "v6", 6))},
			want: []string{"event put b at revision 3 delivered twice"},
		},
		{
			name: "wrong value",
			watch: []WatchResponse{started(4),
				events(putEv("a", "v6", 4)), events(delEv("b", 5)), events(putEv("a", "v6", 6))},
			want: []string{
				`event put a at revision 4: value "v6" was acknowledged at revision 6`,
				`acknowledged put a="v4" at revision 4 arrived as put "v6"`,
			},
		},
		{
			name: "phantom",
			watch: []WatchResponse{started(7),
				events(putEv("a", "nobody", 7), delEv("a", 8))},
			want: []string{`value "nobody" was never written`, "no client deleted the key then"},
		},
		{
			name: "compacted restart",
			watch: []WatchResponse{started(2),
				events(putEv("a", "v2", 2)),
				{CompactRev: 5, Err: "etcdserver: mvcc: required revision has been compacted"},
				started(5), events(delEv("b", 5), putEv("a", "v6", 6))},
		},
		{
			name: "gap after a compacted restart",
			watch: []WatchResponse{started(2),
				events(putEv("a", "v2", 2)),
				{CompactRev: 4, Err: "etcdserver: mvcc: required revision has been compacted"},
				started(4), events(putEv("a", "v4", 4), putEv("a", "v6", 6))},
			want: []string{"acknowledged delete b at revision 5 never arrived"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckWatches(writes(tt.watch...))
			if len(got) != len(tt.want) {
				t.Fatalf("CheckWatches = %q, want %d violations like %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("violation %d = %q, want it to say %q", i, got[i], w)
				}
			}
		})
	}
}

// Check fails on a watch violation even when the operations are
// linearizable, and keeps the history.
func TestCheckReportsWatchViolations(t *testing.T) {
	h := writes(started(2), events(putEv("a", "v2", 2)), progress(6))
	r, err := Check(h, CheckOptions{ArtifactDir: t.TempDir()})
	if !errors.Is(err, ErrViolations) || len(r.Violations) != 4 || len(r.Artifacts) != 1 {
		t.Fatalf("Check = %+v, %v; want 4 violations, history.json kept", r, err)
	}
}

// A watcher that saw the whole run settles unknown puts: one it delivered
// happened before it arrived, one it never delivered never happened.
func TestWatchSettlesUnknownPuts(t *testing.T) {
	h := history(
		op(0, 0, 10, put("a", "x"), ok(2)),
		op(1, 20, 30, put("a", "seen"), unknown()),
		op(2, 20, 30, put("a", "lost"), unknown()),
		op(0, 100, 110, get("a"), got("seen", 3, 3)),
	)
	h.Watches = []WatchLog{{Responses: []WatchResponse{
		started(2), events(putEv("a", "x", 2)),
		{Time: 50, Revision: 3, Events: []WatchEvent{putEv("a", "seen", 3)}}, progress(3)}}}
	r := mustPass(t, h)
	if r.UnknownSeen != 1 || r.UnknownDropped != 1 {
		t.Errorf("settled %d seen, %d dropped; want 1 and 1", r.UnknownSeen, r.UnknownDropped)
	}
	ops, _ := porcupineOperations(h)
	if len(ops) != 3 || ops[1].Return != 50 {
		t.Errorf("porcupine operations %+v: want the seen put returning at 50, the lost one gone", ops)
	}

	// A watcher that stopped at revision 2 vouches for nothing after it.
	h.Watches[0].Responses = h.Watches[0].Responses[:2]
	if _, st := porcupineOperations(h); st != (settlement{}) {
		t.Errorf("a watcher that stopped at revision 2 settled %+v", st)
	}
}
