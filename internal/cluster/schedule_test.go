package cluster

import (
	"slices"
	"testing"
	"time"
)

func TestBackupScheduleNext(t *testing.T) {
	tests := []struct {
		name   string
		s      BackupSchedule
		failed bool
		want   time.Time
	}{
		{"success: one interval later", BackupSchedule{Interval: time.Hour, Retry: 30 * time.Second}, false, t0.Add(time.Hour)},
		{"failure: retried soon", BackupSchedule{Interval: time.Hour, Retry: 30 * time.Second}, true, t0.Add(30 * time.Second)},
		{"failure with a retry longer than the interval: one interval later",
			BackupSchedule{Interval: 10 * time.Second, Retry: 30 * time.Second}, true, t0.Add(10 * time.Second)},
		{"success with a retry longer than the interval", BackupSchedule{Interval: 10 * time.Second, Retry: 30 * time.Second}, false,
			t0.Add(10 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.Next(t0, tt.failed); !got.Equal(tt.want) {
				t.Errorf("Next(t0, %v) = t0%+v, want t0%+v", tt.failed, got.Sub(t0), tt.want.Sub(t0))
			}
		})
	}
}

func TestBackupScheduleVerifyDue(t *testing.T) {
	s := BackupSchedule{Interval: time.Minute, Retry: 30 * time.Second, VerifyEvery: time.Hour}
	tests := []struct {
		name         string
		lastVerified time.Time
		want         bool
	}{
		{"never verified", time.Time{}, true},
		{"verified exactly VerifyEvery ago", t0.Add(-time.Hour), true},
		{"verified longer ago", t0.Add(-2 * time.Hour), true},
		{"verified just under VerifyEvery ago", t0.Add(-time.Hour + time.Nanosecond), false},
		{"verified just now", t0, false},
		{"verified in the future (clock stepped back)", t0.Add(time.Minute), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.VerifyDue(t0, tt.lastVerified); got != tt.want {
				t.Errorf("VerifyDue(t0, %v) = %v, want %v", tt.lastVerified, got, tt.want)
			}
		})
	}
}

func TestSnapshotNeeded(t *testing.T) {
	tests := []struct {
		revision, stored, userKeys int64
		want                       bool
	}{
		{0, 0, -1, true},   // unknown revision, nothing stored
		{0, 100, -1, true}, // unknown revision: it may be newer
		{-1, 100, -1, true},
		{1, 0, -1, true}, // nothing stored yet, keys not counted
		{100, 100, -1, false},
		{99, 100, -1, false},
		{101, 100, -1, true},
		{14, 0, 0, false}, // only the appliance's own keys, nothing stored: nothing to keep
		{14, 0, 3, true},
		{101, 100, 0, true}, // emptied since the last snapshot: the deletions must be kept
	}
	for _, tt := range tests {
		if got := SnapshotNeeded(tt.revision, tt.stored, tt.userKeys); got != tt.want {
			t.Errorf("SnapshotNeeded(%d, %d, %d) = %v, want %v", tt.revision, tt.stored, tt.userKeys, got, tt.want)
		}
	}
}

func TestNewestGoodSnapshot(t *testing.T) {
	snap := func(key string, rev int64, at time.Duration) SnapshotRef {
		return SnapshotRef{Key: key, ClusterID: liveClusterID, Revision: rev, Time: t0.Add(at)}
	}
	tests := []struct {
		name      string
		snaps     []SnapshotRef
		bad       map[string]bool
		wantKey   string // "": none
		wantKnown int64
	}{
		{"empty store", nil, nil, "", 0},
		{"one snapshot", []SnapshotRef{snap("s1", 10, 0)}, nil, "s1", 10},
		{"the highest revision wins over a newer time",
			[]SnapshotRef{snap("newer-clock", 10, time.Hour), snap("highest", 20, 0), snap("old", 5, -time.Hour)}, nil, "highest", 20},
		{"a bad snapshot is skipped but its revision known",
			[]SnapshotRef{snap("good", 10, 0), snap("bad", 30, time.Hour)}, map[string]bool{"bad": true}, "good", 30},
		{"a tie on revision goes to the newer time",
			[]SnapshotRef{snap("mid", 20, 0), snap("newest", 20, time.Hour), snap("oldest", 20, -time.Hour)}, nil, "newest", 20},
		{"a tie on revision, the newer one bad",
			[]SnapshotRef{snap("mid", 20, 0), snap("newest", 20, time.Hour)}, map[string]bool{"newest": true}, "mid", 20},
		{"all bad: none, the revision still known",
			[]SnapshotRef{snap("a", 10, 0), snap("b", 40, time.Hour)}, map[string]bool{"a": true, "b": true}, "", 40},
		{"a bad key not listed changes nothing",
			[]SnapshotRef{snap("a", 10, 0)}, map[string]bool{"gone": true}, "a", 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			best, known := NewestGoodSnapshot(tt.snaps, tt.bad)
			if known != tt.wantKnown {
				t.Errorf("known = %d, want %d", known, tt.wantKnown)
			}
			switch {
			case tt.wantKey == "" && best != nil:
				t.Errorf("best = %+v, want none", *best)
			case tt.wantKey != "" && best == nil:
				t.Errorf("best = nil, want %s", tt.wantKey)
			case best != nil && best.Key != tt.wantKey:
				t.Errorf("best = %s (revision %d), want %s", best.Key, best.Revision, tt.wantKey)
			}
		})
	}
}

func TestNewestGoodSnapshotDoesNotAlias(t *testing.T) {
	snaps := []SnapshotRef{
		{Key: "a", Revision: 10, Time: t0},
		{Key: "b", Revision: 20, Time: t0},
	}
	best, _ := NewestGoodSnapshot(snaps, nil)
	if best == nil || best.Key != "b" {
		t.Fatalf("best = %+v, want b", best)
	}
	best.Key, best.Revision = "changed", 99
	if snaps[1].Key != "b" || snaps[1].Revision != 20 {
		t.Errorf("changing the result changed the listing: %+v", snaps[1])
	}
}

func TestTrackLoss(t *testing.T) {
	earlier := lossNow.Add(-time.Minute)
	// lost is the recovery fixture seen by the new instance i-b: i-a holds
	// data of cluster 0x100 whose voters were i-a, i-x and i-y.
	lost := func(more func(in *StartupInputs)) StartupInputs {
		return startupInputs("i-b", func(in *StartupInputs) {
			survivor(in, "i-a", 50, "i-a", "i-x", "i-y")
			if more != nil {
				more(in)
			}
		})
	}
	tests := []struct {
		name        string
		since       time.Time
		in          StartupInputs
		wantNext    time.Time
		wantStarted bool
		// wantGone are the voters gone for good; checked unless a live
		// cluster makes the loss moot.
		wantGone  []string
		checkLoss bool
	}{
		{"first cycle that sees the loss starts the clock", time.Time{}, lost(nil), lossNow, true, []string{"i-x", "i-y"}, true},
		{"later cycles keep the start", earlier, lost(nil), earlier, false, []string{"i-x", "i-y"}, true},
		{"a live cluster stops the clock", earlier, lost(func(in *StartupInputs) { in.Cluster = fullLiveCluster() }),
			time.Time{}, false, nil, false},
		{"a live cluster does not start the clock", time.Time{}, lost(func(in *StartupInputs) { in.Cluster = fullLiveCluster() }),
			time.Time{}, false, nil, false},
		{"a voter's instance only stopped: a quorum can come back", earlier, lost(func(in *StartupInputs) {
			in.Group = append(in.Group, instance("i-x", "10.0.0.9", InstanceStopped))
		}), time.Time{}, false, []string{"i-y"}, true},
		{"the group unknown: nothing can be said", earlier, lost(func(in *StartupInputs) { in.GroupKnown = false }),
			time.Time{}, false, nil, true},
		{"nobody holds data", earlier, startupInputs("i-b", nil), time.Time{}, false, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, loss, started := TrackLoss(tt.since, lossNow, tt.in)
			if !next.Equal(tt.wantNext) || started != tt.wantStarted {
				t.Errorf("TrackLoss = next %v, started %v; want %v, %v", next, started, tt.wantNext, tt.wantStarted)
			}
			if started && !loss.Lost() {
				t.Errorf("the clock started on a loss that is not lost: %+v", loss)
			}
			if tt.checkLoss && !slices.Equal(loss.Gone, tt.wantGone) {
				t.Errorf("loss.Gone = %v, want %v", loss.Gone, tt.wantGone)
			}
		})
	}
}

func TestSteady(t *testing.T) {
	// started is a voter whose etcd has run: it published a client URL.
	started := func(id ID) Member {
		m := voter(id)
		m.ClientURLs = []string{"http://" + memberName(id) + ":2379"}
		return m
	}
	startedLearner := func(id ID) Member {
		m := started(id)
		m.IsLearner = true
		return m
	}
	all := []Member{started(0xa), started(0xb), started(0xc)}
	tests := []struct {
		name    string
		members []Member
		healthy map[ID]bool
		listed  []Instance
		want    bool
	}{
		{"every member a healthy started voter on a running instance", all, healthy(0xa, 0xb, 0xc), running(0xa, 0xb, 0xc), true},
		{"a terminated instance without a member does not matter", all, healthy(0xa, 0xb, 0xc),
			append(running(0xa, 0xb, 0xc), withState(0xd, InstanceTerminated)), true},
		{"a learner", append(all[:2:2], startedLearner(0xc)), healthy(0xa, 0xb, 0xc), running(0xa, 0xb, 0xc), false},
		{"an unstarted member", append(all[:2:2], voter(0xc)), healthy(0xa, 0xb, 0xc), running(0xa, 0xb, 0xc), false},
		{"an unhealthy member", all, healthy(0xa, 0xb), running(0xa, 0xb, 0xc), false},
		{"no health known", all, nil, running(0xa, 0xb, 0xc), false},
		{"a member's instance terminated", all, healthy(0xa, 0xb, 0xc),
			append(running(0xa, 0xb), withState(0xc, InstanceTerminated)), false},
		{"a member's instance stopped", all, healthy(0xa, 0xb, 0xc),
			append(running(0xa, 0xb), withState(0xc, InstanceStopped)), false},
		{"a member's instance pending", all, healthy(0xa, 0xb, 0xc),
			append(running(0xa, 0xb), withState(0xc, InstancePending)), false},
		{"a member's instance absent", all, healthy(0xa, 0xb, 0xc), running(0xa, 0xb), false},
		{"no listing yet", all, healthy(0xa, 0xb, 0xc), nil, false},
		{"an empty listing", all, healthy(0xa, 0xb, 0xc), []Instance{}, false},
		{"no members", nil, healthy(), running(0xa), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Steady(tt.members, tt.healthy, tt.listed); got != tt.want {
				t.Errorf("Steady = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOtherInstance(t *testing.T) {
	self := memberName(0xa)
	tests := []struct {
		name  string
		group []Instance
		want  string
	}{
		{"no listing", nil, ""},
		{"alone", running(0xa), ""},
		{"the others terminated, stopped or stopping", []Instance{
			withState(0xb, InstanceTerminated), withState(0xa, InstanceRunning),
			withState(0xc, InstanceStopped), withState(0xd, InstanceStopping),
		}, ""},
		{"another pending", []Instance{withState(0xa, InstanceRunning), withState(0xb, InstanceTerminated), withState(0xc, InstancePending)},
			memberName(0xc)},
		{"another running", []Instance{withState(0xb, InstanceRunning), withState(0xa, InstanceRunning)}, memberName(0xb)},
		{"self terminating, another running", []Instance{withState(0xa, InstanceTerminated), withState(0xb, InstanceRunning)}, memberName(0xb)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := OtherInstance(tt.group, self); got != tt.want {
				t.Errorf("OtherInstance(%v, %s) = %q, want %q", tt.group, self, got, tt.want)
			}
		})
	}
}

func TestSteadyListEveryWithinAPIBudget(t *testing.T) {
	// SPEC §7: at most 360 listings an hour in all; a steady cluster spends
	// at most a third of them.
	if perHour := int(time.Hour / SteadyListEvery); perHour > 120 {
		t.Errorf("SteadyListEvery = %v lists the group %d times an hour, want at most 120", SteadyListEvery, perHour)
	}
}
