package appliance

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/config"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// tlsAppliance is testAppliance with --tls auto, its CA in a temp dir (the
// appliance creates it), and its log in the returned buffer.
func tlsAppliance(t *testing.T) (*Appliance, *pki.ClusterCA, *syncBuffer) {
	t.Helper()
	a := testAppliance(t)
	logs := &syncBuffer{}
	a.log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a.cfg.TLS, a.cfg.TLSCertLifetime = config.TLSAuto, time.Hour
	store := pki.DirStore{Dir: t.TempDir()}
	if err := a.prepareTLS(t.Context(), cluster.LocalData{}, nil); err == nil {
		t.Fatal("prepareTLS without a CA store succeeded")
	}
	a.caStore = store
	if err := a.prepareTLS(t.Context(), cluster.LocalData{}, nil); err != nil {
		t.Fatal(err)
	}
	ca, _, err := pki.EnsureCA(t.Context(), store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := a.peerState(); !strings.HasPrefix(p.PeerURL, "https://") || !strings.HasPrefix(p.ClientURL, "https://") {
		t.Errorf("published URLs %s and %s, want https", p.PeerURL, p.ClientURL)
	}
	return a, ca, logs
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// peerServer is an appliance API look-alike on 127.0.0.1 that answers
// /v1/peer with a state, over TLS with cert, or in plaintext when cert is nil.
func peerServer(t *testing.T, cert *pki.KeyPair) (port int) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, cluster.PeerState{InstanceID: "i-2", Address: "127.0.0.1", HasData: false})
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	if cert != nil {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert.TLSCertificate()}}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	port, _ = strconv.Atoi(u.Port())
	return port
}

// TestPeerAnswerIgnoredWithoutAMemberCertificate: with TLS on, a /v1/peer
// answer counts only from a server showing a member certificate of the
// cluster CA for the address asked. A spoofed answer — a server with a
// certificate of a foreign CA, a user certificate of the cluster's, a
// member certificate for another address, or plaintext — is ignored, and
// said so at Warn.
func TestPeerAnswerIgnoredWithoutAMemberCertificate(t *testing.T) {
	a, ca, logs := tlsAppliance(t)
	now := time.Now()
	issue := func(ca *pki.ClusterCA, req pki.LeafRequest) *pki.KeyPair {
		t.Helper()
		req.Lifetime = time.Hour
		kp, err := ca.Issue(req, now)
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	foreign, err := pki.NewClusterCA("foreign", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	tests := []struct {
		name    string
		cert    *pki.KeyPair
		answer  bool
		ignored cluster.IgnoredAnswer
	}{
		{"member certificate of the cluster CA", issue(ca, pki.LeafRequest{Kind: pki.Member, CommonName: "i-2", IPs: loopback}), true, ""},
		{"member certificate of a foreign CA", issue(foreign, pki.LeafRequest{Kind: pki.Member, CommonName: "i-2", IPs: loopback}), false,
			cluster.PeerUntrusted},
		{"user certificate of the cluster CA", issue(ca, pki.LeafRequest{Kind: pki.User, CommonName: "i-2"}), false, cluster.PeerUntrusted},
		{"member certificate for another address", issue(ca, pki.LeafRequest{Kind: pki.Member, CommonName: "i-2",
			IPs: []net.IP{net.IPv4(10, 0, 0, 2)}}), false, cluster.PeerUntrusted},
		{"plaintext", nil, false, cluster.PeerRunsPlaintext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.ports.API = peerServer(t, tt.cert)
			before := len(logs.String())
			answers := a.world.askPeers(t.Context(), []cluster.Instance{
				{ID: "i-2", Address: "127.0.0.1", State: cluster.InstanceRunning}})
			got := answers["i-2"]
			if got.Reachable != tt.answer || got.Ignored != tt.ignored {
				t.Fatalf("answer %+v, want reachable %t, ignored %q; log:\n%s", got, tt.answer, tt.ignored, logs.String()[before:])
			}
			if !tt.answer && !strings.Contains(logs.String()[before:], `level=WARN msg="peer answer ignored`) {
				t.Errorf("the ignored answer was not logged at Warn:\n%s", logs.String()[before:])
			}
			_, _, err := a.world.askPeer(t.Context(), "127.0.0.1")
			var record tls.RecordHeaderError
			if !tt.answer && !errors.Is(err, pki.ErrUntrustedServer) && !errors.As(err, &record) {
				t.Errorf("askPeer: %v, want pki.ErrUntrustedServer or a TLS record error", err)
			}
		})
	}
}

// TestAPIAuthorizesByPath: with TLS on, /v1/peer needs a member certificate
// of the cluster CA, /v1/status any certificate of it, and /healthz,
// /readyz and /metrics none.
func TestAPIAuthorizesByPath(t *testing.T) {
	a, ca, _ := tlsAppliance(t)
	now := time.Now()
	foreign, err := pki.NewClusterCA("foreign", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	chainOf := func(ca *pki.ClusterCA, kind pki.Kind) [][]*x509.Certificate {
		req := pki.LeafRequest{Kind: kind, CommonName: "x", Lifetime: time.Hour}
		if kind == pki.Member {
			req.IPs = []net.IP{net.IPv4(127, 0, 0, 2)}
		}
		kp, err := ca.Issue(req, now)
		if err != nil {
			t.Fatal(err)
		}
		return [][]*x509.Certificate{{kp.Cert, ca.Signer.Cert}}
	}
	member, user, stranger := chainOf(ca, pki.Member), chainOf(ca, pki.User), chainOf(foreign, pki.Member)
	h := a.Handler()
	if _, body := get(t, h, "/metrics"); !strings.Contains(body, "etcd_appliance_tls_certificate_expiry_timestamp_seconds") {
		t.Error("/metrics lacks etcd_appliance_tls_certificate_expiry_timestamp_seconds")
	}
	for _, tt := range []struct {
		path   string
		chains [][]*x509.Certificate
		want   int
	}{
		{"/v1/peer", member, 200},
		{"/v1/peer", user, 403},
		{"/v1/peer", stranger, 403},
		{"/v1/peer", nil, 403},
		{"/v1/status", user, 200},
		{"/v1/status", member, 200},
		{"/v1/status", stranger, 403},
		{"/v1/status", nil, 403},
		{"/healthz", nil, 200},
		{"/readyz", nil, 503},
		{"/metrics", nil, 200},
	} {
		req := httptest.NewRequest(http.MethodGet, tt.path, nil)
		req.TLS = &tls.ConnectionState{VerifiedChains: tt.chains}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(ctx))
		cancel()
		if rec.Code != tt.want {
			t.Errorf("GET %s with %d chains: %d, want %d: %s", tt.path, len(tt.chains), rec.Code, tt.want, rec.Body.String())
		}
	}
}

// TestMemberCertificateNamesEveryAddress: the member certificate carries
// the instance's addresses, loopback, and with a hosted zone its own and
// the cluster's DNS names.
func TestMemberCertificateNamesEveryAddress(t *testing.T) {
	a := testAppliance(t)
	a.self.BindAddress = "10.0.0.5"
	a.address = "ec2-1-2-3-4.compute.amazonaws.com"
	req := a.memberRequest(&cluster.DNSSpec{Zone: "example.org", Name: "etcd", TTL: 60, TLS: true})
	if req.CommonName != pki.MemberCommonName {
		// Every member is the one etcd user of --etcd-auth.
		t.Errorf("member certificate CN %q, want %q", req.CommonName, pki.MemberCommonName)
	}
	var names []string
	for _, ip := range req.IPs {
		names = append(names, ip.String())
	}
	names = append(names, req.DNSNames...)
	got := strings.Join(names, " ")
	for _, want := range []string{"10.0.0.5", "127.0.0.1", "localhost", "ec2-1-2-3-4.compute.amazonaws.com",
		"i-1.etcd.example.org", "etcd.example.org"} {
		if !strings.Contains(" "+got+" ", " "+want+" ") {
			t.Errorf("certificate names %q lack %s", got, want)
		}
	}
}

// TestSchemeChange: an instance with --tls on, on data of a plaintext
// cluster, moves it to TLS: its peer URL stays http for now. Every other
// change of scheme is refused: TLS data with --tls off, and an offer (whose
// cluster has not formed) of the other scheme.
func TestSchemeChange(t *testing.T) {
	for _, tt := range []struct {
		name      string
		tls       bool
		endpoints []string
		peerURL   string
		offer     string
		refused   bool
		moving    bool
		// plainPeers: --tls-plaintext-peers.
		plainPeers bool
	}{
		{"plaintext data, tls off", false, []string{"http://10.0.0.1:2379"}, "", "", false, false, false},
		{"plaintext data of an older marker, tls on: moving to TLS", true, []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379"}, "", "", false, true, false},
		{"plaintext peer URL, both client URLs, tls on: still moving", true, []string{"http://10.0.0.1:2379", "https://10.0.0.1:2379"}, "http://10.0.0.1:2380", "", false, true, false},
		{"switched peer URL, tls on: moved", true, []string{"http://10.0.0.1:2379", "https://10.0.0.1:2379"}, "https://10.0.0.1:2380", "", false, false, false},
		{"tls data, tls on", true, []string{"https://10.0.0.1:2379"}, "", "", false, false, false},
		{"tls data, tls off", false, []string{"https://10.0.0.1:2379"}, "", "", true, false, false},
		{"plaintext offer, tls on", true, nil, "", "http://10.0.0.1:2380", true, false, false},
		{"tls offer, tls on", true, nil, "", "https://10.0.0.1:2380", false, false, false},
		{"tls data, tls on with plaintext peers: moving back", true, []string{"https://10.0.0.1:2379"}, "https://10.0.0.1:2380", "", false, true, true},
		{"switched back, tls on with plaintext peers: moved", true, []string{"http://10.0.0.1:2379", "https://10.0.0.1:2379"}, "http://10.0.0.1:2380", "", false, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := testAppliance(t)
			if tt.tls {
				a.tls = &memberTLS{}
				a.cfg.TLS = config.TLSAuto
			}
			a.cfg.TLSPlaintextPeers = tt.plainPeers
			if err := a.data.writeMarker(marker{ClusterID: 1, MemberID: 2, Name: "i-1", Endpoints: tt.endpoints, PeerURL: tt.peerURL}); err != nil {
				t.Fatal(err)
			}
			ld := cluster.LocalData{Exists: tt.endpoints != nil}
			if tt.offer != "" {
				ld.Offer = &cluster.BootstrapOffer{Token: "t", Members: []cluster.NamedPeer{{Name: "i-1", PeerURL: tt.offer}}}
			}
			err := a.checkScheme(ld)
			if refused := errors.Is(err, errSchemeChange); refused != tt.refused {
				t.Fatalf("checkScheme: %v, want refused %t", err, tt.refused)
			}
			if err != nil && !strings.Contains(err.Error(), "--tls") {
				t.Errorf("the refusal %q does not name --tls", err)
			}
			if a.peersMoving() != tt.moving {
				t.Errorf("moving peers: %t, want %t", a.peersMoving(), tt.moving)
			}
			// The peer URL stays in the data's scheme until the switch.
			// Moving, it is the other scheme than the one wanted.
			wantPeer := "https"
			if !tt.tls || tt.plainPeers != tt.moving {
				wantPeer = "http"
			}
			if !strings.HasPrefix(a.peerURL(), wantPeer+"://") {
				t.Errorf("peer URL %s, want %s", a.peerURL(), wantPeer)
			}
		})
	}
}

// TestPlaintextInstanceSaysItsPeerSpeaksTLS: an instance run with --tls off
// whose peer speaks TLS says so at Warn, not as a peer that did not answer,
// and its startup plan waits naming the peer, the reason and the remedy,
// which its status and metrics show.
func TestPlaintextInstanceSaysItsPeerSpeaksTLS(t *testing.T) {
	a := testAppliance(t)
	logs := &syncBuffer{}
	a.log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ca, err := pki.NewClusterCA("cluster", time.Now(), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(pki.LeafRequest{Kind: pki.Member, CommonName: "i-2", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Lifetime: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a.ports.API = peerServer(t, kp)
	answers := a.world.askPeers(t.Context(), []cluster.Instance{{ID: "i-2", Address: "127.0.0.1", State: cluster.InstanceRunning}})
	if want := map[string]cluster.PeerAnswer{"i-2": {Ignored: cluster.PeerRunsTLS}}; !reflect.DeepEqual(answers, want) {
		t.Fatalf("answers %+v from a TLS peer to a plaintext instance, want %+v", answers, want)
	}
	if !strings.Contains(logs.String(), `level=WARN msg="peer answer ignored: the peer runs with TLS, this instance without"`) {
		t.Errorf("no Warn naming the TLS mismatch:\n%s", logs.String())
	}

	// The startup loop waits, naming the peer, why and the remedy.
	a.groups.group.(*fakeGroup).instances = []cluster.Instance{
		{ID: "i-1", Address: "127.0.0.1", State: cluster.InstanceRunning},
		{ID: "i-2", Address: "127.0.0.1", State: cluster.InstanceRunning}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := a.starter.run(ctx)
		done <- err
	}()
	var reason string
	waitFor(t, func() bool {
		reason, _ = a.waitingFor()
		return reason != ""
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("the startup loop ended with %v, want it waiting until cancelled", err)
	}
	for _, want := range []string{"peer i-2 runs with TLS, this instance without", "same --tls"} {
		if !strings.Contains(reason, want) {
			t.Errorf("waits for %q, which lacks %q", reason, want)
		}
	}
	if _, unanswered := a.waitingFor(); len(unanswered) != 1 || unanswered[0].Ignored != cluster.PeerRunsTLS {
		t.Errorf("unanswered %+v, want i-2 ignored: %s", unanswered, cluster.PeerRunsTLS)
	}
	if v := testutil.ToFloat64(a.metrics.waiting.ignored.WithLabelValues("peer_tls")); v != 1 {
		t.Errorf(`etcd_appliance_peers_ignored{reason="peer_tls"} = %v, want 1`, v)
	}
}
