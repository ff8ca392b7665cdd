package cluster

import (
	"strings"
	"testing"
)

func TestCheckDrain(t *testing.T) {
	group := func(states map[string]InstanceState) []Instance {
		var out []Instance
		for id, st := range states {
			out = append(out, Instance{ID: id, State: st})
		}
		return out
	}
	all := voters(0xa, 0xb, 0xc)
	tests := []struct {
		name    string
		ms      []Member
		healthy map[ID]bool
		group   []Instance
		target  ID
		desired int
		want    string // "" allowed
	}{
		{"full strength: the serving voter goes", all, healthy(0xa, 0xb, 0xc),
			group(map[string]InstanceState{"i-a": InstanceTerminating, "i-b": InstanceRunning, "i-c": InstanceRunning}), 0xa, 0, ""},
		{"a member that does not serve costs nothing", all, healthy(0xb, 0xc),
			group(map[string]InstanceState{"i-a": InstanceTerminated, "i-b": InstanceRunning, "i-c": InstanceRunning}), 0xa, 0, ""},
		{"a learner costs nothing", append(voters(0xa, 0xb), learner(0xc)), healthy(0xa, 0xb, 0xc),
			group(map[string]InstanceState{"i-a": InstanceRunning, "i-b": InstanceRunning, "i-c": InstanceTerminating}), 0xc, 0, ""},
		{"another voter down", all, healthy(0xa, 0xb),
			group(map[string]InstanceState{"i-a": InstanceTerminating, "i-b": InstanceRunning, "i-c": InstanceRunning}), 0xa, 0, "voter c (i-c) is not healthy"},
		{"a learner pending", append(voters(0xa, 0xb, 0xc), learner(0xd)), healthy(0xa, 0xb, 0xc, 0xd),
			group(map[string]InstanceState{"i-a": InstanceTerminating, "i-b": InstanceRunning, "i-c": InstanceRunning, "i-d": InstanceRunning}), 0xa, 0,
			"member d (i-d) is a learner, not promoted yet"},
		{"an unstarted member", append(voters(0xa, 0xb, 0xc), unstarted(0xd)), healthy(0xa, 0xb, 0xc),
			group(map[string]InstanceState{"i-a": InstanceTerminating, "i-b": InstanceRunning, "i-c": InstanceRunning}), 0xa, 0, "member d has not started yet"},
		{"a newcomer not a member yet", all, healthy(0xa, 0xb, 0xc),
			group(map[string]InstanceState{"i-a": InstanceTerminating, "i-b": InstanceRunning, "i-c": InstanceRunning, "i-d": InstancePending}), 0xa, 0,
			"instance i-d of the group is not a member yet"},
		{"two leaving at once: the higher id waits", all, healthy(0xa, 0xb, 0xc),
			group(map[string]InstanceState{"i-a": InstanceTerminating, "i-b": InstanceTerminating, "i-c": InstanceRunning}), 0xb, 0,
			"voter a (i-a) leaves the group too and goes first"},
		{"two leaving at once: the lower id goes", all, healthy(0xa, 0xb, 0xc),
			group(map[string]InstanceState{"i-a": InstanceTerminating, "i-b": InstanceTerminating, "i-c": InstanceRunning}), 0xa, 0, ""},
		{"one left before its replacement is listed: the next waits for the group's size", voters(0xb, 0xc), healthy(0xb, 0xc),
			group(map[string]InstanceState{"i-a": InstanceTerminated, "i-b": InstanceTerminating, "i-c": InstanceRunning}), 0xb, 3,
			"only 1 serving voters would stay, for a group of 3"},
		{"its replacement a voter: the next goes", voters(0xb, 0xc, 0xd), healthy(0xb, 0xc, 0xd),
			group(map[string]InstanceState{"i-a": InstanceTerminated, "i-b": InstanceTerminating, "i-c": InstanceRunning, "i-d": InstanceRunning}), 0xb, 3, ""},
		{"two leaving at once, no replacement listed yet: the first goes", voters(0xa, 0xb, 0xc), healthy(0xa, 0xb, 0xc),
			group(map[string]InstanceState{"i-a": InstanceTerminating, "i-b": InstanceTerminating, "i-c": InstanceRunning}), 0xa, 3, ""},
		{"a scale-in: the desired capacity went down with it", voters(0xb, 0xc), healthy(0xb, 0xc),
			group(map[string]InstanceState{"i-a": InstanceTerminated, "i-b": InstanceTerminating, "i-c": InstanceRunning}), 0xb, 1, ""},
	}
	for _, tt := range tests {
		h := CheckDrain(tt.ms, tt.healthy, tt.group, tt.desired, tt.target)
		switch {
		case tt.want == "" && h != nil:
			t.Errorf("%s: held (%s), want allowed", tt.name, h.Why)
		case tt.want != "" && (h == nil || h.Rule != RuleFullStrength || !strings.Contains(h.Why, tt.want)):
			t.Errorf("%s: %v, want a %s hold saying %q", tt.name, h, RuleFullStrength, tt.want)
		}
	}
}
