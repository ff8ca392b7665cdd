package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

func TestBadConfigurationExitsNonZero(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"run", "--provider", "nope"},
		{"run", "--instance-id", "i-1"},
		{"run", "--instance-id", "i-1", "--group-file", "g.json", "--data-dir", file},
		{"run", "--instance-id", "i-1", "--group-file", "g.json", "--client-port", "70000"},
		{"run", "--instance-id", "i-1", "--group-file", "g.json", "--address", "0.0.0.0"},
		{"run", "--no-such-flag"},
		{"run", "--instance-id", "i-1", "--group-file", "g.json", "--etcd-auth"},
		{"run", "--instance-id", "i-1", "--group-file", "g.json", "--store", "/backups"},
		{"backup", "--instance-id", "i-1", "--group-file", "g.json"},
		{"backup", "--instance-id", "i-1", "--group-file", "g.json", "--store", "ftp://host/x"},
		{"restore", "--instance-id", "i-1", "--group-file", "g.json", "--list"},
		{"restore", "--instance-id", "i-1", "--group-file", "g.json", "--store", "file:///tmp/x"},
		{"restore", "--instance-id", "i-1", "--group-file", "g.json", "--store", "file:///tmp/x", "--list", "--set-aside"},
		{"no-such-command"},
		{},
	} {
		if code, want := run(context.Background(), args), badConfigExit(args); code != want {
			t.Errorf("run %q = %d, want %d", args, code, want)
		}
	}
}

func TestBadEnvironmentExitsNonZero(t *testing.T) {
	t.Setenv("ETCD_APPLIANCE_PEER_PORT", "not-a-port")
	if code := run(context.Background(), []string{"run", "--instance-id", "i-1", "--group-file", "g.json"}); code != exitConfig {
		t.Errorf("run with a bad env value = %d, want %d", code, exitConfig)
	}
}

func TestVersionAndStatusWithoutAnAPI(t *testing.T) {
	if code := run(context.Background(), []string{"version"}); code != 0 {
		t.Errorf("version = %d", code)
	}
	var b bytes.Buffer
	printVersion(&b)
	if !strings.Contains(b.String(), "bundled etcd 3.7.") {
		t.Errorf("version output %q lacks the bundled etcd version", b.String())
	}
	if code := run(context.Background(), []string{"status", "--api", "http://127.0.0.1:1", "--timeout", "2s"}); code != statusUnreachable {
		t.Errorf("status against nothing = %d, want %d (unreachable)", code, statusUnreachable)
	}
}

func TestStatusTable(t *testing.T) {
	st := cluster.ClusterStatus{Reporter: "i-a", ObservedAt: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), ClusterID: 0x1f,
		Members: []cluster.MemberStatus{
			{ID: 0xa, Name: "i-a", Role: cluster.RoleVoter, Healthy: true, Leader: true, Revision: 7, InGroup: true},
			{ID: 0xb, Name: "i-b", Role: cluster.RoleVoter, Healthy: false, InGroup: false, Error: "deadline exceeded"},
			{ID: 0xc, Role: cluster.RoleUnstarted},
		}}
	var b bytes.Buffer
	printStatus(&b, st)
	out := b.String()
	for _, want := range []string{"cluster 1f", "i-a", "voter", "healthy", "unhealthy", "(unstarted)", "1 of 2 voters healthy"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}
}

func TestStatusSaysWhatAWaitingInstanceWaitsFor(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	st := cluster.ClusterStatus{Reporter: "i-a", ObservedAt: now, LastExit: "no-space",
		Waiting: "no live cluster and peer i-c (10.0.0.3) did not answer: never create a cluster on a partial view",
		Unanswered: []cluster.Unanswered{{Instance: "i-c", Address: "10.0.0.3", Since: now.Add(-5 * time.Minute)},
			{Instance: "i-b", Address: "10.0.0.2", Since: now.Add(-time.Minute), Ignored: cluster.PeerRunsTLS}}}
	var b bytes.Buffer
	printStatus(&b, st)
	for _, want := range []string{"etcd on i-a last exited: no-space", "i-a waits: no live cluster", "instance i-c (10.0.0.3) has not answered for 5m0s",
		"instance i-b (10.0.0.2) answers and is ignored (for 1m0s): it runs with TLS, this instance without"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

func TestIAMPolicyFollowsTheFeatures(t *testing.T) {
	t.Setenv("HOSTED_ZONE", "")
	t.Setenv("ETCD_APPLIANCE_HOSTED_ZONE", "")
	var plain, withDNS bytes.Buffer
	if code := runIAMPolicy(nil, &plain); code != 0 {
		t.Fatalf("iam-policy = %d", code)
	}
	if code := runIAMPolicy([]string{"--hosted-zone", "example.org", "--hosted-zone-id", "Z9"}, &withDNS); code != 0 {
		t.Fatalf("iam-policy --hosted-zone = %d", code)
	}
	if strings.Contains(plain.String(), "route53") || !strings.Contains(plain.String(), "autoscaling:DescribeAutoScalingGroups") {
		t.Errorf("policy without DNS:\n%s", plain.String())
	}
	if !strings.Contains(withDNS.String(), "arn:aws:route53:::hostedzone/Z9") {
		t.Errorf("policy with DNS does not scope changes to the zone:\n%s", withDNS.String())
	}
	var withStore bytes.Buffer
	if code := runIAMPolicy([]string{"--store-bucket", "snaps"}, &withStore); code != 0 {
		t.Fatalf("iam-policy --store-bucket = %d", code)
	}
	if strings.Contains(plain.String(), "s3:") || !strings.Contains(withStore.String(), `"arn:aws:s3:::snaps/*"`) {
		t.Errorf("policy with a store bucket does not scope snapshots to it:\n%s", withStore.String())
	}
}

// status exits 0 healthy, 1 degraded, 2 unreachable; --wait-healthy asks
// again until healthy or out of time.
func TestStatusExitCodes(t *testing.T) {
	healthy := cluster.ClusterStatus{Reporter: "i-a", ClusterID: 0x1f, Leader: 0xa, Members: []cluster.MemberStatus{
		{ID: 0xa, Name: "i-a", Role: cluster.RoleVoter, Healthy: true, Leader: true},
		{ID: 0xb, Name: "i-b", Role: cluster.RoleVoter, Healthy: true},
	}}
	learning := healthy
	learning.Members = append(slices.Clone(healthy.Members), cluster.MemberStatus{ID: 0xc, Name: "i-c", Role: cluster.RoleLearner})
	var mu sync.Mutex
	answers := []cluster.ClusterStatus{learning}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		st := answers[0]
		if len(answers) > 1 {
			answers = answers[1:]
		}
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	status := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := statusCommand(t.Context(), append([]string{"--api", srv.URL}, args...), &out, &errOut)
		return code, errOut.String()
	}
	if code, errOut := status(); code != statusDegraded || !strings.Contains(errOut, "member i-c is a learner") {
		t.Errorf("status of a cluster with a learner = %d (%q), want %d naming the learner", code, errOut, statusDegraded)
	}
	mu.Lock()
	answers = []cluster.ClusterStatus{learning, learning, healthy}
	mu.Unlock()
	if code, errOut := status("--wait-healthy", "30s"); code != statusHealthy {
		t.Errorf("status --wait-healthy = %d (%q), want %d once the learner is promoted", code, errOut, statusHealthy)
	}
	mu.Lock()
	answers = []cluster.ClusterStatus{learning}
	mu.Unlock()
	if code, _ := status("--wait-healthy", "1500ms"); code != statusDegraded {
		t.Errorf("status --wait-healthy past its bound = %d, want %d", code, statusDegraded)
	}
	if code := statusCommand(t.Context(), []string{"--nonsense"}, io.Discard, io.Discard); code != statusUnreachable {
		t.Errorf("status with a bad flag = %d, want %d", code, statusUnreachable)
	}
}

// badConfigExit is the exit code of a refused command line: exitConfig for
// `run` (the daemon under systemd), exitUsage for the others.
func badConfigExit(args []string) int {
	if len(args) > 0 && args[0] == "run" {
		return exitConfig
	}
	return exitUsage
}

// TestVersionHelpIsHelp: `version --help` says what the command does; it
// prints no version.
func TestVersionHelpIsHelp(t *testing.T) {
	var code int
	out := stdoutOf(t, func() { code = run(t.Context(), []string{"version", "--help"}) })
	if code != 0 || !strings.HasPrefix(out, "Usage: etcd-appliance version\n") || strings.Contains(out, bundledEtcdVersion()) {
		t.Errorf("version --help = exit %d:\n%s\nwant 0 and the command's usage, no version", code, out)
	}
}

// TestStatusTakesHostPort: --api without a scheme is the appliance at
// host:port over http, and a missing port is 2378.
func TestStatusTakesHostPort(t *testing.T) {
	healthy := cluster.ClusterStatus{Reporter: "i-a", ClusterID: 0x1f, Leader: 0xa, Members: []cluster.MemberStatus{
		{ID: 0xa, Name: "i-a", Role: cluster.RoleVoter, Healthy: true, Leader: true},
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(healthy)
	}))
	defer srv.Close()
	var out, errOut bytes.Buffer
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	if code := statusCommand(t.Context(), []string{"--api", hostPort}, &out, &errOut); code != statusHealthy {
		t.Errorf("status --api %s = %d (%q), want %d", hostPort, code, errOut.String(), statusHealthy)
	}
	for in, want := range map[string]string{
		"10.0.1.5:2378":          "http://10.0.1.5:2378",
		"10.0.1.5":               "http://10.0.1.5:2378",
		"[fd00::5]:2400":         "http://[fd00::5]:2400",
		"node-1.example.org":     "http://node-1.example.org:2378",
		"https://10.0.1.5:2378/": "https://10.0.1.5:2378",
		"http://10.0.1.5:2378":   "http://10.0.1.5:2378",
	} {
		if got, err := apiBase(in); err != nil || got != want {
			t.Errorf("apiBase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestRestoreAsksOnlyForWhatItUses: --list needs the store and the
// cluster's name, --set-aside the data dir; neither demands the instance's
// identity, and an empty store lists as [] with a line saying so.
func TestRestoreAsksOnlyForWhatItUses(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), refusalTimeout)
	defer cancel()
	dir := t.TempDir()
	store := "file://" + filepath.Join(dir, "store")
	group := filepath.Join(dir, "group.json")
	if err := os.WriteFile(group, []byte(`{"name": "orders", "instances": [{"id": "i-1", "address": "127.0.0.1", "state": "running"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"restore", "--list", "--store", store, "--cluster-name", "orders"},
		{"restore", "--list", "--store", store, "--group-file", group},
	} {
		var code int
		var stderr string
		stdout := stdoutOf(t, func() { stderr = stderrOf(t, func() { code = run(ctx, args) }) })
		var listed []any
		if code != 0 || json.Unmarshal([]byte(stdout), &listed) != nil || listed == nil || len(listed) != 0 ||
			strings.TrimSpace(stderr) != `etcd-appliance restore: no snapshots of cluster "orders" in `+store {
			t.Errorf("%q on an empty store = exit %d, stdout %q, stderr %q; want 0, [] and one line naming the cluster",
				args, code, stdout, stderr)
		}
	}

	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(data, "etcd", "member", "wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "etcd", "member", "wal", "0000000000000000-0000000000000000.wal"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var code int
	var stderr string
	stdout := stdoutOf(t, func() {
		stderr = stderrOf(t, func() { code = run(ctx, []string{"restore", "--set-aside", "--yes", "--data-dir", data}) })
	})
	if code != 0 || !strings.Contains(stdout, `"set_aside"`) || stderr != "" {
		t.Errorf("restore --set-aside --yes --data-dir = exit %d, stdout %q, stderr %q; want 0 and the place it went", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(data, "etcd", "member", "wal")); err == nil {
		t.Errorf("restore --set-aside left the data in %s", data)
	}
}
