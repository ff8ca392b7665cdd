package pki_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/pki"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// The real etcd (the appliance's bundled one, `etcd-appliance etcd`) on the
// files a Renewer writes: after a renewal a new connection is served the new
// certificate, with no restart — etcd reloads its certificate file at every
// handshake (see the package doc). Its trusted CA file, on the contrary, is
// read once: a CA added to it while etcd runs is trusted only after a
// restart.
func TestRealEtcdReloadsRenewedCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("real etcd: runs in the end-to-end tier")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := testcluster.BuildBinary(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	ca := newCA(t, "cluster-ca", now)
	files := combinedFiles(t)
	// 20 s, backdated 5 s: due 2/3 of 25 s after its start, 11.7 s after
	// its issue.
	server, err := pki.NewRenewer(pki.RenewerConfig{CA: ca, Request: memberRequest("i-etcd", 20*time.Second), Files: files})
	if err != nil {
		t.Fatal(err)
	}
	client := renewer(t, ca, memberRequest("i-client", time.Hour))
	first := server.Current()

	clientPort, peerPort := testcluster.FreePort(t), testcluster.FreePort(t)
	clientURL := "https://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "https://127.0.0.1:" + strconv.Itoa(peerPort)
	args := []string{
		"--name=i-etcd",
		"--data-dir=" + filepath.Join(t.TempDir(), "data"),
		"--listen-client-urls=" + clientURL, "--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=i-etcd=" + peerURL,
		// One combined file for certificate and key: one rename per renewal.
		"--cert-file=" + files.Cert, "--key-file=" + files.Key, "--trusted-ca-file=" + files.CA, "--client-cert-auth",
		"--peer-cert-file=" + files.Cert, "--peer-key-file=" + files.Key, "--peer-trusted-ca-file=" + files.CA, "--peer-client-cert-auth",
	}
	stopEtcd := startRealEtcd(t, bin, args...)
	served := func(c pki.Credentials) (*tlsResult, error) { return dialEtcd(clientPort, c) }

	// Before the renewal: healthy, serving the first certificate.
	var got *tlsResult
	waitFor(t, "etcd healthy over mutual TLS", func() bool {
		got, err = served(client)
		return err == nil && got.healthy
	})
	if got.serial.Cmp(first.Cert.SerialNumber) != 0 {
		t.Fatalf("etcd serves serial %x, want the first certificate's %x", got.serial, first.Cert.SerialNumber)
	}
	if _, err := httpsGet(clientPort, &tls.Config{RootCAs: ca.Trust.Pool(), ServerName: "127.0.0.1"}); err == nil {
		t.Error("etcd served a client without a certificate (--client-cert-auth)")
	}

	// The renewer renews on the real clock; etcd, untouched, serves the new
	// certificate to the next connection.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = server.Run(runCtx) }()
	waitFor(t, "a renewal", func() bool { return server.Current() != first })
	renewed := server.Current()
	if !time.Now().Before(first.Cert.NotAfter) {
		t.Errorf("renewed at %v, after the first certificate expired at %v", time.Now(), first.Cert.NotAfter)
	}
	got, err = served(client)
	if err != nil || !got.healthy {
		t.Fatalf("after the renewal: %v", err)
	}
	t.Logf("etcd served serial %x before the renewal, %x after", first.Cert.SerialNumber, got.serial)
	if got.serial.Cmp(renewed.Cert.SerialNumber) != 0 {
		t.Errorf("after the renewal etcd serves serial %x, want the renewed %x (first %x)",
			got.serial, renewed.Cert.SerialNumber, first.Cert.SerialNumber)
	}

	// The appliance's etcd client (gRPC) speaks the same mutual TLS.
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{clientURL}, TLS: pki.ClientTLS(client, "127.0.0.1"), DialTimeout: 5 * time.Second,
		Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	kvCtx, kvCancel := context.WithTimeout(ctx, 10*time.Second)
	defer kvCancel()
	if _, err := cli.Put(kvCtx, "k", "v"); err != nil {
		t.Errorf("Put through clientv3 with ClientTLS: %v", err)
	}

	// The trusted CA file is not reloaded: a member of a newly introduced CA
	// is refused, although the file on disk now trusts it, until etcd
	// restarts.
	next, err := pki.NewAuthority("cluster-ca-2", now, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	introduced := ca.Introduce(next)
	if err := server.SetCA(introduced); err != nil {
		t.Fatal(err)
	}
	promoted, err := introduced.Promote()
	if err != nil {
		t.Fatal(err)
	}
	newcomer := renewer(t, promoted, memberRequest("i-newcomer", time.Hour))
	if _, err := served(newcomer); err == nil {
		t.Error("etcd trusted a CA added to its --trusted-ca-file while it ran; the package doc says it reads the file once")
	} else {
		t.Logf("a member of the introduced CA, before etcd restarts: %v", err)
	}
	stopEtcd()
	startRealEtcd(t, bin, args...)
	waitFor(t, "the restarted etcd to serve the introduced CA's member", func() bool {
		got, err := served(newcomer)
		return err == nil && got.healthy
	})
}

type tlsResult struct {
	serial  *big.Int
	healthy bool
}

// dialEtcd asks etcd's /health over mutual TLS with c on a new connection
// and returns the serial of the certificate etcd showed.
func dialEtcd(port int, c pki.Credentials) (*tlsResult, error) {
	var res tlsResult
	cfg := pki.ClientTLS(c, "127.0.0.1")
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := verify(cs); err != nil {
			return err
		}
		res.serial = cs.PeerCertificates[0].SerialNumber
		return nil
	}
	body, err := httpsGet(port, cfg)
	if err != nil {
		return nil, err
	}
	var health struct {
		Health string `json:"health"`
	}
	if err := json.Unmarshal(body, &health); err != nil {
		return nil, err
	}
	res.healthy = health.Health == "true"
	return &res, nil
}

func httpsGet(port int, cfg *tls.Config) ([]byte, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	resp, err := client.Get("https://127.0.0.1:" + strconv.Itoa(port) + "/health")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// startRealEtcd runs `bin etcd args...` until the test ends or stop is
// called; its output goes to a file logged when the test fails.
func startRealEtcd(t *testing.T, bin string, args ...string) (stop func()) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "etcd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"etcd"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			logf.Close()
			if t.Failed() {
				out, _ := os.ReadFile(logPath)
				t.Logf("etcd output:\n%s", out)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
