package pki_test

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// memberAPI serves what /v1/peer will: 200 with the caller's CN to members,
// 403 to anyone else the TLS layer let through.
func memberAPI(t *testing.T, creds pki.Credentials) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil || !pki.IsMemberCertificate(r.TLS.VerifiedChains, creds.Trust()) {
				http.Error(w, "not a cluster member", http.StatusForbidden)
				return
			}
			_, _ = io.WriteString(w, r.TLS.VerifiedChains[0][0].Subject.CommonName)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		// Refused handshakes are what the test expects.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, pki.ServerTLS(creds))) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "https://" + ln.Addr().String()
}

// get asks url with cfg on a fresh connection; it returns the status and
// body, or the error.
func get(t *testing.T, url string, cfg *tls.Config) (int, string, error) {
	t.Helper()
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true},
	}
	resp, err := client.Get(url + "/v1/peer")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func renewer(t *testing.T, ca *pki.ClusterCA, req pki.LeafRequest) *pki.Renewer {
	t.Helper()
	r, err := pki.NewRenewer(pki.RenewerConfig{CA: ca, Request: req})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Mutual TLS between appliances over a loopback listener: a member is
// served; a client without a certificate, with a foreign CA's, or with a
// user's is not; a client refuses a server of a foreign CA or one not named
// as dialled; and a CA rotation takes effect without a new listener.
func TestMutualTLS(t *testing.T) {
	now := time.Now()
	ca := newCA(t, "cluster-ca", now)
	foreignCA := newCA(t, "foreign-ca", now)
	server := renewer(t, ca, memberRequest("i-server", time.Hour))
	client := renewer(t, ca, memberRequest("i-client", time.Hour))
	url := memberAPI(t, server)

	t.Run("member", func(t *testing.T) {
		code, body, err := get(t, url, pki.ClientTLS(client, "127.0.0.1"))
		if err != nil || code != http.StatusOK || body != "i-client" {
			t.Errorf("a member's request: %d %q %v; want 200 i-client", code, body, err)
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		_, _, err := get(t, url, &tls.Config{RootCAs: ca.Trust.Pool(), ServerName: "127.0.0.1"})
		if err == nil {
			t.Error("a client without a certificate was served")
		}
	})
	t.Run("foreign client certificate", func(t *testing.T) {
		foreigner := renewer(t, foreignCA, memberRequest("i-foreign", time.Hour))
		cfg := &tls.Config{RootCAs: ca.Trust.Pool(), ServerName: "127.0.0.1", GetClientCertificate: foreigner.GetClientCertificate}
		if _, _, err := get(t, url, cfg); err == nil {
			t.Error("a client with a foreign CA's certificate was served")
		}
	})
	t.Run("user certificate", func(t *testing.T) {
		user := issue(t, ca, pki.LeafRequest{Kind: pki.User, CommonName: "alice", Lifetime: time.Hour}, now)
		cfg := &tls.Config{RootCAs: ca.Trust.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{*user.TLSCertificate()}}
		code, _, err := get(t, url, cfg)
		if err != nil || code != http.StatusForbidden {
			t.Errorf("a user's request: %d %v; want 403 (a valid certificate, not a member's)", code, err)
		}
	})
	t.Run("foreign server", func(t *testing.T) {
		impostor := memberAPI(t, renewer(t, foreignCA, memberRequest("i-impostor", time.Hour)))
		if _, _, err := get(t, impostor, pki.ClientTLS(client, "127.0.0.1")); err == nil {
			t.Error("the client accepted a server of a foreign CA")
		}
	})
	t.Run("server not named as dialled", func(t *testing.T) {
		if _, _, err := get(t, url, pki.ClientTLS(client, "10.9.9.9")); err == nil {
			t.Error("the client accepted a server certificate that does not name the host it dialled")
		}
	})
	t.Run("rotation without restart", func(t *testing.T) {
		next, err := pki.NewAuthority("cluster-ca-2", now, 30*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		introduced := ca.Introduce(next)
		promoted, err := introduced.Promote()
		if err != nil {
			t.Fatal(err)
		}
		newcomer := renewer(t, promoted, memberRequest("i-newcomer", time.Hour))
		if _, _, err := get(t, url, pki.ClientTLS(newcomer, "127.0.0.1")); err == nil {
			t.Fatal("the server trusted the new CA before it was given it")
		}
		// Step 1 on the server (the listener stays): the newcomer, already
		// under the new CA, and the old client are both served.
		if err := server.SetCA(introduced); err != nil {
			t.Fatal(err)
		}
		asks := func(step string, clients ...*pki.Renewer) {
			for _, c := range clients {
				code, body, err := get(t, url, pki.ClientTLS(c, "127.0.0.1"))
				if err != nil || code != http.StatusOK {
					t.Errorf("%s, %s: %d %q %v; want 200", step, c.Current().Cert.Subject.CommonName, code, body, err)
				}
			}
		}
		asks("after Introduce", newcomer, client)
		// Why step 1 must reach everyone before step 2: a server renewed
		// under the new CA is refused by a client that does not trust it.
		if err := server.SetCA(promoted); err != nil {
			t.Fatal(err)
		}
		if _, _, err := get(t, url, pki.ClientTLS(client, "127.0.0.1")); err == nil {
			t.Error("a client that does not trust the new CA accepted a server certificate of it")
		}
		if err := client.SetCA(introduced); err != nil {
			t.Fatal(err)
		}
		asks("after Promote", newcomer, client)
	})
}

// ClientTLS's handshake over an in-memory pipe, both ends in the test: the
// server sees the client's certificate chain as a member's.
func TestMutualTLSPipe(t *testing.T) {
	now := time.Now()
	ca := newCA(t, "cluster-ca", now)
	a := renewer(t, ca, memberRequest("i-a", time.Hour))
	b := renewer(t, ca, memberRequest("i-b", time.Hour))
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := tls.Server(sc, pki.ServerTLS(a))
	errc := make(chan error, 1)
	go func() { errc <- srv.HandshakeContext(ctx) }()
	if err := tls.Client(cc, pki.ClientTLS(b, "localhost")).HandshakeContext(ctx); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	st := srv.ConnectionState()
	if !pki.IsMemberCertificate(st.VerifiedChains, a.Trust()) || st.VerifiedChains[0][0].Subject.CommonName != "i-b" {
		t.Errorf("the server does not see i-b as a member: %v", st.VerifiedChains)
	}
	if pki.IsMemberCertificate(st.VerifiedChains, newCA(t, "other", now).Trust) {
		t.Error("a chain of another CA passes as a member under a bundle without it")
	}
}
