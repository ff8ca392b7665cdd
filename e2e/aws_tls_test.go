package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// TestAWSTLSReplace terminates the leader's instance of a TLS group through
// the Auto Scaling API under a writer: the replacement reads the cluster CA
// from the one Secrets Manager secret the first instances made, issues
// itself a certificate of it and joins over TLS. The cluster keeps its id
// and 3 healthy voters, Route53's -ssl SRV records list the new set, no
// acknowledged write is lost, and every instance, the replacement too,
// serves a certificate of the secret's CA and writes that CA as its bundle.
func TestAWSTLSReplace(t *testing.T) {
	created := time.Now()
	g := newAWSGroupWith(t, fleet.AWSOptions{Size: 3, HostedZone: testZone, TLS: true})
	ctx := testContext(t, 3*time.Minute)
	st := waitAWSConverged(t, ctx, g, 3)
	waitAWSRecords(t, ctx, g, st)
	t.Logf("3 healthy voters over TLS and their -ssl records %s after creating the group", time.Since(created).Round(time.Millisecond))
	ca := theOneCASecret(t, ctx, g)
	for _, m := range st.Members {
		checkOfCA(t, ctx, g.Instance(m.Name), ca)
	}

	old := leaderOf(t, st)
	victim := g.Instance(old.Name)
	if victim == nil {
		t.Fatalf("leader %s (%s) is no instance of the group", old.ID, old.Name)
	}
	var survivors []string
	for _, m := range st.Members {
		if m.Name != victim.ID {
			survivors = append(survivors, m.Name)
		}
	}
	// The writer's client knows the survivors only, as a client that
	// follows DNS would after the termination.
	c, err := g.Client(ctx, survivors...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := startWriter(ctx, c, "aws-tls")
	waitAcked(t, ctx, w, 20)

	if err := g.TerminateInASG(ctx, victim.ID, false); err != nil {
		t.Fatal(err)
	}
	terminated := time.Now()
	repl := startReplacement(t, ctx, g, victim)
	after := waitAWSConverged(t, ctx, g, 3)
	converged := time.Since(terminated)
	if after.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s: a new cluster formed", st.ClusterID, after.ClusterID)
	}
	if _, ok := memberIDs(after)[old.ID]; ok {
		t.Fatalf("stale member %s of terminated %s still listed: %s", old.ID, victim.ID, fleet.Summarize(after))
	}
	if ids := inService(t, ctx, g); !slices.Equal(memberNames(after), ids) {
		t.Fatalf("members %v, want the in-service instances %v", memberNames(after), ids)
	}
	waitAWSRecords(t, ctx, g, after)
	published := time.Since(terminated)

	// Writes go on through the new set, the replacement included.
	newInst := g.Instance(repl)
	c.SetEndpoints(append(endpointsOf(g, survivors), newInst.ClientURL())...)
	waitAcked(t, ctx, w, w.acknowledged()+20)
	acked, gap, werr := w.stop()
	if werr != nil {
		t.Fatalf("the writer failed: %v", werr)
	}
	t.Logf("replaced leader %s by %s through the ASG over TLS: 3 healthy voters %s and the -ssl records %s after the termination; "+
		"writer: %d writes acknowledged, longest gap %s", victim.ID, newInst.ID, converged.Round(time.Millisecond),
		published.Round(time.Millisecond), acked, gap.Round(time.Millisecond))
	for _, m := range after.Members {
		checkWritten(t, ctx, g, m.Name, "aws-tls", acked)
	}

	// One secret still, and the replacement's certificate and bundle are
	// of its CA, as the first instances' are.
	if again := theOneCASecret(t, ctx, g); !again.Trust.Equal(ca.Trust) {
		t.Errorf("the CA secret changed during the replacement")
	}
	checkOfCA(t, ctx, newInst, ca)
}

// theOneCASecret is the cluster CA of a TLS group, read from moto's
// Secrets Manager, which must hold that one secret only.
func theOneCASecret(t *testing.T, ctx context.Context, g *fleet.AWSGroup) *pki.ClusterCA {
	t.Helper()
	ca, secrets, err := g.ClusterCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) != 1 {
		t.Fatalf("moto's Secrets Manager holds %v, want the one CA secret", secrets)
	}
	return ca
}

// checkOfCA checks that the instance serves, on its client and peer ports,
// a certificate for its address that verifies under ca, and that the CA
// bundle it wrote for its etcd (<data-dir>/tls/ca.pem) is ca's.
func checkOfCA(t *testing.T, ctx context.Context, inst *fleet.Instance, ca *pki.ClusterCA) {
	t.Helper()
	for _, port := range []string{"2379", "2380"} {
		chain, err := servedChain(ctx, net.JoinHostPort(inst.Address, port))
		if err != nil {
			t.Errorf("%s:%s: %v", inst.ID, port, err)
			continue
		}
		if _, err := ca.Trust.Verify(chain[0], chain[1:], x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
			t.Errorf("%s serves on %s a certificate the CA secret does not verify: %v", inst.ID, port, err)
		}
		if err := chain[0].VerifyHostname(inst.Address); err != nil {
			t.Errorf("%s's certificate on %s: %v", inst.ID, port, err)
		}
	}
	data, err := os.ReadFile(filepath.Join(inst.DataDir, "tls", "ca.pem"))
	if err != nil {
		t.Fatalf("%s's CA bundle: %v", inst.ID, err)
	}
	bundle, err := pki.ParseBundle(data)
	if err != nil {
		t.Fatalf("%s's CA bundle: %v", inst.ID, err)
	}
	if !bundle.Equal(ca.Trust) {
		t.Errorf("%s trusts a bundle that is not the CA secret's", inst.ID)
	}
}

// servedChain is the certificate chain a TLS server at addr shows, as it
// shows it, verified by nobody.
func servedChain(ctx context.Context, addr string) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	cfg := &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
		chain = cs.PeerCertificates
		return nil
	}}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(dctx, "tcp", addr)
	if conn != nil {
		conn.Close()
	}
	if len(chain) == 0 {
		if err == nil {
			err = errors.New("no certificate seen")
		}
		return nil, err
	}
	return chain, nil
}

// endpointsOf are the client URLs of the group's instances ids.
func endpointsOf(g *fleet.AWSGroup, ids []string) []string {
	var out []string
	for _, id := range ids {
		out = append(out, g.Instance(id).ClientURL())
	}
	return out
}
