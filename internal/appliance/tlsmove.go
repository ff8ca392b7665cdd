package appliance

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// The move of a running plaintext cluster to TLS (SPEC §4.8): the operator
// restarts each instance with --tls auto (or files), one at a time or all
// at once. checkScheme finds the data's peer URL still http and starts
// etcd with the certificates, its peer URL http and clients served both
// ways (PeerPlaintext, ClientPlaintext). Once every member runs so,
// moveToTLS switches this member's peer URL to https in its turn, as an
// in-place upgrade swaps etcd: under the membership lock, only while every
// other member is a started, healthy voter, leadership handed over first.
// etcd is stopped, the member's peer URL updated through the other
// members, and the appliance starts etcd again on its data, now serving
// peers over mutual TLS. The other members dial it over https from then on
// with the certificates they already hold.

// tlsMoveEvery is how often a member moving to TLS looks whether its turn
// came.
const tlsMoveEvery = time.Second

// moveToTLS switches this member's peer URL to https when the cluster is
// ready for it and it is this member's turn. It reports whether etcd was
// stopped for the appliance to start it again on https.
//
// own is the supervision's client of the local etcd: it is closed before
// etcd stops, since its streams (the watch, the candidacy's lease
// keep-alive) would hold etcd's graceful stop for its request timeout, 7 s.
func (s *supervisor) moveToTLS(ctx context.Context, own etcdAPI, proc etcdProcess) bool {
	if s.tls == nil || !s.peerPlaintext() || s.now().Sub(s.lastTLSMove) < tlsMoveEvery {
		return false
	}
	s.lastTLSMove = s.now()
	err := s.tryTLSMove(ctx, own, proc)
	if err == nil {
		return true
	}
	if why := err.Error(); why != s.tlsMoveWhy {
		s.log.Info("moving to TLS: not switching the peer URL yet", "why", why)
		s.tlsMoveWhy = why
	}
	return false
}

// tryTLSMove is one attempt: nil once etcd was stopped with the member's
// peer URL switched; an error says why not yet, and changed nothing.
func (s *supervisor) tryTLSMove(ctx context.Context, own etcdAPI, proc etcdProcess) error {
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
			// Every other member serves TLS once the move may go on
			// (CheckTLSMove), and one client speaks one scheme.
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
	if err := cluster.CheckTLSMove(view.Members, self.ID); err != nil {
		return err
	}
	https := cluster.HTTPSPeerURL(self.PeerURLs[0])
	if len(others) == 0 {
		// Alone: nobody dials it, and nobody else takes turns.
		return s.switchAlone(ctx, own, proc, self.ID, https)
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
		s.log.Warn("moving to TLS: stopping etcd", "err", err)
	}
	if err := c.UpdatePeerURLs(actx, st.ID, []string{https}); err != nil {
		// etcd starts again on http: the next attempt tries anew.
		return fmt.Errorf("updating the peer URL to %s: %w", https, err)
	}
	return s.switched(st.ID, https, start)
}

// switchAlone switches the peer URL of a cluster's only member: updated
// through its own etcd, which then restarts.
func (s *supervisor) switchAlone(ctx context.Context, own etcdAPI, proc etcdProcess, id cluster.ID, https string) error {
	local, err := s.dial([]string{s.clientURL()})
	if err != nil {
		return err
	}
	defer local.Close()
	if err := local.UpdatePeerURLs(ctx, id, []string{https}); err != nil {
		return fmt.Errorf("updating the peer URL to %s: %w", https, err)
	}
	start := s.now()
	local.Close()
	own.Close()
	if err := proc.Stop(s.cfg.StopTimeout); err != nil {
		s.log.Warn("moving to TLS: stopping etcd", "err", err)
	}
	return s.switched(id, https, start)
}

// switched records the member's new peer URL once etcd stopped.
func (s *supervisor) switched(id cluster.ID, https string, start time.Time) error {
	if err := s.recordPeerURL(https); err != nil {
		return err
	}
	s.setMovingToTLS(false)
	s.log.Info("moving to TLS: peer URL switched; starting etcd on it", "member", id, "peer_url", https,
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
