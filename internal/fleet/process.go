package fleet

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one run of an appliance: started by Start, ended by a signal
// or on its own.
type process struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	// err is cmd.Wait's result, valid once done is closed.
	err error
	// signaled is the last signal the fleet sent, to tell a deliberate
	// kill from a crash.
	signaled syscall.Signal
}

// startProcess starts binary with args, its output appended to logPath;
// env nil means the fleet's own environment.
func startProcess(binary string, args, env []string, logPath string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the log: %w", err)
	}
	fmt.Fprintf(logf, "=== fleet %s: %s %s\n", time.Now().Format(time.RFC3339Nano), binary, strings.Join(args, " "))
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: a Ctrl-C at the terminal reaches the fleet
		// only, which then stops the group in order.
		Setpgid: true,
		// The appliance dies with the fleet, and its etcd with it.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	p := &process{cmd: cmd, log: logf, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) signal(sig syscall.Signal) {
	p.signaled = sig
	_ = p.cmd.Process.Signal(sig)
}

// exitError describes how the process ended, nil for a clean exit 0.
func (p *process) exitError() error {
	if p.err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("killed by %s", ws.Signal())
		}
		return fmt.Errorf("exit status %d", ee.ExitCode())
	}
	return p.err
}

// pidAlive reports whether pid is a live process; zombies count as dead,
// because the etcd child of a killed appliance is reaped by whoever adopts it.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return !os.IsNotExist(err)
	}
	// The state follows the command name, which is in parentheses.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		switch b[i+2] {
		case 'Z', 'X':
			return false
		}
	}
	return true
}

// cmdlineContains reports whether the command line of pid mentions any of
// words; it guards against killing a process that reused an old pid.
func cmdlineContains(pid int, words ...string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	cmdline := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
	for _, w := range words {
		if w != "" && strings.Contains(cmdline, w) {
			return true
		}
	}
	return false
}

// readPIDFile returns the pid written in path, 0 when there is none.
func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return 0, nil
	}
	pid, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("pid file %s holds %q: %w", path, s, err)
	}
	return pid, nil
}

// tail returns the last n lines of the file at path, reading at most its
// last 512 KiB.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const maxRead = 512 << 10
	var off int64
	if fi, err := f.Stat(); err == nil && fi.Size() > maxRead {
		off = fi.Size() - maxRead
	}
	b := make([]byte, maxRead)
	k, _ := f.ReadAt(b, off)
	b = bytes.TrimRight(b[:k], "\n")
	lines := bytes.Split(b, []byte{'\n'})
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // the first one is cut
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte{'\n'}))
}
