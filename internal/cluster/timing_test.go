package cluster

import (
	"testing"
	"time"
)

func TestDeriveTiming(t *testing.T) {
	for _, tc := range []struct {
		rtt  time.Duration
		want Timing
	}{
		{0, Timing{100, 1000}},                      // one region: etcd's defaults
		{2 * time.Millisecond, Timing{100, 1000}},   // across zones
		{80 * time.Millisecond, Timing{120, 1200}},  // us-east-1 ↔ eu-west-1
		{200 * time.Millisecond, Timing{300, 3000}}, // US ↔ Asia
		{time.Second, Timing{1500, 15000}},
		{10 * time.Second, Timing{10000, 50000}}, // etcd's cap of 50 s, 5 heartbeats
	} {
		got := DeriveTiming(tc.rtt)
		if got != tc.want {
			t.Errorf("DeriveTiming(%s) = %+v, want %+v", tc.rtt, got, tc.want)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("DeriveTiming(%s) = %+v, which etcd refuses: %v", tc.rtt, got, err)
		}
		if got.ElectionMS < int(10*tc.rtt/time.Millisecond) && got.ElectionMS < maxElectionMS {
			t.Errorf("DeriveTiming(%s): election timeout %d ms below 10 round trips", tc.rtt, got.ElectionMS)
		}
	}
}

func TestTimingValidate(t *testing.T) {
	for _, tc := range []struct {
		t  Timing
		ok bool
	}{
		{Timing{}, true},
		{Timing{100, 1000}, true},
		{Timing{100, 0}, false},
		{Timing{0, 1000}, false},
		{Timing{300, 1000}, false},
		{Timing{1000, 60000}, false},
	} {
		if err := tc.t.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v.Validate() = %v, want ok %v", tc.t, err, tc.ok)
		}
	}
}

func TestPublishedTimingAndLongestRTT(t *testing.T) {
	slow := Timing{300, 3000}
	fast := Timing{120, 1200}
	peers := map[string]PeerAnswer{
		"i-1": {Reachable: true, RTT: 80 * time.Millisecond, State: PeerState{EtcdRunning: true, Timing: &fast}},
		"i-2": {Reachable: true, RTT: 200 * time.Millisecond, State: PeerState{EtcdRunning: true, Timing: &slow}},
		"i-3": {Reachable: true, RTT: 5 * time.Millisecond, State: PeerState{EtcdRunning: false, Timing: &Timing{500, 5000}}},
		"i-4": {Reachable: false, RTT: time.Second},
	}
	if got := PublishedTiming(peers); got != slow {
		t.Errorf("PublishedTiming = %+v, want the running members' longest %+v", got, slow)
	}
	if got := LongestRTT(peers); got != 200*time.Millisecond {
		t.Errorf("LongestRTT = %s, want 200ms (unreachable peers don't count)", got)
	}
	if got := PublishedTiming(map[string]PeerAnswer{"i-1": {Reachable: true, State: PeerState{EtcdRunning: true}}}); !got.IsZero() {
		t.Errorf("PublishedTiming of a member on etcd's defaults = %+v, want zero", got)
	}
}
