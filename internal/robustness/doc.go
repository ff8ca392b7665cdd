// Package robustness records what concurrent clients saw of an etcd cluster
// and checks it: linearizability with porcupine, and the guarantees of etcd's
// watch. It is modelled on etcd's own tests/robustness, cut down to what the
// appliance's fault tests need. Only tests import it; the shipped binary is
// checked not to link it (cmd/etcd-appliance harness_test.go).
//
// # Recording
//
// Record runs Options.Clients workers over Options.Keys keys under a fresh
// prefix. Each worker issues, one at a time, linearizable Gets, Puts of
// values unique in the run ("c<client>-<seq>"), compare-and-swap Txns (if the
// value is the one this worker last saw, put a new one) and Deletes, each
// with a short deadline so that workers keep going through faults. Every
// operation is logged with its call and return times (nanoseconds since the
// start of the run, from the monotonic clock), its request and its response.
// Watchers follow the prefix meanwhile, and a final read of every key closes
// the run so that a lost acknowledged write shows as a read that no
// linearization explains.
//
// # Outcomes
//
// An operation is ok when etcd answered it; failed when etcd refused it before
// applying it (gRPC InvalidArgument: a malformed or oversized request); and
// unknown otherwise: a timeout, a dropped connection, a lost leader. Almost
// every error after the request left is unknown, because etcd may have
// committed it anyway. An unknown write is checked as one that may have taken
// effect at any instant after its call, or never: its return time is infinite.
// Failed writes and reads without an answer are left out of the check, since
// they changed nothing and saw nothing.
//
// # Model
//
// The porcupine model is a key-value store partitioned by key, which is valid
// because every operation touches one key. A key's state is whether it
// exists, its value, and the revision of its last change. An ok read must
// return exactly that value and mod revision; an ok write's revision must be
// above the last one. After an unknown write the revision is known only to be
// above the previous one, until a read tells it. Revisions across keys are
// checked outside porcupine: no two acknowledged writes share one.
//
// Before porcupine runs, unknown puts are narrowed with what the watchers
// saw, as etcd's robustness tests do: when a watcher covered the whole run, a
// put whose unique value it never delivered did not happen, and one it did
// deliver happened before the event was received.
//
// # Watches
//
// CheckWatches holds each watcher to etcd's watch guarantees: revisions never
// go back, no event repeats, every acknowledged write inside the revisions
// the watcher covered arrives with its value, and nothing arrives that no
// client wrote. A watch cancelled by compaction restarts at the compact
// revision; the skipped revisions are a recorded gap, not a loss.
//
// # Artifacts and replay
//
// When a check fails, Check writes history.json and, for a linearizability
// failure, porcupine's visualization linearizability.html into
// CheckOptions.ArtifactDir, and its error names them. Tests pass
// t.ArtifactDir(), kept with `go test -artifacts -outputdir DIR`, or the
// directory in $ROBUSTNESS_ARTIFACTS. A saved history is checked again with
//
//	ROBUSTNESS_REPLAY=/path/to/history.json go test -run TestReplay ./internal/robustness/
//
// or from code with CheckFile.
package robustness
