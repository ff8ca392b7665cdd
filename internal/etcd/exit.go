package etcd

import "strings"

// ExitKind is why etcd exited, as far as its last log lines tell.
type ExitKind string

const (
	// ExitRemoved: this member was removed from the cluster. etcd says its
	// data dir "must be removed"; restarting on it cannot work.
	ExitRemoved ExitKind = "removed"
	// ExitClusterMismatch: the data dir, or its absence, does not fit the
	// cluster the peers run: the member was already bootstrapped and its data
	// is gone, or the peers reject this member's cluster ID.
	ExitClusterMismatch ExitKind = "cluster-mismatch"
	// ExitDataCorrupt: etcd could not read its own data dir (database, WAL or
	// snapshots), or its data disagrees with its peers'.
	ExitDataCorrupt ExitKind = "data-corrupt"
	// ExitNoSpace: the disk of the data dir is full. The data is intact;
	// etcd runs again once space is freed (SPEC: never wipe for it).
	ExitNoSpace ExitKind = "no-space"
	// ExitOther: anything else, including no reason at all (SIGKILL, OOM).
	// A restart with backoff is the answer.
	ExitOther ExitKind = "other"
)

// exitSign is a text etcd logs for one kind of exit: a line is a sign when it
// contains every string of all. Texts are etcd 3.6's (go.etcd.io/etcd/server/v3
// and bbolt), checked against logs of real failures in testdata/exit; each
// is still in etcd 3.7's source but "failed to recover from snapshot" (3.7
// no longer loads v2 snapshot files), kept for an external etcd 3.6.
type exitSign struct {
	kind ExitKind
	all  []string
}

// exitSigns are read-only. Texts that etcd logs but survives are left out on
// purpose:
//   - "snap: crc mismatch" and "snap file is corrupt": etcd falls back to an
//     older snapshot or the WAL and runs on (testdata/exit/snap-crc-tolerated.log).
//   - "request cluster ID mismatch": logged by the member that receives a
//     message from a foreign one; the foreign one is the sender
//     (testdata/exit/peer-of-foreign-member.log).
//   - "error validating peerURLs ... member count is unequal": a join whose
//     --initial-cluster disagrees with the live membership. No data exists yet
//     (etcd only checks this without a WAL); planning again fixes it
//     (testdata/exit/join-stale-membership.log).
var exitSigns = []exitSign{
	// etcdserver/server.go: "server error" with this error, then
	// "data-dir used by this member must be removed". The error comes both
	// from applying this member's own removal and from peers answering
	// 410/403 (rafthttp errMemberRemoved).
	{ExitRemoved, []string{"the member has been permanently removed from the cluster"}},
	{ExitRemoved, []string{"data-dir used by this member must be removed"}},

	// etcdserver/bootstrap.go, via "discovery failed": started as a new
	// member without data while the cluster knows it as started.
	{ExitClusterMismatch, []string{"member ", " has already been bootstrapped"}},
	// rafthttp, the sending side: "request sent was ignored due to cluster ID
	// mismatch" (pipeline) and "request sent was ignored by remote peer due to
	// cluster ID mismatch" (stream). etcd keeps running while it logs these.
	// A single stale peer whose address now serves another cluster draws the
	// same warning, so confirm against the peers' cluster IDs (SPEC §4.2)
	// before throwing data away on this kind.
	{ExitClusterMismatch, []string{"due to cluster ID mismatch"}},

	// storage/backend: bbolt refused the database file.
	{ExitDataCorrupt, []string{"failed to open database", "invalid database"}},
	{ExitDataCorrupt, []string{"failed to open database", "checksum error"}},
	{ExitDataCorrupt, []string{"failed to open database", "version mismatch"}},
	{ExitDataCorrupt, []string{"failed to open database", "file size too small"}},
	// bbolt panics on pages it cannot make sense of.
	{ExitDataCorrupt, []string{"invalid page type"}},
	{ExitDataCorrupt, []string{"above high water mark"}},
	// etcdserver/bootstrap.go: snapshot, database and WAL disagree or are missing.
	{ExitDataCorrupt, []string{"failed to recover v3 backend"}},
	{ExitDataCorrupt, []string{"failed to recover from snapshot"}},
	{ExitDataCorrupt, []string{"of the backend is missing"}},
	{ExitDataCorrupt, []string{"does not match with snapshot"}},
	{ExitDataCorrupt, []string{"failed to read WAL, cannot be repaired"}},
	{ExitDataCorrupt, []string{"failed to repair WAL"}},
	// storage/wal.
	{ExitDataCorrupt, []string{"walpb: crc mismatch"}},
	{ExitDataCorrupt, []string{"wal: snapshot mismatch"}},
	{ExitDataCorrupt, []string{"wal: snapshot not found"}},
	{ExitDataCorrupt, []string{"wal: file not found"}},
	{ExitDataCorrupt, []string{"do not increase continuously"}},
	{ExitDataCorrupt, []string{"max entry size limit exceeded"}},
	// A full disk: the WAL's preallocation, a WAL or database write, a
	// snapshot. etcd panics or exits with the syscall's text.
	{ExitNoSpace, []string{"no space left on device"}},

	// etcdserver/corrupt.go: the initial corruption check found this
	// member's data differs from its peers'.
	{ExitDataCorrupt, []string{"found data inconsistency with peers"}},
}

// ClassifyExit tells from etcd's last log lines (oldest first, as LastLines
// returns them) why it exited. The newest line that names a reason decides:
// etcd logs its fatal reason last, followed only by shutdown noise, and an
// older reason may have been survived.
func ClassifyExit(lines []string) ExitKind {
	for i := len(lines) - 1; i >= 0; i-- {
		if kind, ok := exitSignOf(lines[i]); ok {
			return kind
		}
	}
	return ExitOther
}

func exitSignOf(line string) (ExitKind, bool) {
	for _, s := range exitSigns {
		if containsAll(line, s.all) {
			return s.kind, true
		}
	}
	return "", false
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
