package etcd

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/logging"

	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// realEtcdEnv names an etcd binary (a plain etcd, or a wrapper script running
// `etcd-appliance etcd "$@"`) to run these tests against. Without it they run
// the bundled etcd of $ETCD_APPLIANCE_BIN (set by `make test`); they are
// skipped only in the -short unit tier, and fail when no etcd is given.
const realEtcdEnv = "ETCD_TEST_BINARY"

func realEtcd(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("real etcd: runs in the end-to-end tier")
	}
	if bin := os.Getenv(realEtcdEnv); bin != "" {
		return bin
	}
	appliance := os.Getenv("ETCD_APPLIANCE_BIN")
	if appliance == "" {
		t.Fatalf("no etcd to test against: set %s or ETCD_APPLIANCE_BIN (make test does)", realEtcdEnv)
	}
	wrapper := filepath.Join(t.TempDir(), "etcd")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nexec "+appliance+" etcd \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper
}

// A real etcd started from Args answers on its metrics URL, stops on SIGTERM
// within the grace period, and its exit is no reason to replan.
func TestRealEtcdStartStop(t *testing.T) {
	bin := realEtcd(t)
	spec := singleMemberSpec(t)
	pidFile := filepath.Join(t.TempDir(), "etcd.pid")

	p, _ := startEtcd(t, bin, spec, pidFile)
	waitHealthy(t, p, spec)
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// etcd re-raises SIGTERM after its graceful shutdown.
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("Err() = %v, want etcd ended by its own SIGTERM", p.Err())
	}
	if kind := ClassifyExit(p.LastLines()); kind != ExitOther {
		t.Errorf("ClassifyExit after a stop = %q, want %q", kind, ExitOther)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after exit: %v", err)
	}
}

// A stop the appliance asks for logs no error: etcd's shutdown noise is
// INFO, without its stack traces, and every line is in the appliance's
// schema, under component=etcd once.
func TestRealEtcdCleanStopLogsNoError(t *testing.T) {
	bin := realEtcd(t)
	spec := singleMemberSpec(t)
	p, log := startEtcd(t, bin, spec, "")
	waitHealthy(t, p, spec)
	// etcd handles SIGTERM only once it serves (etcdmain: HandleInterrupts,
	// then this line); before, the signal ends it at once, logging nothing.
	waitFor(t, "etcd handling signals", func() bool { return strings.Contains(log.String(), `"msg":"notifying init daemon"`) })
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	lines := jsonLines(t, log.String())
	demoted := 0
	for _, l := range lines {
		if l["level"] == "ERROR" || l["stacktrace"] != nil {
			t.Errorf("a clean stop logged %v", l)
		}
		if l["time"] == nil || l["msg"] == nil || l["component"] != "etcd" || l["caller"] == nil || l["ts"] != nil {
			t.Errorf("line not in the appliance's schema: %v", l)
		}
		if l["etcd_level"] == "error" {
			demoted++
		}
	}
	// Not a vacuous pass: etcd did log its listeners' errors, made INFO.
	if demoted == 0 {
		t.Errorf("no error line of etcd's was made INFO; etcd's lines:\n%s", log.String())
	}
}

// A database overwritten with garbage makes etcd exit at once, and the kept
// lines say why.
func TestRealEtcdCorruptDatabase(t *testing.T) {
	bin := realEtcd(t)
	spec := singleMemberSpec(t)
	p, _ := startEtcd(t, bin, spec, "")
	waitHealthy(t, p, spec)
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	db := filepath.Join(spec.DataDir, "member", "snap", "db")
	if err := os.WriteFile(db, []byte("not a bbolt database, not at all, no"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, _ = startEtcd(t, bin, spec, "")
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("etcd did not exit on a corrupt database")
	}
	if kind := ClassifyExit(p.LastLines()); kind != ExitDataCorrupt {
		t.Errorf("ClassifyExit = %q, want %q; last lines:\n%q", kind, ExitDataCorrupt, p.LastLines())
	}
}

func singleMemberSpec(t *testing.T) ServerSpec {
	s := ServerSpec{
		Name:                "i-test",
		DataDir:             filepath.Join(t.TempDir(), "etcd"),
		Address:             "127.0.0.1",
		ClientPort:          testcluster.FreePort(t),
		PeerPort:            testcluster.FreePort(t),
		MetricsPort:         testcluster.FreePort(t),
		InitialClusterState: StateNew,
		ClusterToken:        "test",
	}
	s.InitialCluster = []NamedPeer{{Name: s.Name, PeerURL: s.PeerURL()}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

// startEtcd starts etcd on spec, logging its lines (at every level, as
// JSON) into the buffer returned.
func startEtcd(t *testing.T, bin string, spec ServerSpec, pidFile string) (*Process, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	p, err := Start(context.Background(), testLogger(t), bin, Args(spec), os.Environ(), logging.New(log, "json", slog.LevelDebug), pidFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(0) })
	return p, log
}

func waitHealthy(t *testing.T, p *Process, spec ServerSpec) {
	t.Helper()
	waitFor(t, "etcd healthy", func() bool {
		select {
		case <-p.Done():
			t.Fatalf("etcd exited: %v; last lines:\n%q", p.Err(), p.LastLines())
		default:
		}
		resp, err := http.Get(spec.MetricsURL() + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
