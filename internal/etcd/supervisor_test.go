package etcd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/logging"
)

// childModeEnv makes the test binary act as a child instead of running the
// tests (see runChild). It must not start with ETCD_APPLIANCE_, which Start
// strips.
const childModeEnv = "ETCD_SUPERVISOR_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childModeEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	os.Exit(m.Run())
}

// runChild is the child's side of the tests. Every mode that stays up says
// "ready" once its signal handling is in place, so tests can wait for that.
func runChild(mode string) int {
	switch mode {
	case "sleep":
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
	case "grandchild", "grandchild-ignoring-term":
		// A grandchild in the same process group, as a child's helper would be.
		gmode := "sleep"
		if mode == "grandchild-ignoring-term" {
			gmode = "ignore-term"
		}
		g := exec.Command(os.Args[0])
		g.Env = append(os.Environ(), childModeEnv+"="+gmode)
		g.Stdout, g.Stderr = os.Stdout, os.Stderr
		if err := g.Start(); err != nil {
			fmt.Println("starting grandchild:", err)
			return 1
		}
		fmt.Println("grandchild", g.Process.Pid)
	case "supervisor":
		// An appliance: it supervises a sleeping child and gets killed.
		env := append(os.Environ(), childModeEnv+"=sleep")
		p, err := Start(context.Background(), nil, os.Args[0], nil, env, nil, "")
		if err != nil {
			fmt.Println("starting child:", err)
			return 1
		}
		fmt.Println("supervised", p.Pid())
	case "print":
		for i := 1; i <= 150; i++ {
			fmt.Printf("line %d\n", i)
		}
		fmt.Fprint(os.Stderr, "last words without a newline")
		return 3
	case "env":
		for _, kv := range os.Environ() {
			fmt.Println(kv)
		}
		return 0
	default:
		fmt.Println("unknown mode", mode)
		return 2
	}
	fmt.Println("ready")
	select {} // until the test stops it
}

// startChild starts the test binary as a child in mode with Start, and makes
// sure the test leaves no process behind. The child's output is logged, as
// JSON, into the buffer returned.
func startChild(t *testing.T, mode string, pidFile string, args ...string) (*Process, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	env := append(os.Environ(), childModeEnv+"="+mode)
	p, err := Start(context.Background(), testLogger(t), os.Args[0], args, env, logging.New(out, "json", slog.LevelDebug), pidFile)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(0); err != nil {
			t.Errorf("cleanup Stop: %v", err)
		}
	})
	return p, out
}

func TestStopEndsTheProcessGroup(t *testing.T) {
	for _, mode := range []string{"grandchild", "grandchild-ignoring-term"} {
		t.Run(mode, func(t *testing.T) {
			p, _ := startChild(t, mode, "")
			grandchild := waitGrandchild(t, p)
			waitFor(t, "child and grandchild ready", func() bool { return countLines(p, "ready") == 2 })

			if err := p.Stop(5 * time.Second); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			assertClosed(t, p.Done())
			waitFor(t, "grandchild gone", func() bool { return !alive(grandchild) })
			var ee *exec.ExitError
			if !errors.As(p.Err(), &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
				t.Errorf("Err() = %v, want the child ended by SIGTERM", p.Err())
			}
		})
	}
}

// The child dies with its supervisor, even one killed with SIGKILL.
func TestChildDiesWithSupervisor(t *testing.T) {
	supervisor := startExternal(t, "supervisor")
	var child int
	waitFor(t, "supervised child's pid", func() bool {
		for _, l := range strings.Split(supervisor.out.String(), "\n") {
			if n, ok := strings.CutPrefix(l, "supervised "); ok {
				child, _ = strconv.Atoi(n)
				return true
			}
		}
		return false
	})
	if !alive(child) {
		t.Fatal("supervised child not running")
	}
	t.Cleanup(func() {
		if alive(child) {
			_ = syscall.Kill(child, syscall.SIGKILL)
		}
	})
	if err := supervisor.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "supervised child gone", func() bool { return !alive(child) })
}

func TestStopKillsAfterGrace(t *testing.T) {
	p, _ := startChild(t, "ignore-term", "")
	waitFor(t, "child ready", func() bool { return countLines(p, "ready") == 1 })

	const grace = 300 * time.Millisecond
	begin := time.Now()
	if err := p.Stop(grace); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	took := time.Since(begin)
	assertClosed(t, p.Done())
	if took < grace {
		t.Errorf("Stop returned after %v, before the grace of %v ran out", took, grace)
	}
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("Err() = %v, want the child killed by SIGKILL", p.Err())
	}
}

func TestStopIsIdempotent(t *testing.T) {
	p, _ := startChild(t, "sleep", "")
	waitFor(t, "child ready", func() bool { return countLines(p, "ready") == 1 })
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Stop(5 * time.Second); err != nil {
				t.Errorf("concurrent Stop: %v", err)
			}
		}()
	}
	wg.Wait()
	if err := p.Stop(5 * time.Second); err != nil {
		t.Errorf("Stop after exit: %v", err)
	}
	assertClosed(t, p.Done())
}

func TestLastLinesAndOutput(t *testing.T) {
	p, out := startChild(t, "print", "")
	<-p.Done()

	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) || ee.ExitCode() != 3 {
		t.Errorf("Err() = %v, want exit status 3", p.Err())
	}
	var want []string
	for i := 150 - keptLines + 2; i <= 150; i++ {
		want = append(want, fmt.Sprintf("line %d", i))
	}
	want = append(want, "last words without a newline")
	if got := p.LastLines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("LastLines() = %d lines %q … %q, want %q … %q",
			len(got), got[0], got[len(got)-1], want[0], want[len(want)-1])
	}
	// Every line is logged, as it is at ERROR: none is one of etcd's.
	var msgs []string
	for _, l := range jsonLines(t, out.String()) {
		if l["level"] != "ERROR" || l["component"] != "etcd" {
			t.Errorf("child's line logged as %v, want level ERROR, component etcd", l)
		}
		msgs = append(msgs, fmt.Sprint(l["msg"]))
	}
	if len(msgs) != 151 || msgs[0] != "line 1" || msgs[149] != "line 150" || msgs[150] != "last words without a newline" {
		t.Errorf("the log did not get every line of the child's output; it got %d: %q", len(msgs), msgs)
	}
}

func TestChildEnvironment(t *testing.T) {
	env := []string{
		childModeEnv + "=env",
		"ETCD_APPLIANCE_STORE=s3://secret-bucket",
		"ETCD_APPLIANCE_DATA_DIR=/var/lib/etcd-appliance",
		"ETCD_QUOTA_BACKEND_BYTES=1", // etcd's own variables pass
		"KEEP=1",
		// A race-enabled child otherwise sleeps a second before exiting.
		"GORACE=atexit_sleep_ms=0",
	}
	p, err := Start(context.Background(), testLogger(t), os.Args[0], nil, env, nil, "")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	<-p.Done()
	if p.Err() != nil {
		t.Fatalf("child failed: %v: %q", p.Err(), p.LastLines())
	}
	got := p.LastLines()
	for _, kv := range got {
		if strings.HasPrefix(kv, "ETCD_APPLIANCE_") {
			t.Errorf("child saw %q", kv)
		}
	}
	for _, want := range []string{"KEEP=1", "ETCD_QUOTA_BACKEND_BYTES=1"} {
		if !contains(got, want) {
			t.Errorf("child did not see %q; its environment: %q", want, got)
		}
	}
	// Only what was passed: nothing inherited from the test process.
	if len(got) != 4 {
		t.Errorf("child's environment is %q, want exactly the 4 variables passed through", got)
	}
}

func TestPidFile(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "etcd.pid")
	p, _ := startChild(t, "sleep", pidFile)

	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("pid file after Start: %v", err)
	}
	if got := strings.TrimSpace(string(data)); got != strconv.Itoa(p.Pid()) {
		t.Errorf("pid file holds %q, want %d", got, p.Pid())
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after exit: %v, want it removed", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(pidFile)); len(entries) != 0 {
		t.Errorf("files left beside the pid file: %v", entries)
	}
}

func TestStartFailures(t *testing.T) {
	dir := t.TempDir()
	env := []string{childModeEnv + "=sleep"}

	_, err := Start(context.Background(), testLogger(t), filepath.Join(dir, "no-such-etcd"), nil, env, nil, filepath.Join(dir, "a.pid"))
	if err == nil {
		t.Error("Start of a missing binary succeeded")
	}
	if _, serr := os.Stat(filepath.Join(dir, "a.pid")); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("pid file written for a child that never ran: %v", serr)
	}

	// An unwritable pid file: the child must not be left running untracked.
	_, err = Start(context.Background(), testLogger(t), os.Args[0], []string{"--data-dir=" + dir}, env, testLogger(t), filepath.Join(dir, "missing", "etcd.pid"))
	if err == nil {
		t.Fatal("Start with an unwritable pid file succeeded")
	}
	if pids := processesWith(t, dir); len(pids) != 0 {
		t.Errorf("child %v still runs after Start failed", pids)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Start(ctx, testLogger(t), os.Args[0], nil, env, nil, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestKillLeftover(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "etcd")

	// Leftovers of an earlier appliance: started as Start would, but not by
	// this process's Start, so only the pid file knows them.
	leftover := startExternal(t, "grandchild", "--name=i-1", "--data-dir="+dataDir)
	grandchild := waitGrandchildOut(t, leftover.out)
	other := startExternal(t, "sleep", "--data-dir="+dataDir+"-other")

	pidFile := filepath.Join(dir, "etcd.pid")
	writeFile(t, pidFile, fmt.Sprintf("%d\n", other.cmd.Process.Pid))
	if err := KillLeftover(testLogger(t), pidFile, dataDir); err != nil {
		t.Fatalf("KillLeftover, pid file naming another process: %v", err)
	}
	if !alive(other.cmd.Process.Pid) {
		t.Error("KillLeftover killed a process that does not run on the data dir")
	}

	writeFile(t, pidFile, fmt.Sprintf("%d\n", leftover.cmd.Process.Pid))
	if err := KillLeftover(testLogger(t), pidFile, dataDir); err != nil {
		t.Fatalf("KillLeftover: %v", err)
	}
	if runsWith("/proc", leftover.cmd.Process.Pid, dataDir) {
		t.Error("leftover still runs after KillLeftover returned")
	}
	waitFor(t, "leftover's grandchild gone", func() bool { return !alive(grandchild) })
	if !alive(other.cmd.Process.Pid) {
		t.Error("KillLeftover killed a process outside the leftover's group")
	}
}

func TestKillLeftoverNoop(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content *string // nil: no pid file
	}{
		{"no pid file", nil},
		{"empty", ptr("")},
		{"garbage", ptr("etcd\x00\xff")},
		{"zero", ptr("0\n")},
		{"negative", ptr("-1\n")}, // kill(-1) would signal everything
		{"pid not running", ptr("999999999\n")},
		{"pid of a process without the argument", ptr(strconv.Itoa(os.Getpid()))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pidFile := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".pid")
			if tt.content != nil {
				writeFile(t, pidFile, *tt.content)
			}
			if err := KillLeftover(testLogger(t), pidFile, filepath.Join(dir, "etcd")); err != nil {
				t.Errorf("KillLeftover: %v, want nil", err)
			}
		})
	}
}

// runsWith recognises the data dir among the arguments, and only as a whole
// argument or a flag's whole value.
func TestRunsWith(t *testing.T) {
	proc := t.TempDir()
	fake := func(pid int, args ...string) {
		d := filepath.Join(proc, strconv.Itoa(pid))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		cmdline := strings.Join(args, "\x00")
		if len(args) > 0 {
			cmdline += "\x00"
		}
		writeFile(t, filepath.Join(d, "cmdline"), cmdline)
	}
	fake(10, "etcd-appliance", "etcd", "--name=i-1", "--data-dir=/var/lib/etcd")
	fake(11, "etcd", "--data-dir", "/var/lib/etcd")
	fake(12, "etcd", "--data-dir=/var/lib/etcd2")
	fake(13, "vim", "/var/lib/etcd/notes")
	fake(14) // a zombie's command line is empty

	tests := []struct {
		pid  int
		want bool
	}{
		{10, true}, {11, true}, {12, false}, {13, false}, {14, false}, {15, false},
	}
	for _, tt := range tests {
		if got := runsWith(proc, tt.pid, "/var/lib/etcd"); got != tt.want {
			t.Errorf("runsWith(pid %d) = %v, want %v", tt.pid, got, tt.want)
		}
	}
}

// externalProc is the test binary started with plain exec in its own process
// group: a child of an earlier appliance, or an appliance itself.
type externalProc struct {
	cmd *exec.Cmd
	out *syncBuffer
}

func startExternal(t *testing.T, mode string, args ...string) externalProc {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childModeEnv+"="+mode)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(waited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waited
	})
	waitFor(t, mode+" ready", func() bool { return strings.Contains(out.String(), "ready") })
	return externalProc{cmd: cmd, out: out}
}

func waitGrandchild(t *testing.T, p *Process) int {
	t.Helper()
	var pid int
	waitFor(t, "grandchild's pid", func() bool {
		for _, l := range p.LastLines() {
			if n, ok := strings.CutPrefix(l, "grandchild "); ok {
				pid, _ = strconv.Atoi(n)
				return true
			}
		}
		return false
	})
	return pid
}

func waitGrandchildOut(t *testing.T, out *syncBuffer) int {
	t.Helper()
	var pid int
	waitFor(t, "grandchild's pid", func() bool {
		for _, l := range strings.Split(out.String(), "\n") {
			if n, ok := strings.CutPrefix(l, "grandchild "); ok {
				pid, _ = strconv.Atoi(n)
				return true
			}
		}
		return false
	})
	return pid
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func assertClosed(t *testing.T, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	default:
		t.Fatal("Done not closed after Stop returned")
	}
}

// alive reports whether pid runs. A zombie does not: in a container nobody
// may reap an orphaned grandchild.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	state := stat[i+2]
	return state != 'Z' && state != 'X'
}

// processesWith lists the processes with arg among their arguments.
func processesWith(t *testing.T, arg string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && runsWith("/proc", pid, arg) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func countLines(p *Process, line string) int {
	n := 0
	for _, l := range p.LastLines() {
		if l == line {
			n++
		}
	}
	return n
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testWriter sends log lines to t.Log, so they show only for failing tests.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// syncBuffer is a bytes.Buffer safe for the copying goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
