package appliance

import (
	"context"
	"errors"
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

// peerMismatchFor is how long the membership may list this member's peer
// URL in another scheme than its etcd serves before etcd is started again
// in the membership's: a switch just made is applied by the member's own
// log within moments, one interrupted between the update and the record
// (a crash, a timeout) is not.
const peerMismatchFor = 10 * time.Second

// realignPeers stops etcd, for the appliance to start it again in the
// membership's scheme, when the membership has listed this member's peer
// URL in another scheme than etcd serves for peerMismatchFor: a switch
// that was half done. It reports whether it stopped etcd.
func (s *supervisor) realignPeers(proc etcdProcess) bool {
	listed := ""
	if s.markerView != nil {
		listed = s.markerView.listedPeerURL
	}
	scheme, _, ok := strings.Cut(listed, "://")
	if s.tls == nil || !ok || scheme == s.peerScheme() {
		s.peerMismatchSince = time.Time{}
		return false
	}
	now := s.now()
	if s.peerMismatchSince.IsZero() {
		s.peerMismatchSince = now
	}
	if now.Sub(s.peerMismatchSince) < peerMismatchFor {
		return false
	}
	s.log.Warn("the membership lists this member's peer URL in another scheme than etcd serves: starting etcd again in it",
		"listed", listed, "served", s.peerScheme(), "for", now.Sub(s.peerMismatchSince).Round(time.Second))
	s.peerMismatchSince = time.Time{}
	if err := s.recordPeerURL(listed); err != nil {
		s.log.Warn("recording the peer URL", "err", err)
	}
	s.setPeerHTTP(scheme == "http")
	if err := proc.Stop(s.cfg.StopTimeout); err != nil {
		s.log.Warn("stopping etcd", "err", err)
	}
	return true
}

// joinPeerScheme sets the scheme a joining member's peer URL starts in: a
// cluster moving to TLS, some of whose members still serve peers in
// plaintext only, is joined with an http peer URL, which they can dial;
// the new member then switches in its turn like the others.
func (n *node) joinPeerScheme(members []cluster.Member) {
	if n.tls == nil || n.wantPeerScheme() == "http" {
		return
	}
	moving := slices.ContainsFunc(members, func(m cluster.Member) bool {
		return len(m.PeerURLs) > 0 && strings.HasPrefix(m.PeerURLs[0], "http://")
	})
	if moving != n.peerHTTP.Load() {
		n.setPeerHTTP(moving)
		if moving {
			n.log.Info("joining a cluster that moves to TLS: this member's peer URL starts in http, and switches in its turn")
		}
	}
}

// peerMoveEvery is how often a moving member looks whether its turn came.
const peerMoveEvery = time.Second

// movePeers switches this member's peer URL to the scheme --tls and
// --tls-plaintext-peers want, in its turn, once the cluster is ready for it.
// release, called once it is the turn, lets go of the supervision's client
// of the local etcd. It returns the etcd that runs afterwards and whether
// release was called, as rollOutTrust does.
func (s *supervisor) movePeers(ctx context.Context, proc etcdProcess, release func()) (_ etcdProcess, released bool) {
	if s.tls == nil || !s.peersMoving() || s.now().Sub(s.lastPeerMove) < peerMoveEvery {
		return proc, false
	}
	if err := s.moveWaits(ctx); err != nil {
		// Not ready: said once, and no lock taken.
		s.lastPeerMove = s.now()
		s.waitsToMove(err)
		return proc, false
	}
	s.lastPeerMove = s.now()
	want := s.wantPeerScheme()
	what := "moving peers to " + want
	start := s.now()
	var next string
	var updated bool
	restarted, err := s.starter.inTurn(ctx, restartTurn{
		what: what,
		gate: func(ctx context.Context, c etcdAPI) (etcdProcess, error) {
			if s.starter.swapHeld != "" {
				// Restarted, it would run the release the upgrade
				// refused.
				return nil, fmt.Errorf("an in-place upgrade is held on this member (%s)", s.starter.swapHeld)
			}
			view, err := c.Members(ctx)
			if err != nil {
				return nil, err
			}
			i := slices.IndexFunc(view.Members, func(m cluster.Member) bool { return m.Name == s.self.ID })
			if i < 0 || len(view.Members[i].PeerURLs) == 0 {
				return nil, errors.New("this instance's member is not in the member list")
			}
			if err := s.readyToMove(view.Members, view.Members[i].ID, want); err != nil {
				return nil, err
			}
			next = cluster.WithScheme(view.Members[i].PeerURLs[0], want)
			if len(cluster.VoterNames(view.Members)) < 3 {
				// Without this member the others have no quorum to
				// update it through once it stopped: updated first,
				// while it runs (alone, through its own etcd). Its
				// peers then dial it in the new scheme until it
				// restarts, a second or so.
				if err := s.switchPeerURL(ctx, c, view.Members[i].ID, next, want); err != nil {
					return nil, err
				}
				updated = true
			}
			return nil, nil
		},
		restart: func(ctx context.Context, c etcdAPI, id cluster.ID) (etcdProcess, error) {
			released = true
			release()
			// etcd stops first: its peer URL changes while nobody dials it.
			return s.starter.restartLocked(ctx, c, proc, id, what, func(ctx context.Context) (etcdProcess, error) {
				if isRunning(proc) {
					return nil, errors.New("etcd did not stop; its peer URL stays")
				}
				if !updated {
					// On failure the appliance plans again and starts
					// etcd in the scheme the membership says
					// (realignPeers); the next turn tries anew.
					if err := s.switchPeerURL(ctx, c, id, next, want); err != nil {
						return nil, err
					}
				}
				return s.starter.launcher.launch(ctx, cluster.LaunchOnData(s.self.ID, s.peerURL(), s.clusterName()))
			})
		},
	})
	switch {
	case restarted != nil && err == nil:
		s.log.Info(what+": etcd serves peers in "+want+" and is a healthy voter; the next member may go",
			"took", s.now().Sub(start).Round(time.Millisecond))
		return restarted, released
	case restarted != nil:
		s.log.Warn(what+": etcd restarted but is not a healthy voter yet", "err", err)
		return restarted, released
	case released:
		s.log.Error(what+": etcd did not start again after its stop; planning again", "err", err)
		return proc, released
	}
	s.waitsToMove(err)
	return proc, false
}

// readyToMove is nil when the cluster lets this member's peer URL switch to
// scheme: to https, every other member must run with TLS (a plaintext one
// could not dial it); every member dials http.
func (s *supervisor) readyToMove(members []cluster.Member, self cluster.ID, scheme string) error {
	if scheme == "https" {
		return cluster.CheckTLSMove(members, self)
	}
	return nil
}

// moveWaits is readyToMove on the local member list: the cheap look before
// a turn's lock and health checks, repeated while the operator's rollout
// lasts.
func (s *supervisor) moveWaits(ctx context.Context) error {
	local, err := s.dial([]string{s.clientURL()})
	if err != nil {
		return err
	}
	defer local.Close()
	view, err := local.LocalMembers(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(view.Members, func(m cluster.Member) bool { return m.Name == s.self.ID })
	if i < 0 {
		return errors.New("this instance's member is not in the member list")
	}
	return s.readyToMove(view.Members, view.Members[i].ID, s.wantPeerScheme())
}

// waitsToMove logs, once per reason, why the member's peer URL does not
// switch yet.
func (s *supervisor) waitsToMove(err error) {
	why := err.Error()
	if h := (*cluster.Hold)(nil); errors.As(err, &h) {
		why = h.Error()
	}
	if why != s.peerMoveWhy {
		s.log.Info("moving peers to "+s.wantPeerScheme()+": not switching the peer URL yet", "why", why)
		s.peerMoveWhy = why
	}
}

// switchPeerURL updates the member's peer URL to next through c and records
// it: etcd is started in its scheme from then on.
func (s *supervisor) switchPeerURL(ctx context.Context, c etcdAPI, id cluster.ID, next, scheme string) error {
	if err := c.UpdatePeerURLs(ctx, id, []string{next}); err != nil {
		return fmt.Errorf("updating the peer URL to %s: %w", next, err)
	}
	if err := s.recordPeerURL(next); err != nil {
		return err
	}
	s.setPeerHTTP(scheme == "http")
	s.log.Info("moving peers to "+scheme+": peer URL switched; etcd starts on it", "member", id, "peer_url", next)
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
