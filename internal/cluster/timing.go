package cluster

import (
	"fmt"
	"log/slog"
	"time"
)

// Timing is etcd's raft timing: --heartbeat-interval and --election-timeout,
// in milliseconds. The zero Timing leaves etcd's defaults (100 ms, 1 s),
// which suit members in one region.
type Timing struct {
	HeartbeatMS int `json:"heartbeat_ms"`
	ElectionMS  int `json:"election_ms"`
}

// IsZero reports whether t leaves etcd's defaults.
func (t Timing) IsZero() bool { return t.HeartbeatMS == 0 && t.ElectionMS == 0 }

func (t Timing) String() string {
	if t.IsZero() {
		return "etcd's defaults"
	}
	return fmt.Sprintf("heartbeat %d ms, election timeout %d ms", t.HeartbeatMS, t.ElectionMS)
}

// LogValue logs t as its String in every log format.
func (t Timing) LogValue() slog.Value { return slog.StringValue(t.String()) }

// etcd refuses an election timeout above 50 s, or below 5 heartbeats.
const (
	maxElectionMS     = 50000
	electionPerBeat   = 5
	defaultHeartbeat  = 100
	defaultElectionMS = 1000
)

// Validate checks t as etcd would: both set or neither, the election
// timeout at least 5 heartbeats and at most 50 s.
func (t Timing) Validate() error {
	switch {
	case t.IsZero():
		return nil
	case t.HeartbeatMS <= 0 || t.ElectionMS <= 0:
		return fmt.Errorf("set both the heartbeat interval and the election timeout, or neither (%s)", t)
	case t.ElectionMS < electionPerBeat*t.HeartbeatMS:
		return fmt.Errorf("the election timeout %d ms must be at least 5 heartbeat intervals (%d ms)", t.ElectionMS, electionPerBeat*t.HeartbeatMS)
	case t.ElectionMS > maxElectionMS:
		return fmt.Errorf("the election timeout %d ms is above etcd's limit of %d ms", t.ElectionMS, maxElectionMS)
	}
	return nil
}

// DeriveTiming is the timing for members rtt apart (the longest round trip
// between two of them), after etcd's tuning guide: a heartbeat of about the
// round trip (1.5 × here, for its jitter), an election timeout of 10
// heartbeats, so at least 10 round trips. Never below etcd's defaults:
// members close together keep them.
func DeriveTiming(rtt time.Duration) Timing {
	ms := int((rtt*3/2 + time.Millisecond - 1) / time.Millisecond)
	hb := max(defaultHeartbeat, (ms+9)/10*10)
	et := min(maxElectionMS, max(defaultElectionMS, 10*hb))
	return Timing{HeartbeatMS: min(hb, et/electionPerBeat), ElectionMS: et}
}

// PublishedTiming is the timing the running members publish: the one a
// joiner takes, so that every member runs alike. With several (a rolling
// change of the timing in progress), the longest election timeout: the
// safe side.
func PublishedTiming(peers map[string]PeerAnswer) Timing {
	var t Timing
	for _, p := range peers {
		if p.Reachable && p.State.EtcdRunning && p.State.Timing != nil && p.State.Timing.ElectionMS > t.ElectionMS {
			t = *p.State.Timing
		}
	}
	return t
}

// LongestRTT is the longest round trip to a peer that answered, 0 when none
// was measured.
func LongestRTT(peers map[string]PeerAnswer) time.Duration {
	var longest time.Duration
	for _, p := range peers {
		if p.Reachable {
			longest = max(longest, p.RTT)
		}
	}
	return longest
}
