package etcd

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"
)

// The logs in testdata/exit are the last lines of real etcd 3.6.16 runs (the
// server this module pins), produced by breaking a data dir or a membership
// on purpose; the file names say how.
func TestClassifyExitRealLogs(t *testing.T) {
	tests := []struct {
		file string
		want ExitKind
	}{
		{"removed.log", ExitRemoved},                      // member removed while running
		{"removed-restart.log", ExitRemoved},              // removed member restarted on its data
		{"already-bootstrapped.log", ExitClusterMismatch}, // data dir wiped, started as a new member again
		{"cluster-id-mismatch.log", ExitClusterMismatch},  // data of another cluster; peers reject it
		{"db-invalid.log", ExitDataCorrupt},               // garbage over the bbolt header
		{"db-missing.log", ExitDataCorrupt},               // member/snap/db deleted, snapshots kept
		{"wal-crc-mismatch.log", ExitDataCorrupt},         // bytes flipped inside the WAL
		{"no-space.log", ExitNoSpace},                     // data dir on a full 8 MB tmpfs: the WAL cannot be preallocated
		{"snap-crc-tolerated.log", ExitOther},             // every .snap corrupt: etcd replays the WAL and runs
		{"join-stale-membership.log", ExitOther},          // joined with an --initial-cluster the cluster disagrees with
		{"sigterm.log", ExitOther},                        // plain stop
		{"peer-of-foreign-member.log", ExitOther},         // healthy member that a foreign member talked to
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			lines := readLines(t, filepath.Join("testdata", "exit", tt.file))
			if got := ClassifyExit(lines); got != tt.want {
				t.Errorf("ClassifyExit(%s) = %q, want %q", tt.file, got, tt.want)
			}
			// What the supervisor keeps must be enough: feed the log
			// through the same ring the Process uses.
			ring := newLineRing(keptLines)
			for _, l := range lines {
				ring.Write([]byte(l + "\n"))
			}
			if got := ClassifyExit(ring.Lines()); got != tt.want {
				t.Errorf("ClassifyExit(last %d lines of %s) = %q, want %q", keptLines, tt.file, got, tt.want)
			}
		})
	}
}

func TestClassifyExit(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  ExitKind
	}{
		{"no lines", nil, ExitOther},
		{"killed without a word", []string{`{"level":"info","msg":"ready to serve client requests"}`}, ExitOther},
		{"removed, then shutdown noise", []string{
			`{"level":"warn","ts":"2026-11-25T13:07:43.605977Z","caller":"etcdserver/server.go:860","msg":"server error","error":"the member has been permanently removed from the cluster"}`,
			`{"level":"warn","ts":"2026-11-25T13:07:43.606004Z","caller":"etcdserver/server.go:861","msg":"data-dir used by this member must be removed"}`,
			`{"level":"info","ts":"2026-11-25T13:07:43.606554Z","caller":"rafthttp/peer.go:321","msg":"stopped remote peer","remote-peer-id":"bb7d371eb677b2bf"}`,
		}, ExitRemoved},
		{"the leader removing another member is no sign", []string{
			`{"level":"info","caller":"membership/cluster.go:460","msg":"removed member","cluster-id":"91dd64be6c2fb169","local-member-id":"bb7d371eb677b2bf","removed-remote-peer-id":"e285923851f2723f"}`,
		}, ExitOther},
		{"db checksum", []string{
			`{"level":"panic","caller":"backend/backend.go:205","msg":"failed to open database","path":"/d/member/snap/db","error":"checksum error"}`,
			`panic: failed to open database`,
		}, ExitDataCorrupt},
		{"db locked is not corruption", []string{
			`{"level":"panic","caller":"backend/backend.go:205","msg":"failed to open database","path":"/d/member/snap/db","error":"timeout"}`,
		}, ExitOther},
		{"db permission is not corruption", []string{
			`{"level":"panic","caller":"backend/backend.go:205","msg":"failed to open database","path":"/d/member/snap/db","error":"open /d/member/snap/db: permission denied"}`,
		}, ExitOther},
		{"bbolt page panic", []string{`panic: invalid page type: 7: 10`}, ExitDataCorrupt},
		{"WAL cannot be repaired", []string{
			`{"level":"fatal","caller":"etcdserver/bootstrap.go:631","msg":"failed to read WAL, cannot be repaired","error":"unexpected EOF"}`,
		}, ExitDataCorrupt},
		{"initial corruption check", []string{
			`{"level":"fatal","caller":"etcdmain/etcd.go:183","msg":"discovery failed","error":"8e9e05c52164694d found data inconsistency with peers"}`,
		}, ExitDataCorrupt},
		{"newest reason wins", []string{
			`{"level":"warn","msg":"request sent was ignored by remote peer due to cluster ID mismatch","error":"cluster ID mismatch"}`,
			`{"level":"panic","msg":"failed to open database","error":"invalid database"}`,
		}, ExitDataCorrupt},
		{"pipeline mismatch", []string{
			`{"level":"error","caller":"rafthttp/util.go:100","msg":"request sent was ignored due to cluster ID mismatch","remote-peer-id":"4cd7f66bd8af0273"}`,
		}, ExitClusterMismatch},
		{"no peers reachable is transient", []string{
			`{"level":"fatal","caller":"etcdmain/etcd.go:183","msg":"discovery failed","error":"cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs"}`,
		}, ExitOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClassifyExit(tt.lines); got != tt.want {
				t.Errorf("ClassifyExit() = %q, want %q", got, tt.want)
			}
		})
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}
