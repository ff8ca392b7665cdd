// Package clustertest holds fixtures that the tests of several packages
// share: the table of unsafe removals that every removal path must refuse.
package clustertest

import "github.com/etcd-appliance/etcd-appliance/internal/cluster"

// UnsafeRemoval is a membership and a removal that the quorum rule refuses.
type UnsafeRemoval struct {
	Name    string
	Members []cluster.Member
	// Healthy are the members that answer; a member that never started
	// never does.
	Healthy map[cluster.ID]bool
	Target  cluster.ID
	Rule    cluster.Rule
}

// Member is a started member named i-<id>.
func Member(id cluster.ID, learner bool) cluster.Member {
	name := "i-" + id.String()
	return cluster.Member{ID: id, Name: name, IsLearner: learner,
		PeerURLs: []string{"http://" + name + ":2380"}, ClientURLs: []string{"http://" + name + ":2379"}}
}

// Unstarted is a voter named by a bootstrap that never ran: no client URLs.
func Unstarted(id cluster.ID) cluster.Member {
	m := Member(id, false)
	m.ClientURLs = nil
	return m
}

func voters(ids ...cluster.ID) []cluster.Member {
	var out []cluster.Member
	for _, id := range ids {
		out = append(out, Member(id, false))
	}
	return out
}

func up(ids ...cluster.ID) map[cluster.ID]bool {
	out := map[cluster.ID]bool{}
	for _, id := range ids {
		out[id] = true
	}
	return out
}

// UnsafeRemovals is the table every removal path is tested against.
func UnsafeRemovals() []UnsafeRemoval {
	return []UnsafeRemoval{
		{Name: "a voter that never started still counts in the quorum",
			Members: append(voters(0xa, 0xb), Unstarted(0xc)), Healthy: up(0xa, 0xb), Target: 0xa, Rule: cluster.RuleQuorum},
		{Name: "the remaining voters of three lack a healthy quorum",
			Members: voters(0xa, 0xb, 0xc), Healthy: up(0xa, 0xb), Target: 0xb, Rule: cluster.RuleQuorum},
		{Name: "the last voter",
			Members: voters(0xb), Healthy: up(0xb), Target: 0xb, Rule: cluster.RuleLastVoter},
		{Name: "the last voter, learners beside it",
			Members: append(voters(0xb), Member(0xc, true)), Healthy: up(0xb, 0xc), Target: 0xb, Rule: cluster.RuleLastVoter},
		{Name: "five voters, two down, a healthy one removed",
			Members: voters(0xa, 0xb, 0xc, 0xd, 0xe), Healthy: up(0xa, 0xb, 0xc), Target: 0xc, Rule: cluster.RuleQuorum},
		{Name: "healthy learners are no quorum",
			Members: append(voters(0xa, 0xb), Member(0xc, true), Member(0xd, true)), Healthy: up(0xa, 0xc, 0xd), Target: 0xa,
			Rule: cluster.RuleQuorum},
		{Name: "two voters, the other one down",
			Members: voters(0xa, 0xb), Healthy: up(0xa), Target: 0xa, Rule: cluster.RuleQuorum},
	}
}
