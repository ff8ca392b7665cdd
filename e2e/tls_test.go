package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// newTLSGroup is newGroup with --tls auto, the cluster CA in the group's
// directory, and the fleet's clients speaking mutual TLS.
func newTLSGroup(t *testing.T, extraArgs ...string) *fleet.Group {
	t.Helper()
	return newGroupWith(t, fleet.Options{Args: extraArgs, TLS: true})
}

// TestTLSBootstrap starts a group of 3 with --tls auto: the first appliance
// creates the cluster CA, every member serves client and peer URLs over
// https and the cluster takes writes over mutual TLS. Clients without a
// certificate of the cluster CA are refused — a plaintext one, one over TLS
// without a certificate, one with a certificate of a foreign CA — while
// /healthz, /readyz and /metrics of the appliance API and etcd's metrics
// port serve anyone.
func TestTLSBootstrap(t *testing.T) {
	g := newTLSGroup(t)
	ctx := testContext(t, 2*time.Minute)
	insts, st := startConverged(t, ctx, g, 3)
	for _, inst := range insts {
		m := memberByName(t, st, inst.ID)
		if !strings.HasPrefix(m.PeerURL, "https://") || !strings.HasPrefix(m.ClientURL, "https://") {
			t.Errorf("member %s advertises peer %s and client %s, want https", m.Name, m.PeerURL, m.ClientURL)
		}
	}
	putKeys(t, ctx, g, "tls", 50)
	checkKeysOnEach(t, ctx, g, "tls", 50)

	inst := insts[0]
	refused := func(what string, cfg clientv3.Config) {
		t.Helper()
		cfg.DialTimeout, cfg.Logger = 2*time.Second, zap.NewNop()
		c, err := clientv3.New(cfg)
		if err != nil {
			return // refused at dial
		}
		defer c.Close()
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if _, err := c.Put(pctx, "/e2e/intruder", what); err == nil {
			t.Errorf("%s: a write was accepted", what)
		} else {
			t.Logf("%s: refused: %v", what, err)
		}
	}
	refused("plaintext client", clientv3.Config{Endpoints: []string{"http://" + net.JoinHostPort(inst.Address, "2379")}})
	// Trusting the cluster CA, so that only the missing certificate fails.
	trusting, err := g.ClientTLS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	noCert := trusting.Clone()
	noCert.GetClientCertificate = nil
	refused("TLS client without a certificate", clientv3.Config{Endpoints: []string{inst.ClientURL()}, TLS: noCert})
	foreign := foreignCredentials(t, pki.User, "intruder")
	foreignCert := trusting.Clone()
	foreignCert.GetClientCertificate = foreign.GetClientCertificate
	refused("TLS client with a certificate of a foreign CA", clientv3.Config{Endpoints: []string{inst.ClientURL()}, TLS: foreignCert})

	// The appliance API: health and metrics for anyone speaking TLS, the
	// peer state for members only, the status for any cluster certificate.
	anyone := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/v1/peer": 403, "/v1/status": 403} {
		resp, err := anyone.Get(inst.APIURL() + path)
		if err != nil {
			t.Errorf("GET %s without a certificate: %v", path, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s without a certificate: %s, want %d", path, resp.Status, want)
		}
	}
	// The monitoring pack's certificate alert reads these, which only an
	// appliance with TLS exports (TestMonitoringPack runs without).
	resp, err := anyone.Get(inst.APIURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for name := range onlyWithTLS {
		if !strings.Contains(string(body), "\n"+name+" ") {
			t.Errorf("/metrics over TLS lacks %s", name)
		}
	}
	userClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: trusting}}
	if resp, err := userClient.Get(inst.APIURL() + "/v1/peer"); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /v1/peer with a user certificate: %v (err %v), want 403: members only", resp, err)
	} else {
		resp.Body.Close()
	}
	if _, err := g.Peer(ctx, inst.ID); err != nil {
		t.Errorf("GET /v1/peer with the fleet's member certificate: %v", err)
	}
	if _, err := g.StatusOf(ctx, inst.ID); err != nil {
		t.Errorf("GET /v1/status with the fleet's user certificate: %v", err)
	}
	if resp, err := http.Get("http://" + net.JoinHostPort(inst.Address, "2381") + "/metrics"); err != nil {
		t.Errorf("etcd's metrics port: %v", err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusOK {
		t.Errorf("etcd's metrics port: %s", resp.Status)
	}
	// `etcd-appliance status` speaks TLS with a certificate it issues
	// itself from the CA directory.
	out, err := exec.CommandContext(ctx, binary, "status", "--api", net.JoinHostPort(inst.Address, "2378"), "--tls-ca-dir", g.CADir()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "3 of 3 voters healthy") {
		t.Errorf("status --tls-ca-dir: %v\n%s", err, out)
	}
	if out, err := exec.CommandContext(ctx, binary, "status", "--api", net.JoinHostPort(inst.Address, "2378"), "--timeout", "3s").CombinedOutput(); err == nil {
		t.Errorf("status without TLS flags answered from a TLS cluster:\n%s", out)
	}

	// A certificate from `client-cert` writes over TLS, as etcdctl would.
	certDir := t.TempDir()
	if out, err := exec.CommandContext(ctx, binary, "client-cert", "--name", "alice", "--out", certDir, "--tls-ca-dir", g.CADir()).CombinedOutput(); err != nil {
		t.Fatalf("client-cert: %v\n%s", err, out)
	}
	alice, err := (transport.TLSInfo{CertFile: filepath.Join(certDir, "cert.pem"), KeyFile: filepath.Join(certDir, "key.pem"),
		TrustedCAFile: filepath.Join(certDir, "ca.pem")}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	ac, err := clientv3.New(clientv3.Config{Endpoints: []string{inst.ClientURL()}, TLS: alice, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = ac.Put(pctx, "/e2e/alice", "hello")
	cancel()
	ac.Close()
	if err != nil {
		t.Errorf("a write with client-cert's certificate: %v", err)
	}

	// The peer port admits member certificates only: the fleet's user
	// certificate, of the cluster CA, is refused there.
	if err := peerPortAccepts(ctx, inst, trusting); err == nil {
		t.Errorf("the peer port of %s accepted a user certificate", inst.ID)
	} else {
		t.Logf("user certificate on the peer port: refused: %v", err)
	}
}

// peerPortAccepts completes a request to the instance's peer port with cfg
// and says whether etcd served it.
func peerPortAccepts(ctx context.Context, inst *fleet.Instance, cfg *tls.Config) error {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, inst.PeerURL()+"/version", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// foreignCredentials is a certificate of kind from a CA that is not the
// cluster's.
func foreignCredentials(t *testing.T, kind pki.Kind, name string) *pki.Renewer {
	t.Helper()
	ca, err := pki.NewClusterCA("foreign CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req := pki.LeafRequest{Kind: kind, CommonName: name, Lifetime: 30 * time.Minute}
	if kind == pki.Member {
		req.IPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	r, err := pki.NewRenewer(pki.RenewerConfig{CA: ca, Request: req})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestTLSReplace takes a by-hand backup of a TLS group, then terminates
// the leader's instance and launches a replacement: it issues itself a certificate of the cluster CA,
// joins over TLS, and the stale member goes.
func TestTLSReplace(t *testing.T) {
	g := newTLSGroup(t, "--store", "file://"+t.TempDir(), "--backup-interval", "1h")
	ctx := testContext(t, 2*time.Minute)
	insts, st := startConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "before", 20)
	// A by-hand backup reaches etcd over TLS with a certificate it issues
	// itself from the CA.
	if out, errOut, code, err := g.Command(ctx, insts[1].ID, "backup"); err != nil || code != 0 {
		t.Fatalf("backup over TLS: exit %d, err %v\n%s%s", code, err, out, errOut)
	}
	old := leaderOf(t, st)
	victim := g.Instance(old.Name)
	if err := g.Terminate(ctx, victim.ID); err != nil {
		t.Fatal(err)
	}
	launched := time.Now()
	repl, err := g.Launch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := waitConverged(t, ctx, g, 3)
	t.Logf("replaced %s by %s over TLS; converged %s after the launch", victim, repl, time.Since(launched).Round(time.Millisecond))
	if after.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s: a new cluster formed", st.ClusterID, after.ClusterID)
	}
	if m := memberByName(t, after, repl.ID); !strings.HasPrefix(m.PeerURL, "https://"+repl.Address+":") {
		t.Errorf("new member %s advertises %s, want https on %s", m.ID, m.PeerURL, repl.Address)
	}
	checkKeysOnEach(t, ctx, g, "before", 20)
	putKeys(t, ctx, g, "after", 20)
}

// TestChaosTLSRenewal runs a group whose certificates live 2 minutes under a
// writer: each member renews its certificate after two thirds of its
// validity, and etcd serves the new one on its client and peer ports
// without a restart, while the writer sees no error.
func TestChaosTLSRenewal(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a certificate renewal, over a minute")
	}
	g := newTLSGroup(t, "--tls-cert-lifetime", "2m")
	ctx := testContext(t, 3*time.Minute)
	insts, _ := startConverged(t, ctx, g, 3)
	cfg, err := g.ClientTLS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := map[string]*big.Int{}
	etcdPIDs := map[string]int{}
	for _, inst := range insts {
		serial, err := servedSerial(ctx, inst.Address+":2379", cfg)
		if err != nil {
			t.Fatal(err)
		}
		first[inst.ID] = serial
		etcdPIDs[inst.ID], _ = inst.EtcdPID()
	}

	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var writes, failures atomic.Int64
	var lastErr atomic.Value
	wctx, stopWriter := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; wctx.Err() == nil; i++ {
			pctx, cancel := context.WithTimeout(wctx, 2*time.Second)
			_, err := c.Put(pctx, keyName("renewal", i%100), fmt.Sprint(i))
			cancel()
			switch {
			case err == nil:
				writes.Add(1)
			case wctx.Err() == nil:
				failures.Add(1)
				lastErr.Store(err.Error())
			}
			select {
			case <-wctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	})

	start := time.Now()
	err = fleet.Poll(ctx, time.Second, func() (bool, string) {
		for _, inst := range insts {
			for _, port := range []string{"2379", "2380"} {
				serial, err := servedSerial(ctx, inst.Address+":"+port, cfg)
				if err != nil {
					return false, fmt.Sprintf("%s:%s: %v", inst.ID, port, err)
				}
				if serial.Cmp(first[inst.ID]) == 0 {
					return false, fmt.Sprintf("%s still serves serial %x on %s after %s", inst.ID, serial, port, time.Since(start).Round(time.Second))
				}
			}
		}
		return true, ""
	})
	renewed := time.Since(start)
	stopWriter()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("every member serves a renewed certificate on its client and peer ports %s after the group converged; writer: %d writes, %d failed",
		renewed.Round(time.Second), writes.Load(), failures.Load())
	if failures.Load() > 0 {
		t.Errorf("%d writes failed during the renewals, the last: %v", failures.Load(), lastErr.Load())
	}
	if writes.Load() == 0 {
		t.Error("the writer wrote nothing")
	}
	for _, inst := range insts {
		if pid, _ := inst.EtcdPID(); pid != etcdPIDs[inst.ID] {
			t.Errorf("etcd of %s restarted (pid %d, was %d): a renewal needs no restart", inst.ID, pid, etcdPIDs[inst.ID])
		}
	}
	waitConverged(t, ctx, g, 3)
}

// servedSerial is the serial of the certificate a TLS server at addr shows
// on a new connection. The client's certificate may be refused after the
// handshake (a user's on the peer port): the server's was seen by then.
func servedSerial(ctx context.Context, addr string, cfg *tls.Config) (*big.Int, error) {
	cert, err := servedCertificate(ctx, addr, cfg)
	if cert == nil {
		return nil, err
	}
	return cert.SerialNumber, nil
}

// TestTLSFiles runs a group on the operator's certificate files (--tls
// files), issued here from a CA the appliances never see the key of: the
// cluster forms over TLS, and a certificate replaced on disk is served
// without a restart, by etcd at once and by the appliance API at its next
// look at the files.
func TestTLSFiles(t *testing.T) {
	g := newTLSGroup(t)
	ctx := testContext(t, 2*time.Minute)
	// The fleet's clients take their certificate from the CA directory.
	ca, _, err := pki.EnsureCA(ctx, pki.DirStore{Dir: g.CADir()}, func() (*pki.ClusterCA, error) {
		return pki.NewClusterCA("operator CA", time.Now(), 48*time.Hour)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	insts, err := g.Add(3)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]pki.KeyPairFiles{}
	issue := func(inst *fleet.Instance) {
		t.Helper()
		kp, err := ca.Issue(pki.LeafRequest{Kind: pki.Member, CommonName: inst.ID,
			IPs: []net.IP{net.ParseIP(inst.Address), net.IPv4(127, 0, 0, 1)}, Lifetime: time.Hour}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteKeyPair(files[inst.ID], kp, ca.Trust); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, inst := range insts {
		dir := t.TempDir()
		f := pki.KeyPairFiles{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), CA: filepath.Join(dir, "ca.pem")}
		files[inst.ID] = f
		issue(inst)
		// --tls-ca-dir= undoes the fleet's --tls auto flags.
		if err := g.SetArgs(inst.ID, "--tls", "files", "--tls-ca-dir=", "--tls-cert-file", f.Cert, "--tls-key-file", f.Key,
			"--tls-trusted-ca-file", f.CA); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, inst.ID)
	}
	start := time.Now()
	if err := g.Start(ctx, ids...); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ctx, g, 3)
	t.Logf("3 healthy voters on the operator's files %s after the start", time.Since(start).Round(time.Millisecond))
	putKeys(t, ctx, g, "files", 20)

	cfg, err := g.ClientTLS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inst := insts[0]
	before, err := servedSerial(ctx, inst.Address+":2379", cfg)
	if err != nil {
		t.Fatal(err)
	}
	issue(inst)
	pid, _ := inst.EtcdPID()
	replaced := time.Now()
	for _, port := range []string{"2379", "2378"} {
		err := fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
			serial, err := servedSerial(ctx, inst.Address+":"+port, cfg)
			if err != nil {
				return false, err.Error()
			}
			return serial.Cmp(before) != 0, fmt.Sprintf("port %s still serves serial %x", port, serial)
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("port %s serves the replaced certificate %s after the files changed", port, time.Since(replaced).Round(time.Millisecond))
	}
	if now, _ := inst.EtcdPID(); now != pid {
		t.Errorf("etcd of %s restarted (pid %d, was %d)", inst.ID, now, pid)
	}
	putKeys(t, ctx, g, "after", 20)
	waitConverged(t, ctx, g, 3)
}

// TestAWSTLS runs an Auto Scaling group with --tls auto --tls-ca-secret:
// the first instance creates the cluster CA in moto's Secrets Manager (its
// region from IMDS), the others read it, and the cluster forms over TLS.
// Each member's certificate names its DNS names in the hosted zone, and the
// SRV records are the -ssl ones.
func TestAWSTLS(t *testing.T) {
	start := time.Now()
	g := newAWSGroupWith(t, fleet.AWSOptions{Size: 3, HostedZone: testZone, TLS: true})
	ctx := testContext(t, 3*time.Minute)
	st := waitAWSConverged(t, ctx, g, 3)
	t.Logf("3 healthy voters over TLS %s after creating the group; cluster %s", time.Since(start).Round(time.Millisecond), st.ClusterID)
	putKeys(t, ctx, g, "aws-tls", 20)
	spec := g.DNSSpec()
	for _, m := range st.Members {
		if !strings.HasPrefix(m.PeerURL, "https://") {
			t.Errorf("member %s advertises %s, want https", m.Name, m.PeerURL)
		}
		inst := g.Instance(m.Name)
		conn, err := tls.Dial("tcp", net.JoinHostPort(inst.Address, "2378"), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		cert := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		for _, name := range spec.CertNames(m.Name) {
			if err := cert.VerifyHostname(name); err != nil {
				t.Errorf("%s's certificate: %v", m.Name, err)
			}
		}
	}
	err := fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		recs, err := g.Records(ctx)
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for _, r := range recs {
			names = append(names, r.Name)
			if r.Type == cluster.RecordSRV && r.Name == "_etcd-client-ssl._tcp."+spec.Domain() && len(r.Values) == 3 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no _etcd-client-ssl SRV record of 3 members among %v", names)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTLSMismatchWaitsAndSaysWhy: an empty instance started with --tls off
// beside a running TLS cluster never joins it and creates nothing: it
// waits, as for peers that do not answer, and its /v1/status, `status` and
// metrics say that its peers run with TLS and it without, and the remedy.
// The membership stays as it was.
func TestTLSMismatchWaitsAndSaysWhy(t *testing.T) {
	g := newTLSGroup(t)
	ctx := testContext(t, 2*time.Minute)
	insts, st := startConverged(t, ctx, g, 3)
	launched := time.Now()
	// --tls-ca-dir= undoes the fleet's --tls auto flags.
	plain, err := g.LaunchNWith(ctx, 1, "--tls", "off", "--tls-ca-dir=")
	if err != nil {
		t.Fatal(err)
	}
	id := plain[0].ID
	const why = "each runs with TLS, this instance without"
	var waiting string
	wctx, cancel := context.WithTimeout(ctx, convergeTimeout)
	err = fleet.Poll(wctx, 200*time.Millisecond, func() (bool, string) {
		s, err := g.StatusOf(wctx, id)
		if err != nil {
			return false, err.Error()
		}
		waiting = s.Waiting
		ignored := 0
		for _, u := range s.Unanswered {
			if u.Ignored == cluster.PeerRunsTLS {
				ignored++
			}
		}
		return strings.Contains(s.Waiting, why) && ignored == 3, fmt.Sprintf("%s waits: %q, unanswered %+v", id, s.Waiting, s.Unanswered)
	})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s says why %s after its launch: %s", id, time.Since(launched).Round(time.Millisecond), waiting)
	asked := time.Now()
	if _, err := g.StatusOf(ctx, id); err != nil {
		t.Fatal(err)
	}
	t.Logf("its /v1/status answered in %s", time.Since(asked).Round(time.Millisecond))
	if !strings.Contains(waiting, "same --tls") {
		t.Errorf("%s waits for %q, which names no remedy", id, waiting)
	}
	if v := metricValue(t, ctx, plain[0], `etcd_appliance_peers_ignored{reason="peer_tls"}`); v != "3" {
		t.Errorf(`etcd_appliance_peers_ignored{reason="peer_tls"} = %q on %s, want 3`, v, id)
	}
	// `status` exits 1, degraded: the instance answers and waits.
	out, err := exec.CommandContext(ctx, binary, "status", "--api", net.JoinHostPort(plain[0].Address, "2378")).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), id+" waits: ") ||
		!strings.Contains(string(out), "it runs with TLS, this instance without") {
		t.Errorf("status of %s: %v, want exit 1 saying why it waits\n%s", id, err, out)
	}
	now, err := g.StatusOf(ctx, insts[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	assertSameMembers(t, st, now)
	if err := g.Terminate(ctx, id); err != nil {
		t.Fatal(err)
	}
}
