package cluster

import (
	"slices"
	"sort"
)

// The states of etcd's --initial-cluster-state.
const (
	StateNew      = "new"
	StateExisting = "existing"
)

// Launch is how etcd is started for a plan: the cluster it starts with and
// the voters recorded for the member it runs, before it runs (§4.2).
type Launch struct {
	// InitialCluster is etcd's --initial-cluster; State its
	// --initial-cluster-state; Token its --initial-cluster-token.
	InitialCluster []NamedPeer `json:"initial_cluster"`
	State          string      `json:"state"`
	Token          string      `json:"token"`
	// ForceNewCluster makes etcd drop every other member from the data's
	// membership: the first step of a survivor's recovery (§4.6).
	ForceNewCluster bool `json:"force_new_cluster,omitempty"`
	// ClientPort, when not 0, replaces the instance's client port: a
	// survivor's forced etcd listens where no client looks for it.
	ClientPort int `json:"client_port,omitempty"`
	// Voters are the voters of the member's cluster as etcd will start
	// it, recorded with the member's identity (nil: keep the recorded ones).
	Voters []string `json:"voters,omitempty"`
	// Timing is etcd's raft timing; zero for etcd's defaults.
	Timing Timing `json:"timing,omitzero"`
}

// LaunchOnData starts etcd on the data it has: etcd takes the membership
// from its WAL, and the flags name only the member itself.
func LaunchOnData(self, selfPeerURL, token string) Launch {
	return Launch{InitialCluster: []NamedPeer{{Name: self, PeerURL: selfPeerURL}}, State: StateExisting, Token: token}
}

// LaunchForced starts etcd on its data as the one member of the data's
// cluster, which keeps its id: a survivor applies all that its log holds
// before its data becomes a new cluster.
func LaunchForced(self, selfPeerURL, token string) Launch {
	l := LaunchOnData(self, selfPeerURL, token)
	l.ForceNewCluster = true
	return l
}

// LaunchNewCluster starts etcd as the one member of a new cluster: a
// recovery or a restore, whose data was made for exactly this member.
func LaunchNewCluster(self, selfPeerURL, token string) Launch {
	return Launch{InitialCluster: []NamedPeer{{Name: self, PeerURL: selfPeerURL}}, State: StateNew, Token: token,
		Voters: []string{self}}
}

// LaunchOffer starts etcd as a member of a bootstrap offer: every member of
// the offer is a voter from the start.
func LaunchOffer(o *BootstrapOffer) Launch {
	l := Launch{InitialCluster: slices.Clone(o.Members), State: StateNew, Token: o.Token, Timing: o.Timing}
	for _, m := range o.Members {
		l.Voters = append(l.Voters, m.Name)
	}
	sort.Strings(l.Voters)
	return l
}

// LaunchJoin starts etcd as a member added to the live cluster whose
// members are ms: etcd checks --initial-cluster against the membership, so
// it lists every member, this instance's entry under its own name.
func LaunchJoin(ms []Member, self, selfPeerURL, token string) Launch {
	l := Launch{State: StateExisting, Token: token, Voters: VoterNames(ms)}
	for _, m := range ms {
		name := m.Name
		switch {
		case m.HasPeerURL(selfPeerURL):
			name = self
		case name == "":
			// An added member that never started has no name yet; etcd
			// matches the entries by peer URL, so any unique name does.
			name = "unstarted-" + m.ID.String()
		}
		for _, u := range m.PeerURLs {
			l.InitialCluster = append(l.InitialCluster, NamedPeer{Name: name, PeerURL: u})
		}
	}
	return l
}

// VoterNames are the sorted names of the voters among ms, nil when a voter
// has no name: it could not be matched with an instance, and a list that
// omits it would undercount the voters.
func VoterNames(ms []Member) []string {
	var voters []string
	for _, m := range ms {
		if m.IsLearner {
			continue
		}
		if m.Name == "" {
			return nil
		}
		voters = append(voters, m.Name)
	}
	sort.Strings(voters)
	return voters
}

// ExitMakesDataUnusable reports whether an etcd exit of this kind (as
// internal/etcd classifies its last lines) condemns the local data. Only
// corruption does: a cluster-id mismatch is also logged by healthy members
// that meet a foreign peer, so it is left to the startup plan, which
// compares ids with the live cluster.
func ExitMakesDataUnusable(kind string) bool { return kind == "data-corrupt" }
