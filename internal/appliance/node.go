package appliance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/config"
)

// node is what every loop of one instance shares: who the instance is, where
// it serves, its data dir, and the state it publishes on /v1/peer. The loops
// (startup, supervision, housekeeping, snapshots, drain) each own their
// memory; only what is here is seen by more than one of them.
type node struct {
	cfg     *config.Config
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	data    dataDir
	dial    dialer
	groups  *groupLister

	self    cluster.Instance
	address string
	ports   cluster.Ports
	// tls is the instance's TLS, nil with --tls off; set once, before the
	// loops start.
	tls *memberTLS
	// peerHTTP: the member's peer URL in the membership is http (set by
	// checkScheme, changed by a switch in turn). It differs from what
	// --tls and --tls-plaintext-peers want while the member moves its peers
	// between plaintext and TLS. Not under mu: the peer state's setters
	// read the peer URL under it.
	peerHTTP atomic.Bool

	mu    sync.Mutex
	peer  cluster.PeerState
	ready bool // the local member is started, healthy and a voter
	// unusable says why etcd could not run on the local data, from its last
	// exit; cleared when the data is wiped or etcd runs well on it again.
	unusable string
	// timing is the raft timing etcd starts with next (the starter decides
	// it for each plan; the launcher reads it).
	timing cluster.Timing
	// waiting is the startup plan's reason while it waits, and unanswered
	// the group instances it waits for, for /v1/status.
	waiting    string
	unanswered []cluster.Unanswered
}

func (n *node) setPeerHTTP(http bool) { n.peerHTTP.Store(http) }

// wantPeerScheme is the scheme --tls and --tls-plaintext-peers want of the
// peer URL.
func (n *node) wantPeerScheme() string {
	if n.tls == nil || n.cfg.TLSPlaintextPeers {
		return "http"
	}
	return "https"
}

// peersMoving reports whether the member's peer URL is not in the scheme
// wanted yet: it switches in its turn (movePeers).
func (n *node) peersMoving() bool { return n.peerScheme() != n.wantPeerScheme() }

// setTiming sets the raft timing etcd starts with next.
func (n *node) setTiming(t cluster.Timing) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.timing = t
}

func (n *node) etcdTiming() cluster.Timing {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.timing
}

// setWaiting records what the startup plan waits for ("" when it acts).
func (n *node) setWaiting(reason string, unanswered []cluster.Unanswered) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.waiting, n.unanswered = reason, unanswered
}

func (n *node) waitingFor() (string, []cluster.Unanswered) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.waiting, n.unanswered
}

// identified records the instance's identity; --address overrides the
// address the provider gave.
func (n *node) identified(self cluster.Instance) {
	n.self, n.address = self, self.Address
	if n.cfg.Address != "" {
		n.address = n.cfg.Address
	}
	n.self.Address = n.address
}

func (n *node) clientURL() string { return n.ports.ClientURL(n.scheme(), n.address) }
func (n *node) peerURL() string   { return n.ports.PeerURL(n.peerScheme(), n.address) }

// peerScheme is the scheme of the member's peer URL. Every member serves
// clients in it too while peers move: its clients' scheme for the other
// members.
func (n *node) peerScheme() string {
	if n.tls == nil || n.peerHTTP.Load() {
		return "http"
	}
	return "https"
}

// bindAddress is the IP the instance serves on: its peer-facing address,
// unless that is its public name (multi-region mode) and --address does not
// say otherwise.
func (n *node) bindAddress() string {
	if n.cfg.Address != "" || n.self.BindAddress == "" {
		return n.address
	}
	return n.self.BindAddress
}

func (n *node) clusterName() string {
	if n.cfg.ClusterName != "" {
		return n.cfg.ClusterName
	}
	return n.groups.name()
}

func (n *node) setPeer(f func(*cluster.PeerState)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f(&n.peer)
}

func (n *node) peerState() cluster.PeerState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peer
}

func (n *node) setReady(ready bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ready = ready
}

func (n *node) isReady() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ready
}

func (n *node) setUnusable(why string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.unusable = why
}

// refreshLocal reads the data dir and publishes what it holds. When it
// can't be read, the instance publishes that it has data: unknown is never
// reported as empty, so nobody creates a cluster past it.
func (n *node) refreshLocal() (cluster.LocalData, error) {
	ld, err := n.data.local()
	if err != nil {
		n.log.Warn("reading data dir", "err", err)
		n.setPeer(func(p *cluster.PeerState) { p.HasData = true })
		return ld, err
	}
	n.setPeer(func(p *cluster.PeerState) {
		sameCluster := p.ClusterID == ld.ClusterID
		p.HasData = ld.Exists
		p.ClusterID, p.MemberID = ld.ClusterID, ld.MemberID
		if ld.Revision > p.Revision || !ld.Exists {
			p.Revision = ld.Revision
		}
		if ld.Log.Compare(p.Log) > 0 || !sameCluster || !ld.Exists {
			p.Log = ld.Log
		}
		// An accepted offer stays published until the cluster had a leader,
		// so members that have not started yet can still accept it.
		p.Offer = ld.Offer
		p.Voters = ld.Voters
	})
	return ld, nil
}

// localInputs is the local data as the startup plan sees it, including
// what etcd's last exit said about it.
func (n *node) localInputs() (cluster.LocalData, error) {
	ld, err := n.refreshLocal()
	if err == nil && ld.Exists {
		n.mu.Lock()
		ld.Unusable = n.unusable
		n.mu.Unlock()
	}
	return ld, err
}

// wipe sets the local data aside and publishes the empty data dir.
func (n *node) wipe(live cluster.ID, reason string) error {
	aside, err := n.data.wipe(n.now(), live)
	if err != nil {
		return err
	}
	n.setUnusable("")
	if _, err := n.refreshLocal(); err != nil {
		return err
	}
	n.log.Info("local data set aside", "to", aside, "reason", reason)
	return nil
}

// clusterToken makes every created cluster's id unique, so that members of
// an earlier cluster on the same addresses can never be mistaken for members
// of a new one.
func clusterToken(name string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return name + "-" + hex.EncodeToString(b)
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func apiAddress(address string, port int) string {
	return net.JoinHostPort(address, strconv.Itoa(port))
}
