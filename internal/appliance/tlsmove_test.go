package appliance

import (
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
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

// TestJoinPeerScheme: a TLS instance joining a cluster that still has
// plaintext peers joins with an http peer URL, which they can dial, and
// moves in its turn; one joining a cluster all of TLS joins with https.
func TestJoinPeerScheme(t *testing.T) {
	a := testAppliance(t)
	a.tls = &memberTLS{}
	a.cfg.TLS = config.TLSAuto
	a.setPeerHTTP(false)
	moving := []cluster.Member{
		{ID: 1, Name: "i-a", PeerURLs: []string{"http://10.0.0.1:2380"}},
		{ID: 2, Name: "i-b", PeerURLs: []string{"https://10.0.0.2:2380"}},
	}
	a.joinPeerScheme(moving)
	if got := a.peerURL(); !strings.HasPrefix(got, "http://") || !a.peersMoving() {
		t.Errorf("joining a moving cluster: peer URL %s, moving %t; want http, moving", got, a.peersMoving())
	}
	moving[0].PeerURLs = []string{"https://10.0.0.1:2380"}
	a.joinPeerScheme(moving)
	if got := a.peerURL(); !strings.HasPrefix(got, "https://") || a.peersMoving() {
		t.Errorf("joining a TLS cluster: peer URL %s, moving %t; want https, not moving", got, a.peersMoving())
	}
	a.tls = nil
	moving[0].PeerURLs = []string{"http://10.0.0.1:2380"}
	a.joinPeerScheme(moving)
	if got := a.peerURL(); !strings.HasPrefix(got, "http://") || a.peersMoving() {
		t.Errorf("plaintext instance: peer URL %s, moving %t", got, a.peersMoving())
	}
}

// TestMemberHealthAsksInTheClientsScheme: a member whose peers move serves
// clients both ways and advertises http first; a TLS client asks it over
// https, as etcd's auth (--etcd-auth) wants a certificate, and a plaintext
// client over http.
func TestMemberHealthAsksInTheClientsScheme(t *testing.T) {
	m := cluster.Member{ID: 2, Name: "i-b", PeerURLs: []string{"http://10.0.0.2:2380"},
		ClientURLs: []string{"http://10.0.0.2:2379", "https://10.0.0.2:2379"}}
	for _, scheme := range []string{"https", "http"} {
		f := newFakeEtcd([]cluster.Member{m})
		f.endpoints = []string{scheme + "://10.0.0.1:2379"}
		f.status = map[string]etcdStatus{scheme + "://10.0.0.2:2379": {MemberID: 2, Leader: 2}}
		st := memberHealth(t.Context(), f, []cluster.Member{m}, nil)[2]
		if !st.Healthy || st.ClientURL != scheme+"://10.0.0.2:2379" {
			t.Errorf("%s client: asked %s, healthy %t (%s); want its %s URL", scheme, st.ClientURL, st.Healthy, st.Error, scheme)
		}
	}
}
