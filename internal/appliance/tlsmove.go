package appliance

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// Moving a running cluster between plaintext and TLS peers (SPEC §4.8).
//
// To TLS: the operator restarts each instance with --tls auto (or files),
// one at a time or all at once. checkScheme finds the data's peer URL still
// http and starts etcd with the certificates, its peer URL http and clients
// served both ways (PeerPlaintext, ClientPlaintext). Once every member runs
// so — an https client URL in the member list says it can dial https peers
// (cluster.CheckTLSMove) — movePeers switches this member's peer URL to
// https in its turn.
//
// Back: the operator restarts each instance with --tls-plaintext-peers,
// keeping --tls and the CA (the certificates still dial the members that
// serve https). Each member switches its peer URL to http in its turn; every
// member can dial http. Then the instances may run with --tls off.
//
// A turn is an in-place upgrade's (swap.go): under the membership lock,
// only while every other member is a started, healthy voter, leadership
// handed over first. etcd is stopped, the member's peer URL updated through
// the other members, and the appliance starts etcd again on its data,
// serving peers in the new scheme.

// peerMoveEvery is how often a moving member looks whether its turn came.
const peerMoveEvery = time.Second

// movePeers switches this member's peer URL to the scheme --tls and
// --tls-plaintext-peers want when the cluster is ready for it and it is this
// member's turn. It reports whether etcd was stopped for the appliance to
// start it again in that scheme.
//
// own is the supervision's client of the local etcd: it is closed before
// etcd stops, since its streams (the watch, the candidacy's lease
// keep-alive) would hold etcd's graceful stop for its request timeout, 7 s.
func (s *supervisor) movePeers(ctx context.Context, own etcdAPI, proc etcdProcess) bool {
	if s.tls == nil || !s.peersMoving() || s.now().Sub(s.lastPeerMove) < peerMoveEvery {
		return false
	}
	s.lastPeerMove = s.now()
	err := s.tryPeerMove(ctx, own, proc)
	if err == nil {
		return true
	}
	if why := err.Error(); why != s.peerMoveWhy {
		s.log.Info("moving peers to "+s.wantPeerScheme()+": not switching the peer URL yet", "why", why)
		s.peerMoveWhy = why
	}
	return false
}

// tryPeerMove is one attempt: nil once etcd was stopped with the member's
// peer URL switched; an error says why not yet, and changed nothing.
func (s *supervisor) tryPeerMove(ctx context.Context, own etcdAPI, proc etcdProcess) error {
	local, err := s.dial([]string{s.clientURL()})
	if err != nil {
		return err
	}
	view, err := local.LocalMembers(ctx)
	local.Close()
	if err != nil {
		return err
	}
	var self *cluster.Member
	var others []string
	for i, m := range view.Members {
		switch {
		case m.Name == s.self.ID:
			self = &view.Members[i]
		case m.Started():
			// Every other member serves TLS clients while peers move
			// (CheckTLSMove to TLS; back, they run with --tls), and one
			// client speaks one scheme.
			u := m.ClientURLs[0]
			if i := slices.IndexFunc(m.ClientURLs, func(u string) bool { return strings.HasPrefix(u, "https://") }); i >= 0 {
				u = m.ClientURLs[i]
			}
			others = append(others, u)
		}
	}
	if self == nil || len(self.PeerURLs) == 0 {
		return fmt.Errorf("this instance's member is not in the member list")
	}
	want := s.wantPeerScheme()
	if want == "https" {
		if err := cluster.CheckTLSMove(view.Members, self.ID); err != nil {
			return err
		}
	}
	next := cluster.WithScheme(self.PeerURLs[0], want)
	if len(others) == 0 {
		// Alone: nobody dials it, and nobody else takes turns.
		return s.switchAlone(ctx, own, proc, self.ID, next)
	}
	// The lock and the update go through the other members: this member's
	// etcd stops in the middle.
	c, err := s.dial(others)
	if err != nil {
		return err
	}
	defer c.Close()
	actx, cancel := context.WithTimeout(ctx, swapAttempt)
	defer cancel()
	unlock, err := c.TryLockMembership(actx)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.starter.swapTurn(actx, c)
	if err != nil {
		return err
	}
	s.starter.handOver(actx, st)
	start := s.now()
	own.Close()
	if err := proc.Stop(s.cfg.StopTimeout); err != nil {
		s.log.Warn("moving peers: stopping etcd", "err", err)
	}
	if err := c.UpdatePeerURLs(actx, st.ID, []string{next}); err != nil {
		// etcd starts again in the old scheme: the next attempt tries
		// anew.
		return fmt.Errorf("updating the peer URL to %s: %w", next, err)
	}
	return s.switched(st.ID, next, start)
}

// switchAlone switches the peer URL of a cluster's only member: updated
// through its own etcd, which then restarts.
func (s *supervisor) switchAlone(ctx context.Context, own etcdAPI, proc etcdProcess, id cluster.ID, next string) error {
	local, err := s.dial([]string{s.clientURL()})
	if err != nil {
		return err
	}
	defer local.Close()
	if err := local.UpdatePeerURLs(ctx, id, []string{next}); err != nil {
		return fmt.Errorf("updating the peer URL to %s: %w", next, err)
	}
	start := s.now()
	local.Close()
	own.Close()
	if err := proc.Stop(s.cfg.StopTimeout); err != nil {
		s.log.Warn("moving peers: stopping etcd", "err", err)
	}
	return s.switched(id, next, start)
}

// switched records the member's new peer URL once etcd stopped.
func (s *supervisor) switched(id cluster.ID, next string, start time.Time) error {
	if err := s.recordPeerURL(next); err != nil {
		return err
	}
	s.setPeerHTTP(strings.HasPrefix(next, "http://"))
	s.log.Info("moving peers to "+s.wantPeerScheme()+": peer URL switched; starting etcd on it", "member", id, "peer_url", next,
		"stopped_for", s.now().Sub(start).Round(time.Millisecond))
	return nil
}

// recordPeerURL records the member's new peer URL in the marker, so that
// a restart serves peers in its scheme.
func (s *supervisor) recordPeerURL(u string) error {
	m, ok, err := s.data.readMarker()
	if err != nil || !ok {
		return fmt.Errorf("recording the peer URL %s: the member marker is unreadable: %v", u, err)
	}
	m.PeerURL, m.UpdatedAt = u, s.now()
	if s.markerView != nil {
		s.markerView.peerURL = u
	}
	return s.data.writeMarker(m)
}
