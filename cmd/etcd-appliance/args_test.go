package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// refusalTimeout bounds a command that must refuse at once: one that
// does not would otherwise run a daemon or a demo until the test times out.
const refusalTimeout = 20 * time.Second

// stderrOf runs f with os.Stderr going to a file, and returns what f wrote.
func stderrOf(t *testing.T, f func()) string {
	t.Helper()
	file, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	saved := os.Stderr
	os.Stderr = file
	defer func() { os.Stderr = saved }()
	f()
	b, err := os.ReadFile(file.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPositionalArgumentsAreRefused: no subcommand takes one; each refuses
// it with exit 2 and one line naming it, before doing anything.
func TestPositionalArgumentsAreRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), refusalTimeout)
	defer cancel()
	local := []string{"--instance-id", "i-1", "--group-file", "g.json", "--store", "file://" + t.TempDir()}
	for _, args := range [][]string{
		{"iam-policy", "extra"},
		{"demo", "extra"},
		{"demo", "--keep", "true"},
		{"status", "extra"},
		{"version", "extra"},
		append([]string{"run", "extra"}, local...),
		append(append([]string{"run"}, local...), "extra"),
		append(append([]string{"backup"}, local...), "extra"),
		append(append([]string{"restore", "--list"}, local...), "extra"),
	} {
		var code int
		out := stderrOf(t, func() { code = run(ctx, args) })
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != badConfigExit(args) || len(lines) != 1 || !strings.Contains(lines[0], "unexpected argument") ||
			!(strings.Contains(lines[0], `"extra"`) || strings.Contains(lines[0], `"true"`)) {
			t.Errorf("%q = exit %d, stderr:\n%s\nwant exit %d and one line naming the argument", args, code, out, badConfigExit(args))
		}
	}
}

// TestUnknownEnvIsWarnedOf: a mistyped variable is named, with the one it
// likely meant, next to the error it explains.
func TestUnknownEnvIsWarnedOf(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), refusalTimeout)
	defer cancel()
	t.Setenv("ETCD_APPLIANCE_PROVIDR", "aws")
	t.Setenv("ETCD_APPLIANCE_INSTANCE_ID", "i-1")
	var code int
	out := stderrOf(t, func() { code = run(ctx, []string{"run"}) })
	want := "warning: ETCD_APPLIANCE_PROVIDR is not a variable of the appliance: it is ignored (did you mean ETCD_APPLIANCE_PROVIDER?)"
	if code != exitConfig || !strings.Contains(out, want) || strings.Count(out, "ETCD_APPLIANCE_PROVIDR") != 1 {
		t.Errorf("run with ETCD_APPLIANCE_PROVIDR = exit %d, stderr:\n%s\nwant exit %d (no --group-file) and once %q", code, out, exitConfig, want)
	}
}
