package appliance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
)

// TestPortsWatchLogsAChangeOnce: a problem is logged when it begins or
// changes and again every portsProblemEvery while it lasts, its end once.
func TestPortsWatchLogsAChangeOnce(t *testing.T) {
	start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	busy := "port 2379 (--client-port) on 10.0.1.5 is in use, held by pid 42 (nginx)"
	other := "port 2380 (--peer-port) on 10.0.1.5 is in use, held by pid 42 (nginx)"
	var w portsWatch
	for i, step := range []struct {
		after   time.Duration
		problem string
		want    portsNote
	}{
		{0, "", portsQuiet},
		{time.Second, busy, portsReported},
		{5 * time.Second, busy, portsStill},
		{30 * time.Second, busy, portsStill},
		{61 * time.Second, busy, portsReported},
		{65 * time.Second, other, portsReported},
		{70 * time.Second, other, portsStill},
		{75 * time.Second, "", portsCleared},
		{80 * time.Second, "", portsQuiet},
		{85 * time.Second, busy, portsReported},
	} {
		if got := w.note(step.problem, start.Add(step.after)); got != step.want {
			t.Errorf("step %d (%q at +%s) = %s, want %s", i, step.problem, step.after, got, step.want)
		}
	}
}

// TestBusyPortHoldsEtcdBack: a port held by another process (this test)
// keeps etcd from starting: the launch fails naming the port, its flag and
// the holder, and the appliance says so once, publishes it for status, and
// says when the port is free again.
func TestBusyPortHoldsEtcdBack(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	a := testAppliance(t)
	var logs bytes.Buffer
	a.log = slog.New(slog.NewTextHandler(&logs, nil))
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	a.ports.Client = held.Addr().(*net.TCPAddr).Port
	a.ports.Peer, a.ports.Metrics = unusedPort(t), unusedPort(t)
	a.launcher.etcdCmd = []string{"/bin/true"}
	a.launcher.current = etcdRelease{Version: "3.6.16", Command: []string{"/bin/true"}}
	a.launcher.checkPorts = func(ctx context.Context, ports []etcd.Port) error { return etcd.CheckPorts(ctx, ports, 0) }
	want := fmt.Sprintf("port %d (--client-port) on 127.0.0.1 is in use, held by pid %d", a.ports.Client, os.Getpid())

	_, err = a.launcher.launch(t.Context(), cluster.LaunchOnData(a.self.ID, a.peerURL(), "tok"))
	var pe *etcd.PortError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), want) {
		t.Fatalf("launch on a held port = %v, want a port error with %q", err, want)
	}
	if p := a.peerState(); p.EtcdRunning {
		t.Error("etcd published as running after a launch refused on its port")
	}
	if r, ok, _ := a.data.lastRelease(); ok {
		t.Errorf("a launch refused on its port recorded release %+v", r)
	}

	// The launch's refusal is reported as the check before a plan's is:
	// the same problem, logged once for both.
	if !a.portsBusy(err) {
		t.Fatalf("portsBusy(%v) = false", err)
	}
	for range 3 {
		if a.etcdPortsFree(t.Context()) {
			t.Fatal("etcdPortsFree with a held client port = true")
		}
		now = now.Add(portsRetry)
	}
	if n := strings.Count(logs.String(), "etcd cannot listen on its ports"); n != 1 {
		t.Errorf("a refused launch and 3 looks at a held port logged it %d times, want once:\n%s", n, logs.String())
	}
	if waiting, _ := a.waitingFor(); !strings.Contains(waiting, want) {
		t.Errorf("waiting = %q, want it to say %q", waiting, want)
	}
	now = now.Add(portsProblemEvery)
	a.etcdPortsFree(t.Context())
	if n := strings.Count(logs.String(), "etcd cannot listen on its ports"); n != 2 {
		t.Errorf("a held port logged %d times after a minute, want twice:\n%s", n, logs.String())
	}

	held.Close()
	if !a.etcdPortsFree(t.Context()) {
		t.Fatal("etcdPortsFree once the port is let go = false")
	}
	if !strings.Contains(logs.String(), "etcd's ports are free again") {
		t.Errorf("the port's release was not logged:\n%s", logs.String())
	}
	if waiting, _ := a.waitingFor(); waiting != "" {
		t.Errorf("waiting = %q once the port is free", waiting)
	}
}

// TestAPIPortHolderIsNamed: the appliance API's own port, when busy, is
// refused naming its flag and holder.
func TestAPIPortHolderIsNamed(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	a := testAppliance(t)
	a.ports.API = held.Addr().(*net.TCPAddr).Port
	srv, err := a.api.serve()
	if err == nil {
		srv.Close()
		t.Fatal("serving the API on a held port succeeded")
	}
	want := fmt.Sprintf("port %d (--api-port) on 127.0.0.1 is in use, held by pid %d", a.ports.API, os.Getpid())
	if !strings.Contains(err.Error(), want) {
		t.Errorf("serve = %v, want %q", err, want)
	}
}

func unusedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
