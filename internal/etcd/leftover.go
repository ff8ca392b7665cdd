package etcd

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// leftoverGoneTimeout bounds the wait for a killed leftover to disappear.
// SIGKILL cannot be caught, so only a process stuck in the kernel (a hung
// disk) takes longer.
const leftoverGoneTimeout = 10 * time.Second

// KillLeftover kills the child an earlier appliance left running: one that
// died without stopping its etcd, which then still holds the data dir.
//
// pidFile is the file Start wrote. The process it names is killed, with its
// whole process group, only when it is alive and one of its arguments is
// wantArg or ends in "="+wantArg (pass the data dir, which no other process
// names), so a pid reused since by an unrelated process is left alone. It
// returns once the process is gone. A missing pid file, or one that holds no
// pid, means there is nothing to do.
func KillLeftover(logger *slog.Logger, pidFile, wantArg string) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "etcd")
	return killLeftover(logger, "/proc", pidFile, wantArg, leftoverGoneTimeout)
}

// killLeftover is KillLeftover reading processes from procRoot, so tests can
// give it a fake /proc.
func killLeftover(logger *slog.Logger, procRoot, pidFile, wantArg string, timeout time.Duration) error {
	if wantArg == "" {
		return errors.New("killing leftover etcd: no argument to recognise it by")
	}
	data, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		logger.Debug("no pid file; no leftover etcd", "path", pidFile)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading pid file %s: %w", pidFile, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		logger.Warn("pid file holds no pid; ignoring it", "path", pidFile, "content", truncate(string(data), 64))
		return nil
	}
	if !runsWith(procRoot, pid, wantArg) {
		logger.Debug("pid file names no running etcd of this data dir", "path", pidFile, "pid", pid)
		return nil
	}

	// Start made the child a group leader, so its group is its own. Should
	// the pid not lead a group, kill the process alone rather than guess, and
	// never the appliance's own group.
	target := pid
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid && pgid != syscall.Getpgrp() {
		target = -pid
	}
	logger.Info("killing etcd left over by an earlier appliance", "pid", pid, "process_group", target < 0, "matched", wantArg)
	if err := syscall.Kill(target, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing leftover etcd %d: %w", pid, err)
	}

	deadline := time.Now().Add(timeout)
	for runsWith(procRoot, pid, wantArg) {
		if time.Now().After(deadline) {
			return fmt.Errorf("leftover etcd %d still running %v after SIGKILL", pid, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	logger.Info("leftover etcd gone", "pid", pid)
	return nil
}

// runsWith reports whether process pid is alive with wantArg among its
// arguments. A zombie has an empty command line, so a killed process that
// nobody reaped yet counts as gone.
func runsWith(procRoot string, pid int, wantArg string) bool {
	cmdline, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	for _, arg := range bytes.Split(bytes.TrimRight(cmdline, "\x00"), []byte{0}) {
		a := string(arg)
		if a == wantArg || strings.HasSuffix(a, "="+wantArg) {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Running reports whether the etcd that pidFile names still runs on the
// data dir wantArg, and its pid.
func Running(pidFile, wantArg string) (int, bool) {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, runsWith("/proc", pid, wantArg)
}
