package cluster

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The recovery fixtures: cluster 0x100 had voters i-a, i-x and i-y. i-x and
// i-y are gone; the group is i-a (a survivor with data at revision 50) and
// two new instances i-b and i-c.

var (
	lossNow   = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	lossGrace = 2 * time.Minute
)

// survivor marks the peer id as holding data of cluster 0x100 at rev,
// whose voters were voters.
func survivor(in *StartupInputs, id string, rev int64, voters ...string) {
	a := in.Peers[id]
	a.State.HasData, a.State.EtcdRunning = true, true
	a.State.ClusterID, a.State.Revision, a.State.Voters = liveClusterID, rev, voters
	a.State.Phase = PhaseRunning
	in.Peers[id] = a
	if id == in.Self.ID {
		in.Local = LocalData{Exists: true, Known: true, ClusterID: liveClusterID, MemberID: 0xa, Revision: rev, Voters: voters}
	}
}

// withLog sets the raft log position peer id publishes: term 2, index.
func withLog(in *StartupInputs, id string, index uint64) {
	a := in.Peers[id]
	a.State.Log = LogPosition{Term: 2, Index: index}
	in.Peers[id] = a
	if id == in.Self.ID {
		in.Local.Log = a.State.Log
	}
}

// snapshotAt is a snapshot of cluster 0x100 at rev, applied up to raft
// index index of term 2.
func snapshotAt(rev int64, index uint64) *SnapshotRef {
	return &SnapshotRef{Key: fmt.Sprintf("c/20261125T110000Z-r%d.db", rev), ClusterID: liveClusterID, Revision: rev,
		Log: LogPosition{Term: 2, Index: index}}
}

// lostFor sets the recovery clocks: the quorum lost for d.
func lostFor(in *StartupInputs, d time.Duration) {
	in.Recovery.Now, in.Recovery.LostSince, in.Recovery.DRGrace = lossNow, lossNow.Add(-d), lossGrace
}

func TestDecideStartupRecovery(t *testing.T) {
	oldVoters := []string{"i-a", "i-x", "i-y"}
	lost := func(self string, more func(in *StartupInputs)) StartupInputs {
		return startupInputs(self, func(in *StartupInputs) {
			survivor(in, "i-a", 50, oldVoters...)
			lostFor(in, lossGrace)
			if more != nil {
				more(in)
			}
		})
	}
	snapshot := func(rev int64) *SnapshotRef {
		return &SnapshotRef{Key: fmt.Sprintf("c/20261125T110000Z-r%d.db", rev), ClusterID: liveClusterID, Revision: rev}
	}
	tests := []struct {
		name      string
		in        StartupInputs
		want      StartupPlan
		reasonHas string
	}{
		{"survivor with the newest data recovers on it", lost("i-a", nil),
			StartupPlan{Action: Recover, Seeder: "i-a"}, "voters [i-x i-y] of [i-a i-x i-y] gone"},
		{"new instance waits for the survivor", lost("i-b", nil),
			StartupPlan{Action: Wait, Seeder: "i-a"}, "i-a recovers from its data"},
		{"before the grace the survivor starts on its data", lost("i-a", func(in *StartupInputs) { lostFor(in, lossGrace-time.Second) }),
			StartupPlan{Action: StartOnData}, ""},
		{"before the grace a new instance waits", lost("i-b", func(in *StartupInputs) { lostFor(in, lossGrace-time.Second) }),
			StartupPlan{Action: Wait}, "peer i-a has data"},
		{"a loss never seen is no loss", lost("i-a", func(in *StartupInputs) { in.Recovery.LostSince = time.Time{} }),
			StartupPlan{Action: StartOnData}, ""},
		{"an unreachable instance blocks recovery", lost("i-a", func(in *StartupInputs) { delete(in.Peers, "i-c") }),
			StartupPlan{Action: Wait}, "peer i-c (10.0.0.3) did not answer"},
		{"a peer with another view of the group blocks recovery", lost("i-a", func(in *StartupInputs) {
			a := in.Peers["i-b"]
			a.State.GroupView = []string{"i-a", "i-b"}
			in.Peers["i-b"] = a
		}), StartupPlan{Action: Wait}, "one agreed group"},
		{"a peer starting etcd blocks recovery", lost("i-a", func(in *StartupInputs) {
			a := in.Peers["i-c"]
			a.State.Phase = PhaseStarting
			in.Peers["i-c"] = a
		}), StartupPlan{Action: Wait}, "peer i-c is starting etcd"},
		{"an unreadable store blocks recovery", lost("i-a", func(in *StartupInputs) { in.Recovery.StoreErr = "AccessDenied" }),
			StartupPlan{Action: Wait}, "store can't be read"},
		{"a newer snapshot is restored by the seeder", lost("i-a", func(in *StartupInputs) { in.Recovery.Snapshot = snapshot(80) }),
			StartupPlan{Action: Restore, Seeder: "i-a", Snapshot: snapshot(80), Wipe: true}, "is the newest data"},
		{"others wait for the restore", lost("i-c", func(in *StartupInputs) { in.Recovery.Snapshot = snapshot(80) }),
			StartupPlan{Action: Wait, Seeder: "i-a"}, "i-a restores snapshot"},
		{"an older snapshot loses to the survivor's data", lost("i-a", func(in *StartupInputs) {
			in.Recovery.Snapshot = snapshot(30)
			in.Recovery.KnownRevision = 55
		}), StartupPlan{Action: Recover, Seeder: "i-a", LostRevisions: 5}, ""},
		{"quorum can come back: a voter's instance is only stopped", lost("i-a", func(in *StartupInputs) {
			in.Group = append(in.Group, instance("i-x", "10.0.0.9", InstanceStopped))
		}), StartupPlan{Action: StartOnData}, ""},
		{"a terminated voter is gone", lost("i-a", func(in *StartupInputs) {
			in.Group = append(in.Group, instance("i-x", "10.0.0.9", InstanceTerminated))
		}), StartupPlan{Action: Recover, Seeder: "i-a"}, ""},
		{"quorum not lost: two of three voters remain", startupInputs("i-a", func(in *StartupInputs) {
			survivor(in, "i-a", 50, "i-a", "i-b", "i-x")
			survivor(in, "i-b", 50, "i-a", "i-b", "i-x")
			lostFor(in, lossGrace)
		}), StartupPlan{Action: StartOnData}, ""},
		{"a voter that answers without its data is gone", startupInputs("i-a", func(in *StartupInputs) {
			survivor(in, "i-a", 50, "i-a", "i-b", "i-x")
			lostFor(in, lossGrace)
		}), StartupPlan{Action: Recover, Seeder: "i-a"}, "voters [i-b i-x] of [i-a i-b i-x] gone"},
		{"a voter that holds another cluster's data is gone", startupInputs("i-a", func(in *StartupInputs) {
			survivor(in, "i-a", 50, "i-a", "i-b", "i-x")
			b := in.Peers["i-b"]
			b.State.HasData, b.State.ClusterID = true, 0x999
			in.Peers["i-b"] = b
			lostFor(in, lossGrace)
		}), StartupPlan{Action: Recover, Seeder: "i-a"}, "voters [i-b i-x] of [i-a i-b i-x] gone"},
		{"a learner never recovers, even with the newest data", startupInputs("i-a", func(in *StartupInputs) {
			survivor(in, "i-a", 50, "i-a", "i-x", "i-y")
			survivor(in, "i-b", 70, "i-a", "i-x", "i-y") // i-b is a learner: not among the voters
			lostFor(in, lossGrace)
		}), StartupPlan{Action: Recover, Seeder: "i-a", LostRevisions: 20}, ""},
		{"only a learner holds data: no automatic recovery", startupInputs("i-b", func(in *StartupInputs) {
			survivor(in, "i-b", 70, "i-a", "i-x", "i-y")
			in.Group = append(in.Group[1:], instance("i-a", "10.0.0.1", InstanceTerminated))
			delete(in.Peers, "i-a")
			in.Local.MemberID = 0xb
			lostFor(in, lossGrace)
		}), StartupPlan{Action: Wait}, "no surviving voter holds its data"},
		{"voters are those of the newest data", startupInputs("i-a", func(in *StartupInputs) {
			// i-b's list predates i-x and i-y replacing i-c and i-d.
			survivor(in, "i-a", 50, "i-a", "i-x", "i-y")
			survivor(in, "i-b", 40, "i-a", "i-b", "i-c")
			lostFor(in, lossGrace)
		}), StartupPlan{Action: Recover, Seeder: "i-a"}, "of [i-a i-x i-y] gone"},
		{"the survivor with the highest revision recovers", startupInputs("i-a", func(in *StartupInputs) {
			voters := []string{"i-a", "i-b", "i-x", "i-y", "i-z"}
			survivor(in, "i-a", 50, voters...)
			survivor(in, "i-b", 60, voters...)
			lostFor(in, lossGrace)
		}), StartupPlan{Action: Wait, Seeder: "i-b"}, "i-b recovers from its data (revision 60)"},
		{"the newest survivor recovers and reports the gap", startupInputs("i-b", func(in *StartupInputs) {
			voters := []string{"i-a", "i-b", "i-x", "i-y", "i-z"}
			survivor(in, "i-a", 50, voters...)
			survivor(in, "i-b", 60, voters...)
			in.Local.MemberID = 0xb
			lostFor(in, lossGrace)
			in.Recovery.KnownRevision = 64
		}), StartupPlan{Action: Recover, Seeder: "i-b", LostRevisions: 4}, ""},
		{"the survivor with the newest raft log recovers, whatever its marker's revision", startupInputs("i-a", func(in *StartupInputs) {
			// i-a restarted: etcd does not serve, so its revision is the
			// marker's, 10 s old; its WAL reaches past i-b's.
			voters := []string{"i-a", "i-b", "i-x", "i-y", "i-z"}
			survivor(in, "i-a", 50, voters...)
			survivor(in, "i-b", 60, voters...)
			withLog(in, "i-a", 900)
			withLog(in, "i-b", 800)
			lostFor(in, lossGrace)
		}), StartupPlan{Action: Recover, Seeder: "i-a", LostRevisions: 10}, ""},
		{"survivors whose raft log is unknown compare by revision", startupInputs("i-a", func(in *StartupInputs) {
			voters := []string{"i-a", "i-b", "i-x", "i-y", "i-z"}
			survivor(in, "i-a", 50, voters...)
			survivor(in, "i-b", 60, voters...)
			withLog(in, "i-a", 900)
			lostFor(in, lossGrace)
		}), StartupPlan{Action: Wait, Seeder: "i-b"}, "i-b recovers from its data"},
		{"a snapshot behind the survivor's raft log is not restored over it", lost("i-a", func(in *StartupInputs) {
			in.Recovery.Snapshot = snapshotAt(80, 700)
			withLog(in, "i-a", 800)
		}), StartupPlan{Action: Recover, Seeder: "i-a", LostRevisions: 30}, ""},
		{"a snapshot past the survivor's raft log is restored", lost("i-a", func(in *StartupInputs) {
			in.Recovery.Snapshot = snapshotAt(80, 900)
			withLog(in, "i-a", 800)
		}), StartupPlan{Action: Restore, Seeder: "i-a", Snapshot: snapshotAt(80, 900), Wipe: true}, "is the newest data"},
		{"a snapshot of another cluster compares by revision", lost("i-a", func(in *StartupInputs) {
			in.Recovery.Snapshot = snapshotAt(80, 700)
			in.Recovery.Snapshot.ClusterID = 0x999
			withLog(in, "i-a", 800)
		}), StartupPlan{Action: Restore, Seeder: "i-a", Snapshot: &SnapshotRef{Key: "c/20261125T110000Z-r80.db", ClusterID: 0x999, Revision: 80, Log: LogPosition{Term: 2, Index: 700}}, Wipe: true}, "is the newest data"},
		{"survivors of different clusters: no recovery", startupInputs("i-a", func(in *StartupInputs) {
			survivor(in, "i-a", 50, oldVoters...)
			survivor(in, "i-b", 60, "i-b", "i-q", "i-r")
			b := in.Peers["i-b"]
			b.State.ClusterID = 0x999
			in.Peers["i-b"] = b
			lostFor(in, lossGrace)
		}), StartupPlan{Action: StartOnData}, ""},
		{"the newest data is unusable: kept, no recovery", lost("i-a", func(in *StartupInputs) { in.Local.Unusable = "corrupt WAL" }),
			StartupPlan{Action: Wait}, "keeping it for a manual restore"},
		{"new group restores the store's snapshot", startupInputs("i-a", func(in *StartupInputs) { in.Recovery.Snapshot = snapshot(80) }),
			StartupPlan{Action: Restore, Seeder: "i-a", Snapshot: snapshot(80)}, "newest good snapshot"},
		{"new group waits for the seeder's restore", startupInputs("i-b", func(in *StartupInputs) { in.Recovery.Snapshot = snapshot(80) }),
			StartupPlan{Action: Wait, Seeder: "i-a"}, "restores snapshot"},
		{"new group over unusable snapshots creates nothing", startupInputs("i-a", func(in *StartupInputs) { in.Recovery.StoreSnapshots = 2 }),
			StartupPlan{Action: Wait}, "never create an empty cluster"},
		{"new group with an unreadable store creates nothing", startupInputs("i-a", func(in *StartupInputs) { in.Recovery.StoreErr = "timeout" }),
			StartupPlan{Action: Wait}, "store can't be read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DecideStartup(tt.in)
			checkPlan(t, got, tt.want, tt.reasonHas)
		})
	}
}

// TestDecideStartupRecoveryWaitsForStoppedVoters: five voters i-a..i-e;
// i-c, i-d and i-e are terminated, so the quorum is lost for good. i-b's
// instance is only stopped: it may hold commits that i-a lacks, so nobody
// recovers until it runs and answers, or is terminated.
func TestDecideStartupRecoveryWaitsForStoppedVoters(t *testing.T) {
	voters := []string{"i-a", "i-b", "i-c", "i-d", "i-e"}
	five := func(self string, b InstanceState, more func(in *StartupInputs)) StartupInputs {
		return startupInputs(self, func(in *StartupInputs) {
			in.Group = []Instance{
				instance("i-a", "10.0.0.1", InstanceRunning),
				instance("i-b", "10.0.0.2", b),
				instance("i-c", "10.0.0.3", InstanceTerminated),
				instance("i-d", "10.0.0.4", InstanceTerminated),
				instance("i-e", "10.0.0.5", InstanceTerminated),
			}
			delete(in.Peers, "i-c")
			if !b.InGroup() {
				delete(in.Peers, "i-b")
			}
			survivor(in, "i-a", 50, voters...)
			lostFor(in, 10*lossGrace)
			if more != nil {
				more(in)
			}
		})
	}
	snapshot := &SnapshotRef{Key: "c/20261125T110000Z-r80.db", ClusterID: liveClusterID, Revision: 80}
	tests := []struct {
		name      string
		in        StartupInputs
		want      StartupPlan
		reasonHas string
	}{
		{"a stopped voter blocks recovery", five("i-a", InstanceStopped, nil),
			StartupPlan{Action: Wait}, "voter i-b's instance is stopped"},
		{"a stopping voter blocks recovery", five("i-a", InstanceStopping, nil),
			StartupPlan{Action: Wait}, "voter i-b's instance is stopping"},
		{"a stopped voter blocks a restore too", five("i-a", InstanceStopped, func(in *StartupInputs) { in.Recovery.Snapshot = snapshot }),
			StartupPlan{Action: Wait}, "voter i-b's instance is stopped"},
		{"the stopped voter terminated: the survivor recovers", five("i-a", InstanceTerminated, nil),
			StartupPlan{Action: Recover, Seeder: "i-a"}, "voters [i-b i-c i-d i-e] of [i-a i-b i-c i-d i-e] gone"},
		{"the voter runs again with newer data: the survivor waits for it", five("i-a", InstanceRunning, func(in *StartupInputs) {
			survivor(in, "i-b", 60, voters...)
		}), StartupPlan{Action: Wait, Seeder: "i-b"}, "i-b recovers from its data (revision 60)"},
		{"the voter runs again with newer data: it recovers", five("i-b", InstanceRunning, func(in *StartupInputs) {
			survivor(in, "i-b", 60, voters...)
			in.Local.MemberID = 0xb
		}), StartupPlan{Action: Recover, Seeder: "i-b"}, "this instance holds the newest data (revision 60)"},
		{"the voter runs again without data: it is gone, the survivor recovers", five("i-a", InstanceRunning, nil),
			StartupPlan{Action: Recover, Seeder: "i-a"}, "voters [i-b i-c i-d i-e] of"},
		{"the voter runs again and does not answer", five("i-a", InstanceRunning, func(in *StartupInputs) { delete(in.Peers, "i-b") }),
			StartupPlan{Action: Wait}, "peer i-b (10.0.0.2) did not answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkPlan(t, DecideStartup(tt.in), tt.want, tt.reasonHas)
		})
	}
}

func TestQuorumLost(t *testing.T) {
	in := startupInputs("i-b", func(in *StartupInputs) { survivor(in, "i-a", 50, "i-a", "i-x", "i-y") })
	loss, ok := QuorumLost(in)
	if !ok || !loss.Lost() || loss.ClusterID != liveClusterID || len(loss.Gone) != 2 {
		t.Errorf("QuorumLost = %+v, %v; want cluster %s lost with 2 voters gone", loss, ok, liveClusterID)
	}
	in.GroupKnown = false
	if _, ok := QuorumLost(in); ok {
		t.Error("QuorumLost judged an unknown group")
	}
	if _, ok := QuorumLost(startupInputs("i-b", nil)); ok {
		t.Error("QuorumLost judged a group without data")
	}
}

// checkPlan compares a plan with want, field by field; the reason must be
// non-empty and contain reasonHas.
func checkPlan(t *testing.T, got, want StartupPlan, reasonHas string) {
	t.Helper()
	if got.Reason == "" {
		t.Errorf("plan %+v has no reason", got)
	}
	if !strings.Contains(got.Reason, reasonHas) {
		t.Errorf("reason %q does not mention %q", got.Reason, reasonHas)
	}
	got.Reason = ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DecideStartup() = %+v (snapshot %+v), want %+v (snapshot %+v)", got, got.Snapshot, want, want.Snapshot)
	}
}

// TestDecideStartupOneRecoveryPerGroup: over every mix of survivors (by
// their revisions; 0 is a new instance without data), snapshots, loss
// clocks and a voter's instance gone or only stopped, the instances of one
// group, deciding on the same answers, never have more than one of them
// create, recover or restore a cluster, and whoever acts is the seeder that
// every waiting instance names. Nobody recovers past the stopped voter
// once a survivor's data names it as one.
func TestDecideStartupOneRecoveryPerGroup(t *testing.T) {
	group := fixtureGroup()
	voters := []string{"i-a", "i-b", "i-c", "i-x", "i-y", "i-z", "i-w"} // 4 of 7 gone
	revs := []int64{0, 40, 50}
	snaps := []*SnapshotRef{nil, {Key: "s45", ClusterID: liveClusterID, Revision: 45}, {Key: "s60", ClusterID: liveClusterID, Revision: 60}}
	acting := map[StartupAction]bool{Bootstrap: true, Recover: true, Restore: true}
	cases := 0
	for _, ra := range revs {
		for _, rb := range revs {
			for _, rc := range revs {
				for _, snap := range snaps {
					for _, since := range []time.Duration{0, lossGrace / 2, lossGrace} {
						for _, xStopped := range []bool{false, true} {
							cases++
							var actors, seeders []string
							for _, self := range group {
								in := startupInputs(self.ID, func(in *StartupInputs) {
									for id, rev := range map[string]int64{"i-a": ra, "i-b": rb, "i-c": rc} {
										if rev > 0 {
											survivor(in, id, rev, voters...)
										}
									}
									if in.Local.Exists {
										in.Local.MemberID = ID(self.ID[2])
									}
									in.Recovery.Snapshot = snap
									if since > 0 {
										lostFor(in, since)
									}
									if xStopped {
										in.Group = append(in.Group, instance("i-x", "10.0.0.9", InstanceStopped))
									}
								})
								got := DecideStartup(in)
								// With no survivor's data, the group does not know
								// i-x was a voter: that is a new group's restore.
								survivors := ra+rb+rc > 0
								if xStopped && survivors && (got.Action == Recover || got.Action == Restore) {
									t.Errorf("revisions %d/%d/%d, snapshot %v, lost for %s: %s plans %s while voter i-x is only stopped", ra, rb, rc, snap, since, self.ID, got.Action)
								}
								if acting[got.Action] {
									actors = append(actors, self.ID)
								}
								if got.Seeder != "" {
									seeders = append(seeders, got.Seeder)
								}
							}
							if len(actors) > 1 {
								t.Errorf("revisions %d/%d/%d, snapshot %v, lost for %s: %v all act", ra, rb, rc, snap, since, actors)
							}
							for _, s := range seeders {
								if len(actors) == 1 && s != actors[0] {
									t.Errorf("revisions %d/%d/%d, snapshot %v, lost for %s: seeder %s named while %s acts", ra, rb, rc, snap, since, s, actors[0])
								}
							}
						}
					}
				}
			}
		}
	}
	if cases != 486 {
		t.Fatalf("%d cases, want 486", cases)
	}
}

func TestRestoreBump(t *testing.T) {
	tests := []struct {
		name            string
		restored, known int64
		want            int64
	}{
		{"nothing newer known: the margin", 4711, 0, RestoreMargin},
		{"known below the restored revision: the margin", 4711, 4000, RestoreMargin},
		{"known equal to the restored revision: the margin", 4711, 4711, RestoreMargin},
		{"a newer snapshot of the lost cluster", 4000, 4711, 711 + RestoreMargin},
		{"an abandoned history, already bumped once", 50, 3*RestoreMargin + 7, 3*RestoreMargin + 7 - 50 + RestoreMargin},
		{"an empty cluster", 1, 0, RestoreMargin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RestoreBump(tt.restored, tt.known)
			if got != tt.want {
				t.Errorf("RestoreBump(%d, %d) = %d, want %d", tt.restored, tt.known, got, tt.want)
			}
			if next := tt.restored + got; next < tt.known+RestoreMargin || next < tt.restored+RestoreMargin {
				t.Errorf("RestoreBump(%d, %d): restored cluster starts at %d, not %d past both", tt.restored, tt.known, next, RestoreMargin)
			}
		})
	}
}

func TestNewestKnownRevision(t *testing.T) {
	in := startupInputs("i-a", func(in *StartupInputs) {
		survivor(in, "i-a", 50, "i-a", "i-x", "i-y")
		survivor(in, "i-b", 70, "i-b", "i-q", "i-r")
		b := in.Peers["i-b"]
		b.State.ClusterID = 0x999 // another cluster's data still counts
		in.Peers["i-b"] = b
	})
	if got := NewestKnownRevision(in); got != 70 {
		t.Errorf("NewestKnownRevision = %d, want 70 (i-b's data)", got)
	}
	in.Recovery.Snapshot = &SnapshotRef{Key: "s80", Revision: 80}
	if got := NewestKnownRevision(in); got != 80 {
		t.Errorf("NewestKnownRevision = %d, want 80 (the snapshot)", got)
	}
	in.Recovery.KnownRevision = 90 // a snapshot that fails its checksum
	if got := NewestKnownRevision(in); got != 90 {
		t.Errorf("NewestKnownRevision = %d, want 90 (the store's newest)", got)
	}
	in.Local.Revision = 100
	if got := NewestKnownRevision(in); got != 100 {
		t.Errorf("NewestKnownRevision = %d, want 100 (the local data)", got)
	}
	b := in.Peers["i-b"]
	b.Reachable, b.State.Revision = false, 500
	in.Peers["i-b"] = b
	if got := NewestKnownRevision(in); got != 100 {
		t.Errorf("NewestKnownRevision = %d, want 100: an unreachable answer says nothing", got)
	}
}

func TestNewerData(t *testing.T) {
	peer := func(id string, cid ID, rev int64, term, index uint64) PeerState {
		return PeerState{InstanceID: id, ClusterID: cid, Revision: rev, Log: LogPosition{Term: term, Index: index}}
	}
	tests := []struct {
		name string
		a, b PeerState
		want bool
	}{
		{"the longer log wins within a cluster", peer("i-b", 1, 50, 2, 900), peer("i-a", 1, 60, 2, 800), true},
		{"a shorter log loses despite a higher revision", peer("i-a", 1, 60, 2, 800), peer("i-b", 1, 50, 2, 900), false},
		{"a later last term wins over a longer log", peer("i-a", 1, 50, 3, 800), peer("i-b", 1, 60, 2, 900), true},
		{"an unknown log falls back to the revision", peer("i-a", 1, 60, 0, 0), peer("i-b", 1, 50, 2, 900), true},
		{"logs of different clusters are not compared", peer("i-a", 1, 60, 2, 10), peer("i-b", 2, 50, 2, 900), true},
		{"equal logs fall back to the revision", peer("i-b", 1, 61, 2, 900), peer("i-a", 1, 60, 2, 900), true},
		{"a full tie goes to the lower id", peer("i-a", 1, 60, 2, 900), peer("i-b", 1, 60, 2, 900), true},
		{"a full tie is not newer for the higher id", peer("i-b", 1, 60, 2, 900), peer("i-a", 1, 60, 2, 900), false},
	}
	for _, tt := range tests {
		if got := NewerData(tt.a, tt.b); got != tt.want {
			t.Errorf("%s: NewerData = %v, want %v", tt.name, got, tt.want)
		}
	}
}
