package cluster

import (
	"slices"
	"strings"
	"testing"
)

func TestStatusProblems(t *testing.T) {
	healthy := ClusterStatus{Reporter: "i-a", Leader: 0xa, Members: []MemberStatus{
		{ID: 0xa, Name: "i-a", Role: RoleVoter, Healthy: true, Leader: true},
		{ID: 0xb, Name: "i-b", Role: RoleVoter, Healthy: true},
		{ID: 0xc, Name: "i-c", Role: RoleVoter, Healthy: true},
	}}
	with := func(edit func(s *ClusterStatus)) ClusterStatus {
		s := healthy
		s.Members = slices.Clone(healthy.Members)
		edit(&s)
		return s
	}
	tests := []struct {
		name string
		st   ClusterStatus
		want string // a problem's text; "" for none
	}{
		{"every member a healthy voter", healthy, ""},
		{"an unhealthy voter", with(func(s *ClusterStatus) { s.Members[1].Healthy = false }), "voter i-b is unhealthy"},
		{"a learner", with(func(s *ClusterStatus) { s.Members[2].Role = RoleLearner }), "member i-c is a learner"},
		{"an unstarted member", with(func(s *ClusterStatus) { s.Members[2].Role, s.Members[2].Name = RoleUnstarted, "" }), "member c has not started"},
		{"an alarm", with(func(s *ClusterStatus) { s.Members[0].Alarms = []string{"NOSPACE"} }), "member i-a raises NOSPACE"},
		{"no leader", with(func(s *ClusterStatus) { s.Leader = 0 }), "no leader"},
		{"no member list", ClusterStatus{Reporter: "i-a", Error: "context deadline exceeded"}, "no member list: context deadline exceeded"},
		{"the reporter waits", with(func(s *ClusterStatus) { s.Waiting = "peer i-d did not answer" }), "i-a waits: peer i-d did not answer"},
	}
	for _, tt := range tests {
		got := tt.st.Problems()
		if tt.want == "" {
			if len(got) != 0 {
				t.Errorf("%s: problems %q, want none", tt.name, got)
			}
			continue
		}
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tt.want) }) {
			t.Errorf("%s: problems %q, want one saying %q", tt.name, got, tt.want)
		}
	}
}
