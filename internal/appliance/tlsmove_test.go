package appliance

import (
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/config"
)

// TestRealignPeers: a member whose etcd serves peers in another scheme than
// the membership lists for it (a switch interrupted between the update and
// its record) is started again in the membership's scheme, but only once
// the mismatch has lasted peerMismatchFor: a switch just made is applied by
// the member's own log within moments.
func TestRealignPeers(t *testing.T) {
	a := testAppliance(t)
	a.tls = &memberTLS{}
	a.cfg.TLS = config.TLSAuto
	now := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	if err := a.data.writeMarker(marker{ClusterID: 1, MemberID: 2, Name: "i-1", PeerURL: "http://10.0.0.1:2380"}); err != nil {
		t.Fatal(err)
	}
	a.setPeerHTTP(true)
	s := a.supervisor
	proc := newFakeProcess()

	s.markerView = &recordedMembership{listedPeerURL: "http://10.0.0.1:2380"}
	if s.realignPeers(proc) {
		t.Fatal("stopped etcd although it serves peers in the listed scheme")
	}
	s.markerView.listedPeerURL = "https://10.0.0.1:2380"
	if s.realignPeers(proc) {
		t.Fatal("stopped etcd at the first sight of another scheme")
	}
	now = now.Add(peerMismatchFor / 2)
	s.markerView.listedPeerURL = "http://10.0.0.1:2380"
	if s.realignPeers(proc) {
		t.Fatal("stopped etcd after the listing came back to its scheme")
	}
	s.markerView.listedPeerURL = "https://10.0.0.1:2380"
	s.realignPeers(proc)
	now = now.Add(peerMismatchFor)
	if !s.realignPeers(proc) || !proc.stopped {
		t.Fatal("etcd kept serving peers in http while the membership listed https for longer than peerMismatchFor")
	}
	if a.peerScheme() != "https" {
		t.Errorf("etcd starts again serving peers in %s, want https", a.peerScheme())
	}
	if m, _, _ := a.data.readMarker(); m.PeerURL != "https://10.0.0.1:2380" {
		t.Errorf("the marker records %q, want the listed https URL", m.PeerURL)
	}
}
