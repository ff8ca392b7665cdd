package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// TestTLSCARotation rotates the cluster CA of a group of 3 with --tls auto
// under a writer (issue 11, "CA rotation"): `ca --step introduce`, every
// member's etcd restarted in turn to trust the new CA, `promote`, every
// member serving a certificate of the new CA, `retire`, every etcd
// restarted again to trust the new CA only. The steps refuse while they
// are not safe yet; a user certificate of the old CA is refused at the
// end; no acknowledged write is lost.
func TestTLSCARotation(t *testing.T) {
	g := newTLSGroup(t, "--tls-ca-refresh-interval", "1s")
	ctx := testContext(t, 3*time.Minute)
	insts, _ := startConverged(t, ctx, g, 3)
	store := pki.DirStore{Dir: g.CADir()}
	oldCA := storedCA(t, ctx, store)
	oldUser := issueUser(t, oldCA, "old-user")

	// The writer shows a user certificate and trusts the bundle an
	// operator would hand it at each step, taken at every handshake.
	wcreds := &swappableCredentials{}
	wcreds.set(oldUser, oldCA.Trust)
	var endpoints []string
	for _, inst := range insts {
		endpoints = append(endpoints, inst.ClientURL())
	}
	wc, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: wcreds.clientTLS(), DialTimeout: 2 * time.Second,
		Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	w := startWriter(ctx, wc, "carotation")

	caCmd := func(args ...string) (string, error) {
		args = append([]string{"ca", "--tls-ca-dir", g.CADir(), "--api", net.JoinHostPort(insts[0].Address, "2378")}, args...)
		out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	mustStep := func(step string) {
		t.Helper()
		out, err := caCmd("--step", step)
		if err != nil {
			t.Fatalf("ca --step %s: %v\n%s", step, err, out)
		}
		t.Logf("ca --step %s: %s", step, out)
	}
	refused := func(step string, want ...string) {
		t.Helper()
		out, err := caCmd("--step", step)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("ca --step %s too early: %v, want exit 1 (refused)\n%s", step, err, out)
		}
		if !strings.Contains(out, step+" refused") || !slices.ContainsFunc(want, func(w string) bool { return strings.Contains(out, w) }) ||
			strings.Count(out, "\n") > 0 {
			t.Errorf("ca --step %s too early said %q, want one line with one of %q", step, out, want)
		}
		t.Logf("ca --step %s too early: %s", step, out)
	}
	if out, err := caCmd(); err != nil || !strings.Contains(out, "next step: introduce, ready") {
		t.Fatalf("ca before the rotation: %v\n%s", err, out)
	}

	start := time.Now()
	mustStep("introduce")
	// Checked before anything waits: the members take the new bundle within
	// a second and restart etcd one after the other, seconds each.
	refused("promote", "was not restarted with the bundle", "has not read the bundle")
	refused("retire", "promote it first")
	if out, err := caCmd(); err != nil || !strings.Contains(out, "next step: promote, not yet") {
		t.Errorf("ca right after introduce: %v, want the promote not ready yet\n%s", err, out)
	}
	newCA := storedCA(t, ctx, store)
	if newCA.Next == nil {
		t.Fatal("no introduced CA stored")
	}
	newFP := pki.Fingerprint(newCA.Next.Cert)
	g.ReloadTLS()
	waitTLS(t, ctx, g, insts, "every etcd trusts the new CA", func(st cluster.TLSStatus) bool {
		return slices.Contains(st.EtcdTrusted, newFP) && slices.Contains(st.Trusted, newFP)
	})
	introduced := time.Since(start)
	wcreds.set(oldUser, newCA.Trust)

	mustStep("promote")
	promotedCA := storedCA(t, ctx, store)
	g.ReloadTLS()
	wcreds.set(issueUser(t, promotedCA, "new-user"), promotedCA.Trust)
	waitTLS(t, ctx, g, insts, "every member serves a certificate of the new CA", func(st cluster.TLSStatus) bool {
		return st.CertificateIssuer == newFP
	})
	checkServedIssuer(t, ctx, insts, promotedCA.Trust, newCA.Next.Cert)
	promoted := time.Since(start)

	mustStep("retire")
	retiredCA := storedCA(t, ctx, store)
	g.ReloadTLS()
	wcreds.set(wcreds.cert.Load(), retiredCA.Trust)
	waitTLS(t, ctx, g, insts, "every etcd trusts the new CA only", func(st cluster.TLSStatus) bool {
		return slices.Equal(st.EtcdTrusted, []string{newFP}) && st.Rotation == ""
	})
	retired := time.Since(start)

	acked, gap, werr := w.stop()
	failed := w.failures()
	t.Logf("CA rotation: rolled out introduce %s, promote %s, retire %s after the first step; writer: %d writes acknowledged, %d attempts failed, longest gap %s",
		introduced.Round(time.Millisecond), promoted.Round(time.Millisecond), retired.Round(time.Millisecond), acked, failed,
		gap.Round(time.Millisecond))
	if werr != nil {
		t.Errorf("writer: %v", werr)
	}
	if acked == 0 {
		t.Fatal("the writer wrote nothing")
	}
	// Each of the six restarts hands leadership over first: a write waits
	// at most an election, not an outage.
	if gap > 5*time.Second {
		t.Errorf("longest write gap %s, want at most 5s", gap)
	}
	checkServedIssuer(t, ctx, insts, retiredCA.Trust, newCA.Next.Cert)
	for _, inst := range insts {
		checkWritten(t, ctx, g, inst.ID, "carotation", acked)
	}
	// A user certificate of the retired CA is refused by every member; one
	// of the new CA, with the same client otherwise, is taken.
	newUser := wcreds.cert.Load()
	for _, inst := range insts {
		for _, user := range []struct {
			name string
			cert *tls.Certificate
			ok   bool
		}{{"old CA", oldUser, false}, {"new CA", newUser, true}} {
			c, err := clientv3.New(clientv3.Config{Endpoints: []string{inst.ClientURL()}, DialTimeout: 2 * time.Second,
				Logger: zap.NewNop(), TLS: (&swappableCredentials{}).with(user.cert, retiredCA.Trust).clientTLS()})
			if err == nil {
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_, err = c.Put(pctx, "/e2e/user", user.name)
				cancel()
				c.Close()
			}
			switch {
			case user.ok && err != nil:
				t.Errorf("%s refused a write with a user certificate of the %s: %v", inst.ID, user.name, err)
			case !user.ok && err == nil:
				t.Errorf("%s accepted a write with a user certificate of the retired CA", inst.ID)
			}
		}
	}
	if out, err := caCmd(); err != nil || !strings.Contains(out, "next step: introduce, ready") {
		t.Errorf("ca after the rotation: %v\n%s", err, out)
	}
	waitConverged(t, ctx, g, 3)
}

// storedCA is the cluster CA the store holds now.
func storedCA(t *testing.T, ctx context.Context, store pki.Store) *pki.ClusterCA {
	t.Helper()
	ca, _, err := pki.EnsureCA(ctx, store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issueUser(t *testing.T, ca *pki.ClusterCA, name string) *tls.Certificate {
	t.Helper()
	kp, err := ca.Issue(pki.LeafRequest{Kind: pki.User, CommonName: name, Lifetime: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return kp.TLSCertificate()
}

// waitTLS polls every member's /v1/status until its TLS report satisfies
// done.
func waitTLS(t *testing.T, ctx context.Context, g *fleet.Group, insts []*fleet.Instance, what string, done func(cluster.TLSStatus) bool) {
	t.Helper()
	start := time.Now()
	err := fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		for _, inst := range insts {
			st, err := g.StatusOf(ctx, inst.ID)
			switch {
			case err != nil:
				return false, fmt.Sprintf("%s: %v", inst.ID, err)
			case st.TLS == nil:
				return false, inst.ID + " reports no TLS"
			case !done(*st.TLS):
				return false, fmt.Sprintf("%s: %+v", inst.ID, *st.TLS)
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatalf("waiting until %s: %v", what, err)
	}
	t.Logf("%s after %s", what, time.Since(start).Round(time.Millisecond))
}

// checkServedIssuer checks that every member's client and peer ports show
// a certificate issued by ca.
func checkServedIssuer(t *testing.T, ctx context.Context, insts []*fleet.Instance, trust *pki.Bundle, ca *x509.Certificate) {
	t.Helper()
	creds := (&swappableCredentials{}).with(nil, trust)
	for _, inst := range insts {
		for _, port := range []string{"2379", "2380"} {
			cert, err := servedCertificate(ctx, net.JoinHostPort(inst.Address, port), creds.clientTLS())
			if err != nil {
				t.Errorf("%s:%s: %v", inst.ID, port, err)
				continue
			}
			if err := cert.CheckSignatureFrom(ca); err != nil {
				t.Errorf("%s:%s serves a certificate of %q, not of the new CA: %v", inst.ID, port, cert.Issuer.CommonName, err)
			}
		}
	}
}

// servedCertificate is the certificate a TLS server at addr shows on a new
// connection, verified by cfg against addr's host, and the handshake's
// error, if any (the certificate is returned when it was seen).
func servedCertificate(ctx context.Context, addr string, cfg *tls.Config) (*x509.Certificate, error) {
	cfg = cfg.Clone()
	var seen *x509.Certificate
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) > 0 {
			seen = cs.PeerCertificates[0]
		}
		if verify != nil {
			return verify(cs)
		}
		return nil
	}
	host, _, _ := net.SplitHostPort(addr)
	cfg.ServerName = host
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(dctx, "tcp", addr)
	if conn != nil {
		conn.Close()
	}
	if seen == nil {
		if err == nil {
			err = errors.New("no certificate seen")
		}
		return nil, err
	}
	return seen, err
}

// swappableCredentials are a client's certificate and trusted bundle that
// the test replaces at each step of a rotation, as an operator hands new
// files to a program; taken at every handshake.
type swappableCredentials struct {
	cert  atomic.Pointer[tls.Certificate]
	trust atomic.Pointer[pki.Bundle]
}

func (c *swappableCredentials) set(cert *tls.Certificate, trust *pki.Bundle) {
	c.cert.Store(cert)
	c.trust.Store(trust)
}

func (c *swappableCredentials) with(cert *tls.Certificate, trust *pki.Bundle) *swappableCredentials {
	c.set(cert, trust)
	return c
}

// clientTLS verifies the server's certificate under the bundle of the
// moment: a chain to one of its CAs, for server authentication. (The
// address is not checked: the test dials the members by address.)
func (c *swappableCredentials) clientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert := c.cert.Load(); cert != nil {
				return cert, nil
			}
			return &tls.Certificate{}, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			_, err := c.trust.Load().Verify(cs.PeerCertificates[0], cs.PeerCertificates[1:], x509.ExtKeyUsageServerAuth, time.Now())
			return err
		},
	}
}
