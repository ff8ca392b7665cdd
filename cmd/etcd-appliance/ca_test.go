package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// TestCACommand: `ca` refuses a bad command line (exit 2), takes
// introduce without asking the members, and refuses the steps that need
// the members' word (exit 1, one line) when no member answers; the store
// is left as it was by a refusal.
func TestCACommand(t *testing.T) {
	caDir := t.TempDir()
	store := pki.DirStore{Dir: caDir}
	ca, _, err := pki.EnsureCA(t.Context(), store, func() (*pki.ClusterCA, error) {
		return pki.NewClusterCA("test", time.Now(), 24*time.Hour)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// An address nothing listens on: a member that does not answer.
	unreachable := []string{"--api", "127.0.0.1:1", "--timeout", "2s"}
	ca_ := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := runCA(t.Context(), append(append([]string{"--tls-ca-dir", caDir}, unreachable...), args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	for _, args := range [][]string{{"--step", "rotate"}, {"--ca-lifetime", "0s"}} {
		if code, _, stderr := ca_(args...); code != exitUsage {
			t.Errorf("ca %v: exit %d, want %d: %s", args, code, exitUsage, stderr)
		}
	}
	var noSource bytes.Buffer
	if code := runCA(t.Context(), []string{"--step", "introduce"}, &bytes.Buffer{}, &noSource); code != exitUsage ||
		!strings.Contains(noSource.String(), "--tls-ca-dir or --tls-ca-secret") {
		t.Errorf("ca without a CA source: exit %d, want %d: %s", code, exitUsage, noSource.String())
	}

	if code, _, stderr := ca_("--step", "promote"); code != 1 || !strings.Contains(stderr, "promote refused") ||
		strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("promote with no member answering: exit %d, want 1 and one line: %q", code, stderr)
	}
	code, stdout, stderr := ca_("--step", "introduce")
	if code != 0 || !strings.Contains(stdout, "introduced CA") {
		t.Fatalf("introduce: exit %d: %s%s", code, stdout, stderr)
	}
	introduced, _, err := pki.EnsureCA(t.Context(), store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if introduced.Next == nil || !introduced.Signer.Cert.Equal(ca.Signer.Cert) || len(introduced.Trust.Certificates()) != 2 {
		t.Fatalf("after introduce the store holds %v", introduced.LogValue())
	}
	if code, _, stderr := ca_("--step", "introduce"); code != 1 || !strings.Contains(stderr, "introduced already") {
		t.Errorf("introduce twice: exit %d, want 1: %s", code, stderr)
	}
	for _, step := range []string{"promote", "retire"} {
		if code, _, stderr := ca_("--step", step); code != 1 || !strings.Contains(stderr, step+" refused") {
			t.Errorf("%s with no member answering: exit %d, want 1: %s", step, code, stderr)
		}
	}
	after, _, err := pki.EnsureCA(t.Context(), store, nil, nil)
	if err != nil || !after.Signer.Cert.Equal(ca.Signer.Cert) || !after.Next.Cert.Equal(introduced.Next.Cert) {
		t.Errorf("a refused step changed the store: %v %v", after.LogValue(), err)
	}
	// Without a step, the rotation is shown: the stored CA, and why the
	// next step is not ready.
	code, stdout, _ = ca_()
	if code != 0 || !strings.Contains(stdout, "introduced "+pki.Fingerprint(introduced.Next.Cert)[:16]) ||
		!strings.Contains(stdout, "next step: promote, not yet") {
		t.Errorf("ca: exit %d:\n%s", code, stdout)
	}
}
