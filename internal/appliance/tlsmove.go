package appliance

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// --tls-plaintext-peers want, in its turn, once the cluster is ready for it.
// release, called once it is the turn, lets go of the supervision's client
// of the local etcd. It returns the etcd that runs afterwards and whether
// release was called, as rollOutTrust does.
func (s *supervisor) movePeers(ctx context.Context, proc etcdProcess, release func()) (_ etcdProcess, released bool) {
	if s.tls == nil || !s.peersMoving() || s.now().Sub(s.lastPeerMove) < peerMoveEvery {
		return proc, false
	}
	s.lastPeerMove = s.now()
	want := s.wantPeerScheme()
	what := "moving peers to " + want
	start := s.now()
	var next string
	var alone bool
	restarted, err := s.starter.inTurn(ctx, restartTurn{
		what: what,
		gate: func(ctx context.Context, c etcdAPI) (etcdProcess, error) {
			view, err := c.Members(ctx)
			if err != nil {
				return nil, err
			}
			i := slices.IndexFunc(view.Members, func(m cluster.Member) bool { return m.Name == s.self.ID })
			if i < 0 || len(view.Members[i].PeerURLs) == 0 {
				return nil, errors.New("this instance's member is not in the member list")
			}
			if want == "https" {
				// A plaintext member could not dial this one once it
				// serves https.
				if err := cluster.CheckTLSMove(view.Members, view.Members[i].ID); err != nil {
					return nil, err
				}
			}
			next = cluster.WithScheme(view.Members[i].PeerURLs[0], want)
			if alone = len(view.Members) == 1; alone {
				// Nobody else to update it through: through its own
				// etcd, before the restart.
				if err := s.switchPeerURL(ctx, c, view.Members[i].ID, next, want); err != nil {
					return nil, err
				}
			}
			return nil, nil
		},
		restart: func(ctx context.Context, c etcdAPI, id cluster.ID) (etcdProcess, error) {
			released = true
			release()
			// etcd stops first: its peer URL changes while nobody dials it.
			return s.starter.restartLocked(ctx, c, proc, id, what, func(ctx context.Context) (etcdProcess, error) {
				if !alone {
					// On failure the appliance plans again and starts
					// etcd in the old scheme; the next turn tries anew.
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
	why := err.Error()
	if h := (*cluster.Hold)(nil); errors.As(err, &h) {
		why = h.Error()
	}
	if why != s.peerMoveWhy {
		s.log.Info(what+": not switching the peer URL yet", "why", why)
		s.peerMoveWhy = why
	}
	return proc, false
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
