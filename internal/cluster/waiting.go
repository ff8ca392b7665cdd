package cluster

import (
	"sort"
	"time"
)

// Unanswered is a group instance that did not answer GET /v1/peer. A cluster
// is created or recovered only when every instance of the group answers
// (§4.2, §4.6), so one listed but dead instance holds both: it is reported,
// never skipped.
type Unanswered struct {
	Instance string    `json:"instance"`
	Address  string    `json:"address"`
	Since    time.Time `json:"since"`
	// Ignored says why, when the instance answered and its answer was
	// ignored: it runs with another --tls or CA.
	Ignored IgnoredAnswer `json:"ignored,omitempty"`
}

// TrackUnanswered updates since (instance id → when it was first seen not
// answering) with the answers of one round and returns the next memory and
// the instances that still did not answer, longest first. An instance that
// answered, or left the group, is forgotten.
func TrackUnanswered(since map[string]time.Time, group []Instance, peers map[string]PeerAnswer, self string,
	now time.Time) (map[string]time.Time, []Unanswered) {
	next := map[string]time.Time{}
	var out []Unanswered
	for _, inst := range group {
		if inst.ID == self || !inst.State.InGroup() {
			continue
		}
		a, ok := peers[inst.ID]
		if ok && a.Reachable {
			continue
		}
		first, seen := since[inst.ID]
		if !seen {
			first = now
		}
		next[inst.ID] = first
		out = append(out, Unanswered{Instance: inst.ID, Address: inst.Address, Since: first, Ignored: a.Ignored})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Since.Equal(out[j].Since) {
			return out[i].Since.Before(out[j].Since)
		}
		return out[i].Instance < out[j].Instance
	})
	return next, out
}
