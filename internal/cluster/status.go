package cluster

import "time"

// Roles of a member in a status report.
const (
	RoleVoter     = "voter"
	RoleLearner   = "learner"
	RoleUnstarted = "unstarted"
)

// MemberStatus is one member's health as seen from the instance that reports.
type MemberStatus struct {
	ID        ID       `json:"id"`
	Name      string   `json:"name"`
	Role      string   `json:"role"`
	Healthy   bool     `json:"healthy"`
	Leader    bool     `json:"leader"`
	InGroup   bool     `json:"in_group"`
	Revision  int64    `json:"revision"`
	RaftIndex uint64   `json:"raft_index"`
	RaftTerm  uint64   `json:"raft_term"`
	DBSize    int64    `json:"db_size"`
	Version   string   `json:"version,omitempty"`
	Alarms    []string `json:"alarms,omitempty"`
	ClientURL string   `json:"client_url,omitempty"`
	PeerURL   string   `json:"peer_url,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// ClusterStatus is the whole-cluster health view of GET /v1/status.
type ClusterStatus struct {
	// Reporter is the instance that made the report.
	Reporter   string         `json:"reporter"`
	ObservedAt time.Time      `json:"observed_at"`
	ClusterID  ID             `json:"cluster_id"`
	Leader     ID             `json:"leader"`
	Members    []MemberStatus `json:"members"`
	GroupKnown bool           `json:"group_known"`
	Group      []Instance     `json:"group"`
	// Error says why no member list could be read, when none could.
	Error string `json:"error,omitempty"`
	// Waiting is the reporter's startup plan while it waits (no etcd
	// leader), and Unanswered the group instances it waits for.
	Waiting    string       `json:"waiting,omitempty"`
	Unanswered []Unanswered `json:"unanswered,omitempty"`
	// LastExit is why the reporter's etcd last exited, as classified from
	// its last log lines (data-corrupt, no-space, removed, …).
	LastExit string `json:"last_exit,omitempty"`
}

// HealthyVoters counts started, healthy voters.
func (s ClusterStatus) HealthyVoters() int {
	n := 0
	for _, m := range s.Members {
		if m.Role == RoleVoter && m.Healthy {
			n++
		}
	}
	return n
}
