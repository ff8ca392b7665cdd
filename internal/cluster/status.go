package cluster

import (
	"fmt"
	"strings"
	"time"
)

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
	// PublicIP is the public IPv4 address of the member's instance, as the
	// group lists it (multi-region mode): what the cluster name's A record
	// holds for a member that advertises a host name.
	PublicIP string `json:"public_ip,omitempty"`
	Error    string `json:"error,omitempty"`
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
	// TLS is the reporter's TLS with --tls auto: the CAs it and its etcd
	// trust, the issuer of its certificate, a CA rotation's progress.
	TLS *TLSStatus `json:"tls,omitempty"`
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

// Problems lists what keeps the cluster from full health, empty when it is
// healthy: a member list was read, a leader is known, every member is a
// started, healthy voter without alarms, and the reporter waits for
// nothing. A cluster with problems but a healthy quorum still serves; the
// list says what an operator (or a rolling change) should wait for.
func (s ClusterStatus) Problems() []string {
	var out []string
	if s.Error != "" {
		out = append(out, "no member list: "+s.Error)
	}
	if s.Error == "" && s.Leader == 0 {
		out = append(out, "no leader")
	}
	for _, m := range s.Members {
		name := m.Name
		if name == "" {
			name = m.ID.String()
		}
		switch {
		case m.Role == RoleLearner:
			out = append(out, fmt.Sprintf("member %s is a learner, not promoted yet", name))
		case m.Role != RoleVoter:
			out = append(out, fmt.Sprintf("member %s has not started", name))
		case !m.Healthy:
			out = append(out, fmt.Sprintf("voter %s is unhealthy", name))
		}
		if len(m.Alarms) > 0 {
			out = append(out, fmt.Sprintf("member %s raises %s", name, strings.Join(m.Alarms, ",")))
		}
	}
	if s.Waiting != "" {
		out = append(out, fmt.Sprintf("%s waits: %s", s.Reporter, s.Waiting))
	}
	return out
}
