// Package cluster holds the appliance's decisions as pure functions: the
// startup plan (§4.2), the housekeeping plan (§4.4) and the quorum arithmetic
// they share. Nothing here performs I/O or reads the clock; callers gather the
// inputs (including Now), call a decide function and apply its result. The
// safety rules of the product live here so that they can be tested exhaustively
// with tables.
package cluster

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"
)

// ID is an etcd member or cluster id. It reads as hex, as etcd prints it.
type ID uint64

func (id ID) String() string { return strconv.FormatUint(uint64(id), 16) }

// MarshalText writes the id as hex so that JSON and logs agree with etcdctl.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText reads a hex id.
func (id *ID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*id = 0
		return nil
	}
	v, err := strconv.ParseUint(string(b), 16, 64)
	if err != nil {
		return fmt.Errorf("parsing id %q: %w", b, err)
	}
	*id = ID(v)
	return nil
}

// InstanceState is the life state of a group instance as the provider sees it.
type InstanceState string

const (
	InstancePending    InstanceState = "pending"
	InstanceRunning    InstanceState = "running"
	InstanceStopping   InstanceState = "stopping"
	InstanceStopped    InstanceState = "stopped"
	InstanceTerminated InstanceState = "terminated"
	// InstanceTerminating: the group is terminating the instance, and a
	// lifecycle hook may hold it while it drains: gone for good, but its
	// etcd may still serve until it has left.
	InstanceTerminating InstanceState = "terminating"
)

// Gone reports whether the instance is out of the group for good:
// terminated, or being terminated.
func (s InstanceState) Gone() bool { return s == InstanceTerminated || s == InstanceTerminating }

// InGroup reports whether an instance in this state counts as part of the
// group that should form the cluster.
func (s InstanceState) InGroup() bool {
	return s == InstancePending || s == InstanceRunning
}

// Instance is a machine of the group. Its ID is also its etcd member name.
type Instance struct {
	ID string `json:"id"`
	// Address is where peers reach the instance: its IP, or in multi-region
	// mode its public DNS name.
	Address string        `json:"address"`
	State   InstanceState `json:"state"`
	Region  string        `json:"region,omitempty"`
	Zone    string        `json:"zone,omitempty"`
	// BindAddress is the IP the instance serves on when Address is not one
	// of its own (multi-region: the private IP, to which EC2 NATs the
	// public address); empty: Address.
	BindAddress string `json:"bind_address,omitempty"`
	// PublicIP is the instance's public IPv4 address, if it has one: the
	// source address its traffic to other regions comes from.
	PublicIP string `json:"public_ip,omitempty"`
}

// Ports are the TCP ports an instance serves on its own address.
type Ports struct {
	Client  int `json:"client"`
	Peer    int `json:"peer"`
	Metrics int `json:"metrics"`
	API     int `json:"api"`
}

// DefaultPorts are the ports of SPEC §5.
var DefaultPorts = Ports{Client: 2379, Peer: 2380, Metrics: 2381, API: 2378}

// PeerURL is the etcd peer URL of an instance.
func (p Ports) PeerURL(scheme, address string) string {
	return scheme + "://" + net.JoinHostPort(address, strconv.Itoa(p.Peer))
}

// ClientURL is the etcd client URL of an instance.
func (p Ports) ClientURL(scheme, address string) string {
	return scheme + "://" + net.JoinHostPort(address, strconv.Itoa(p.Client))
}

// Member is an etcd cluster member as the member list reports it.
type Member struct {
	ID         ID       `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peer_urls"`
	ClientURLs []string `json:"client_urls"`
	IsLearner  bool     `json:"is_learner"`
}

// Started reports whether the member's etcd has ever run: a started member
// publishes its client URLs. (Members of a bootstrap's --initial-cluster get
// their names at once, so a name alone proves nothing.)
func (m Member) Started() bool { return len(m.ClientURLs) > 0 }

// HasPeerHost reports whether one of the member's peer URLs points at address.
func (m Member) HasPeerHost(address string) bool {
	if address == "" {
		return false
	}
	for _, u := range m.PeerURLs {
		if hostOf(u) == address {
			return true
		}
	}
	return false
}

// HasPeerURL reports whether u is one of the member's peer URLs.
func (m Member) HasPeerURL(u string) bool {
	for _, p := range m.PeerURLs {
		if p == u {
			return true
		}
	}
	return false
}

func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// ClusterView is what a live member told us about the cluster. A view exists
// only when a member answered a linearizable member list, that is, when the
// cluster has quorum.
type ClusterView struct {
	ClusterID ID       `json:"cluster_id"`
	Members   []Member `json:"members"`
}

// MemberByName returns the member named name.
func (v *ClusterView) MemberByName(name string) (Member, bool) {
	if name == "" {
		return Member{}, false
	}
	for _, m := range v.Members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// PeerState is what an instance publishes about itself on GET /v1/peer.
type PeerState struct {
	InstanceID  string `json:"instance_id"`
	Address     string `json:"address"`
	EtcdRunning bool   `json:"etcd_running"`
	// HasLeader is true when the instance's etcd last knew a leader; only
	// such peers are asked for the member list.
	HasLeader bool `json:"has_leader"`
	// HasData is true when the instance's data dir holds etcd data.
	HasData bool `json:"has_data"`
	// ClusterID and MemberID identify the data the instance holds (zero if unknown).
	ClusterID ID `json:"cluster_id"`
	MemberID  ID `json:"member_id"`
	// Revision is the newest revision of the local data, 0 when unknown.
	// While etcd does not serve it is the one recorded in the marker, which
	// can be seconds old: Log is the exact measure.
	Revision int64 `json:"revision"`
	// Log is the position of the last entry of the local raft log, as the
	// WAL holds it (zero when unknown): what a recovery on this data keeps
	// (§4.6).
	Log         LogPosition `json:"raft_log,omitzero"`
	EtcdVersion string      `json:"etcd_version"`
	ClientURL   string      `json:"client_url"`
	PeerURL     string      `json:"peer_url"`
	// Phase is what the appliance is doing (planning, starting, running...).
	Phase Phase `json:"phase"`
	// GroupView is the sorted ids of the group as this instance last listed
	// it. A cluster is created only when every instance sees the same group,
	// so two instances with different listings can't both seed a cluster.
	GroupView []string `json:"group_view"`
	// Offer is the bootstrap offer this instance takes part in, if any.
	Offer *BootstrapOffer `json:"bootstrap_offer,omitempty"`
	// Voters are the names of the voters of the cluster of the local data,
	// as its members last listed them: who must be gone for its quorum to
	// be lost for good (§4.6).
	Voters []string `json:"voters,omitempty"`
	// LastExit is why the instance's etcd last exited, as classified from
	// its last log lines; empty while it never exited.
	LastExit string `json:"last_exit,omitempty"`
	// Timing is the raft timing the instance's etcd was started with; nil
	// for etcd's defaults.
	Timing *Timing `json:"etcd_timing,omitempty"`
}

// NamedPeer is one entry of etcd's --initial-cluster.
type NamedPeer struct {
	Name    string `json:"name"`
	PeerURL string `json:"peer_url"`
}

// BootstrapOffer is how a cluster is created: the seeder publishes the
// initial members (the whole agreed group) and a token unique to this
// creation, and every listed instance starts etcd with exactly these, so the
// group forms one cluster at once instead of growing one member at a time.
type BootstrapOffer struct {
	Token   string      `json:"token"`
	Members []NamedPeer `json:"members"`
	// Timing is the raft timing every member of the new cluster starts
	// with, decided by the seeder (multi-region: from the round trips it
	// measured); zero for etcd's defaults.
	Timing Timing `json:"timing,omitzero"`
}

// Lists reports whether the offer names the instance at its address.
func (o *BootstrapOffer) Lists(self Instance) bool {
	for _, m := range o.Members {
		if m.Name == self.ID && hostOf(m.PeerURL) == self.Address {
			return true
		}
	}
	return false
}

// Names are the names of the offer's members, in the offer's order.
func (o *BootstrapOffer) Names() []string {
	var names []string
	for _, m := range o.Members {
		names = append(names, m.Name)
	}
	return names
}

// Dead reports whether the offer can never form its cluster: fewer of its
// members remain in the group than a quorum of them, the others (gone) being
// terminated or absent from the listing, which they never come back from.
// Its cluster, if it never had a leader, never gets one; only data already
// created on it could still matter.
func (o *BootstrapOffer) Dead(group []Instance) (gone []string, dead bool) {
	for _, m := range o.Members {
		if instanceGone(group, m.Name) {
			gone = append(gone, m.Name)
		}
	}
	return gone, len(o.Members)-len(gone) < Quorum(len(o.Members))
}

// Phase is what an appliance is doing, as published in its PeerState.
type Phase string

const (
	PhasePlanning Phase = "planning"
	// PhaseStarting: a plan other than wait is being applied; etcd may be
	// about to create data.
	PhaseStarting Phase = "starting"
	PhaseRunning  Phase = "running"
	PhaseLeaving  Phase = "leaving"
	PhaseStopped  Phase = "stopped"
)

// GroupView is the sorted ids of the instances that count as the group.
func GroupView(all []Instance) []string {
	var ids []string
	for _, inst := range groupMembers(all) {
		ids = append(ids, inst.ID)
	}
	return ids
}

// PeerAnswer is the outcome of asking one instance for its PeerState.
type PeerAnswer struct {
	Reachable bool      `json:"reachable"`
	State     PeerState `json:"state"`
	// RTT is the round trip of the request, from its last byte sent to the
	// answer's first byte received: the network's delay to the peer.
	RTT time.Duration `json:"rtt,omitempty"`
	// Ignored says why something answered at the peer's address and its
	// answer was ignored (Reachable is then false): it is not a member of
	// this instance's cluster as far as TLS can tell.
	Ignored IgnoredAnswer `json:"ignored,omitempty"`
}

// IgnoredAnswer is why a peer's answer was ignored. Every instance of a
// cluster must run with the same --tls and CA: until they do, an instance
// neither joins nor trusts the ones that differ, and says which and why.
type IgnoredAnswer string

const (
	// PeerRunsTLS: the peer's API speaks TLS, this instance runs with --tls off.
	PeerRunsTLS IgnoredAnswer = "runs with TLS, this instance without"
	// PeerRunsPlaintext: the peer's API speaks plaintext, this instance runs with TLS.
	PeerRunsPlaintext IgnoredAnswer = "runs without TLS, this instance with"
	// PeerUntrusted: the peer shows no member certificate of this
	// instance's cluster CA for its address (another CA, a user's).
	PeerUntrusted IgnoredAnswer = "shows no member certificate of this instance's cluster CA"
)

// LocalData describes the instance's own data dir.
type LocalData struct {
	// Exists is true when the data dir holds etcd data (a WAL).
	Exists bool `json:"exists"`
	// Known is true when the appliance recorded which cluster and member the
	// data belongs to.
	Known     bool  `json:"known"`
	ClusterID ID    `json:"cluster_id"`
	MemberID  ID    `json:"member_id"`
	Revision  int64 `json:"revision"`
	// Log is the position of the last entry of the WAL, zero when it
	// could not be read.
	Log LogPosition `json:"raft_log,omitzero"`
	// Unusable says why etcd could not run on the data (corrupt, or of
	// another cluster), as learned from etcd's last exit; empty when usable.
	Unusable string `json:"unusable,omitempty"`
	// Offer is a bootstrap offer this instance accepted and recorded before
	// its etcd created any data; it is started again with the same offer.
	Offer *BootstrapOffer `json:"offer,omitempty"`
	// Voters are the names of the voters of the data's cluster, as last
	// recorded.
	Voters []string `json:"voters,omitempty"`
}
