package cluster

import (
	"reflect"
	"testing"
	"time"
)

func TestTrackUnanswered(t *testing.T) {
	group := []Instance{
		{ID: "i-1", Address: "10.0.0.1", State: InstanceRunning},
		{ID: "i-2", Address: "10.0.0.2", State: InstanceRunning},
		{ID: "i-3", Address: "10.0.0.3", State: InstancePending},
		{ID: "i-4", Address: "10.0.0.4", State: InstanceTerminated},
	}
	answered := func(ids ...string) map[string]PeerAnswer {
		out := map[string]PeerAnswer{}
		for _, id := range ids {
			out[id] = PeerAnswer{Reachable: true}
		}
		return out
	}
	since, got := TrackUnanswered(nil, group, answered("i-1"), "i-1", t0)
	want := []Unanswered{{Instance: "i-2", Address: "10.0.0.2", Since: t0}, {Instance: "i-3", Address: "10.0.0.3", Since: t0}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("first round: %+v, want %+v (self and terminated instances never count)", got, want)
	}
	later := t0.Add(time.Minute)
	since, got = TrackUnanswered(since, group, answered("i-1", "i-3"), "i-1", later)
	if want := []Unanswered{{Instance: "i-2", Address: "10.0.0.2", Since: t0}}; !reflect.DeepEqual(got, want) {
		t.Errorf("second round: %+v, want i-2 since the first round", got)
	}
	// i-3 answered: forgotten, so a later silence starts a new clock.
	_, got = TrackUnanswered(since, group, answered("i-1", "i-2"), "i-1", later.Add(time.Minute))
	if want := []Unanswered{{Instance: "i-3", Address: "10.0.0.3", Since: later.Add(time.Minute)}}; !reflect.DeepEqual(got, want) {
		t.Errorf("third round: %+v, want i-3 since now", got)
	}
	// An unreachable answer is no answer.
	_, got = TrackUnanswered(nil, group[:2], map[string]PeerAnswer{"i-2": {Reachable: false}}, "i-1", t0)
	if len(got) != 1 || got[0].Instance != "i-2" {
		t.Errorf("unreachable answer: %+v, want i-2 unanswered", got)
	}
}

// TestTrackUnansweredSaysWhyAnAnswerWasIgnored: an answer ignored for
// another --tls is unanswered, and says so.
func TestTrackUnansweredSaysWhyAnAnswerWasIgnored(t *testing.T) {
	group := []Instance{{ID: "i-1", State: InstanceRunning}, {ID: "i-2", Address: "10.0.0.2", State: InstanceRunning}}
	_, got := TrackUnanswered(nil, group, map[string]PeerAnswer{"i-2": {Ignored: PeerRunsTLS}}, "i-1", t0)
	want := []Unanswered{{Instance: "i-2", Address: "10.0.0.2", Since: t0, Ignored: PeerRunsTLS}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%+v, want %+v", got, want)
	}
}
