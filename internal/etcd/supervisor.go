package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// applianceEnvPrefix marks the appliance's own configuration (SPEC §5). The
// child never sees it: etcd reads ETCD_* variables as its flags and logs each
// one it does not know, value included.
const applianceEnvPrefix = "ETCD_APPLIANCE_"

// outputDrainTimeout bounds how long an exited child's output may keep
// arriving. Everything in the child's process group is killed when the child
// exits, so the pipe closes at once unless something left the group with it.
const outputDrainTimeout = 2 * time.Second

// Process is a child started by Start, in its own process group.
type Process struct {
	logger  *slog.Logger
	pid     int
	pidFile string
	lines   *lineRing
	done    chan struct{}
	// stopping is set once Stop is called: from then on, etcd's shutdown
	// noise is no error (see shutdownNoise).
	stopping atomic.Bool

	mu     sync.Mutex
	exited bool  // the child has exited; its pid must not be signalled any more
	err    error // how it exited; set before done is closed
}

// Start execs bin with argv (argv excludes argv[0]) and returns once the
// child runs.
//
// The child gets its own process group, so that Stop reaches everything it
// spawned, and SIGKILL as its parent-death signal, so that it dies with the
// appliance. Its environment is env minus every ETCD_APPLIANCE_* variable (a
// nil env is an empty one, not the appliance's). Its stdout and stderr go
// into the last lines the Process keeps (LastLines) and, re-encoded one
// record per line, to etcdLog under component=etcd, as logger's own lines
// go: etcd's zap JSON lines with their time, level (dpanic, panic and fatal
// at ERROR), message, caller and fields, gRPC's lines with their severity,
// any other line at ERROR as it is.
// A nil etcdLog drops them. When pidFile is not empty the child's pid is
// written there and removed after it exited, for KillLeftover.
//
// ctx only bounds the start: the child is not tied to it, so that an
// appliance whose run context was cancelled can still stop etcd gracefully
// with Stop.
func Start(ctx context.Context, logger *slog.Logger, bin string, argv []string, env []string, etcdLog *slog.Logger, pidFile string) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "etcd")
	if etcdLog == nil {
		etcdLog = slog.New(slog.DiscardHandler)
	}
	etcdLog = etcdLog.With("component", "etcd")
	// Our own pipe rather than exec's: exec's Wait would also wait for the
	// output, and we want to kill the group between the exit and the reaping.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting %s: creating output pipe: %w", bin, err)
	}
	cmd := exec.Command(bin, argv...)
	cmd.Env = childEnv(env)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	p := &Process{
		logger:  logger,
		pidFile: pidFile,
		lines:   newLineRing(keptLines),
		done:    make(chan struct{}),
	}
	started := make(chan error, 1)
	copied := make(chan struct{})
	go p.wait(cmd, started, r, copied)
	err = <-started
	w.Close() // the child holds its own copy; ours would keep the pipe open after it exits
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		defer close(copied)
		p.copyOutput(r, newEtcdLog(etcdLog, p.stopping.Load))
	}()
	return p, nil
}

// wait starts cmd and then waits for it to exit, reporting the start on
// started. It owns the child from start to reaping.
func (p *Process) wait(cmd *exec.Cmd, started chan<- error, r *os.File, copied <-chan struct{}) {
	// The parent-death signal fires when the thread that forked the child
	// exits, not when the process does. Go ends a thread only when a goroutine
	// exits while locked to it, so keeping this goroutine locked from fork to
	// reaping means nobody else can lock that thread and end it under a
	// running etcd. The cost is one OS thread per child, of which there is one.
	// (Locking only around cmd.Start would hand the thread back to the
	// runtime, where a later LockOSThread without Unlock elsewhere in the
	// binary could end it and SIGKILL a healthy etcd.)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	if err := cmd.Start(); err != nil {
		started <- err
		return
	}
	p.pid = cmd.Process.Pid
	if err := writePidFile(p.pidFile, p.pid); err != nil {
		// Without the pid file a leftover of this child could not be found
		// after an appliance crash, so run no child rather than an untracked one.
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		_ = cmd.Wait()
		started <- err
		return
	}
	began := time.Now()
	p.logger.Info("etcd started", "pid", p.pid, "bin", cmd.Path, "args", cmd.Args[1:])
	started <- nil

	waitErr := waitExited(p.pid)
	p.mu.Lock()
	if waitErr == nil {
		// The child is a zombie until cmd.Wait reaps it, so its pid, and with
		// it the process group id, cannot have been reused: this kills only
		// what the child left behind in its group, never a stranger.
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	} else {
		p.logger.Warn("cannot see etcd exit without reaping it; not killing what it left in its group", "pid", p.pid, "err", waitErr)
	}
	p.exited = true
	p.mu.Unlock()
	err := cmd.Wait()

	select {
	case <-copied:
	case <-time.After(outputDrainTimeout):
		p.logger.Warn("etcd's output still open after it exited; closing it", "pid", p.pid)
		r.Close()
		<-copied
	}
	r.Close()
	if p.pidFile != "" {
		if rerr := os.Remove(p.pidFile); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			p.logger.Warn("removing pid file", "path", p.pidFile, "err", rerr)
		}
	}
	p.logger.Info("etcd exited", "pid", p.pid, "err", err, "ran", time.Since(began).Round(time.Millisecond))

	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
	close(p.done)
}

// copyOutput tees the child's output to its log and the kept lines until
// the pipe closes. Neither can fail: slog drops a record its writer refuses,
// so a full log disk does not block or kill etcd.
func (p *Process) copyOutput(r io.Reader, log *etcdLog) {
	defer p.lines.flush()
	defer log.flush()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			p.lines.Write(buf[:n])
			log.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// Pid is the child's process id, which is also its process group id.
func (p *Process) Pid() int { return p.pid }

// Done is closed when the child has exited, its output has been read and its
// pid file removed.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the child exited: nil for status 0, otherwise usually an
// *exec.ExitError. etcd stopped by SIGTERM re-raises the signal once it has
// shut down, so a clean Stop ends in "signal: terminated", not nil. Err is nil
// until Done is closed.
func (p *Process) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// LastLines is the child's last lines of output, oldest first. After Done
// they include everything it wrote before it exited.
func (p *Process) LastLines() []string { return p.lines.Lines() }

// Stop sends SIGTERM to the child's process group, waits up to grace for the
// child to exit and then sends SIGKILL to the group. It returns once the child
// has exited (see Done), also when called again or concurrently. The error is
// about stopping only; how the child exited is Err.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		p.logger.Debug("etcd already exited; nothing to stop", "pid", p.pid)
		return nil
	default:
	}
	p.logger.Info("stopping etcd", "pid", p.pid, "grace", grace)
	p.stopping.Store(true)
	if err := p.signalGroup(syscall.SIGTERM); err != nil {
		return err
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	p.logger.Warn("etcd did not exit within its grace period; killing its process group", "pid", p.pid, "grace", grace)
	if err := p.signalGroup(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	return nil
}

func (p *Process) signalGroup(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return nil
	}
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sending %v to process group %d: %w", sig, p.pid, err)
	}
	return nil
}

// waitExited blocks until pid has exited, leaving it unreaped (WNOWAIT).
func waitExited(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// childEnv is env without the appliance's own variables. It is never nil:
// exec would read a nil Env as "inherit the appliance's environment".
func childEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, applianceEnvPrefix) {
			out = append(out, kv)
		}
	}
	return out
}

// writePidFile writes pid to path through a rename, so that a crash never
// leaves a half-written file for KillLeftover.
func writePidFile(path string, pid int) error {
	if path == "" {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.WriteString(strconv.Itoa(pid) + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("writing pid file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing pid file %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	return nil
}
