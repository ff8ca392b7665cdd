package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider/local"
)

// fakeEnv turns the test binary into a fake appliance or a fake etcd, so the
// fleet's process handling is tested without the real product.
const fakeEnv = "TESTCLUSTER_FAKE"

func TestMain(m *testing.M) {
	switch os.Getenv(fakeEnv) {
	case "appliance":
		os.Exit(fakeAppliance(os.Args[2:]))
	case "etcd":
		os.Exit(fakeEtcd())
	}
	os.Exit(m.Run())
}

// fakeAppliance serves /healthz and /v1/peer on its address and supervises a
// fake etcd child that dies with it, writing its pid to <data-dir>/etcd.pid.
func fakeAppliance(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	id := fs.String("instance-id", "", "")
	groupFile := fs.String("group-file", "", "")
	dataDir := fs.String("data-dir", "", "")
	fs.String("provider", "", "")
	fs.String("log-format", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	f, err := local.Read(*groupFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var self cluster.Instance
	for _, inst := range f.Instances {
		if inst.ID == *id {
			self = inst
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(self.Address, "2378"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/v1/peer", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(cluster.PeerState{InstanceID: *id, Address: self.Address, Phase: "fake"})
	})
	go http.Serve(ln, mux)

	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	for {
		child := exec.Command(os.Args[0], "etcd", "--name", *id, "--data-dir", filepath.Join(*dataDir, "etcd"))
		child.Env = append(os.Environ(), fakeEnv+"=etcd")
		child.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.WriteFile(filepath.Join(*dataDir, "etcd.pid"), []byte(strconv.Itoa(child.Process.Pid)), 0o644)
		exited := make(chan struct{})
		go func() { child.Wait(); close(exited) }()
		select {
		case <-term:
			child.Process.Signal(syscall.SIGTERM)
			<-exited
			return 0
		case <-exited:
			fmt.Fprintln(os.Stderr, "etcd exited; restarting it")
		}
	}
}

func fakeEtcd() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	<-term
	return 0
}

func newFakeGroup(t *testing.T) *Group {
	t.Helper()
	return newFakeGroupWith(t, Options{})
}

// newFakeGroupWith is a group of fake appliances with opts; its cleanup
// also checks that nothing of a netlab outlives Close.
func newFakeGroupWith(t *testing.T, opts Options) *Group {
	t.Helper()
	if testing.Short() {
		t.Skip("starts processes on loopback addresses or in network namespaces")
	}
	t.Setenv(fakeEnv, "appliance")
	opts.Binary, opts.Dir = os.Args[0], t.TempDir()
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(g.LogTails(30))
		}
		if err := g.Close(); err != nil {
			t.Error(err)
		}
		if left := g.NetlabLeftovers(); len(left) > 0 {
			t.Errorf("after Close, the netlab left %v", left)
		}
	})
	return g
}

func TestGroupProcessHandling(t *testing.T) {
	g := newFakeGroup(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	insts, err := g.LaunchN(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	a, b := insts[0], insts[1]
	if a.Address == b.Address || !strings.HasPrefix(a.Address, "127.") {
		t.Fatalf("addresses %s and %s: want two distinct loopback addresses", a.Address, b.Address)
	}
	if p, err := g.Peer(ctx, a.ID); err != nil || p.InstanceID != a.ID {
		t.Fatalf("Peer(%s) = %+v, %v", a.ID, p, err)
	}
	if err := g.Cut(a.ID, b.ID); !errors.Is(err, ErrNotNetns) {
		t.Fatalf("Cut on a loopback group: %v, want ErrNotNetns", err)
	}
	f, err := g.File()
	if err != nil || len(f.Instances) != 2 || f.Instances[0].State != cluster.InstanceRunning {
		t.Fatalf("group file %+v, %v: want two running instances", f, err)
	}

	// KillEtcd: the fake supervisor starts a new one. /healthz answers
	// before the fake's etcd is up: wait for it first.
	err = Poll(ctx, pollInterval, func() (bool, string) {
		pid, _ := a.EtcdPID()
		return pid != 0, "etcd not started"
	})
	if err != nil {
		t.Fatal(err)
	}
	old, err := g.KillEtcd(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	err = Poll(ctx, pollInterval, func() (bool, string) {
		pid, _ := a.EtcdPID()
		return pid != 0 && pid != old, "no new etcd"
	})
	if err != nil {
		t.Fatal(err)
	}

	// Kill: the appliance and its etcd are gone; Start brings them back.
	etcdPID, _ := a.EtcdPID()
	if err := g.Kill(a.ID); err != nil {
		t.Fatal(err)
	}
	if a.Running() || pidAlive(etcdPID) {
		t.Fatalf("after Kill: appliance running %v, etcd %d alive %v", a.Running(), etcdPID, pidAlive(etcdPID))
	}
	if err := g.WipeData(a.ID); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx, a.ID); err != nil {
		t.Fatal(err)
	}

	// Stop: SIGTERM, exit 0, etcd gone.
	etcdPID, _ = b.EtcdPID()
	if err := g.Stop(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if pidAlive(etcdPID) {
		t.Fatalf("etcd %d of a stopped appliance alive", etcdPID)
	}
	if err := g.WipeData(a.ID); err == nil {
		t.Fatal("WipeData of a running instance succeeded")
	}

	// Terminate, then reuse the address.
	if err := g.Terminate(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	c, err := g.LaunchAt(ctx, a.Address)
	if err != nil {
		t.Fatal(err)
	}
	f, _ = g.File()
	states := map[string]cluster.InstanceState{}
	for _, inst := range f.Instances {
		states[inst.ID] = inst.State
	}
	if states[a.ID] != cluster.InstanceTerminated || states[c.ID] != cluster.InstanceRunning || c.Address != a.Address {
		t.Fatalf("group file after terminate and relaunch: %+v", f)
	}
	running, err := g.RunningInGroup()
	if err != nil || len(running) != 1 || running[0] != c {
		t.Fatalf("RunningInGroup = %v, %v; want only %s", running, err, c)
	}
	wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer wcancel()
	if _, err := g.WaitConverged(wctx, 1); err == nil || !strings.Contains(err.Error(), c.ID+": GET /v1/status") {
		t.Errorf("WaitConverged on appliances without /v1/status: %v; want an error naming %s's view", err, c.ID)
	}
	if !strings.Contains(g.LogTail(a.ID, 5), "=== fleet") {
		t.Errorf("log of %s lacks the fleet's start line:\n%s", a.ID, g.LogTail(a.ID, 5))
	}
}

func TestSubnetsAreExclusive(t *testing.T) {
	s, err := reserveSubnet()
	if err != nil {
		t.Fatal(err)
	}
	defer s.release()
	path := s.lock.Name()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		t.Fatalf("subnet %s could be locked twice", s)
	}
	if s.prefix[0] != 127 || s.prefix[1] == 0 && s.prefix[2] <= 1 {
		t.Fatalf("reserved %s, which is kept for other uses", s)
	}
}

func TestPollReportsLastReason(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	n := 0
	err := Poll(ctx, 10*time.Millisecond, func() (bool, string) {
		n++
		return false, fmt.Sprintf("attempt %d", n)
	})
	if err == nil || !strings.Contains(err.Error(), "attempt") || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("Poll error %v: want the last reason and the deadline", err)
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	os.WriteFile(path, []byte("a\nb\nc\nd\n"), 0o644)
	if got := tail(path, 2); got != "c\nd" {
		t.Fatalf("tail = %q", got)
	}
	if got := tail(path, 10); got != "a\nb\nc\nd" {
		t.Fatalf("tail = %q", got)
	}
}
