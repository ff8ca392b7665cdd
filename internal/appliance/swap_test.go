package appliance

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/cluster/clustertest"
)

// swapping wires a test appliance whose data last ran etcd 3.5.36, of which
// a copy is kept, configured to run current, into a healthy three-member
// cluster at 3.5 of which it is member 0xa.
func swapping(t *testing.T, current string) (*Appliance, *fakeEtcd, *fakeLauncher) {
	t.Helper()
	a := testAppliance(t)
	a.cfg.StartupInterval = 5 * time.Millisecond
	a.starter.swapWait = 200 * time.Millisecond
	a.starter.binaryVersion = func(context.Context, []string) (string, error) { return "3.5.36", nil }
	ms := []cluster.Member{selfMember(a, 0xa), clustertest.Member(0xb, false), clustertest.Member(0xc, false)}
	f := newFakeEtcd(ms)
	f.versions = clusterVersions{Cluster: "3.5.0"}
	for url, st := range f.status {
		st.Version, st.Leader = "3.5.36", 0xb
		f.status[url] = st
	}
	a.dial = f.dialer()
	keepRelease(t, a, "3.5.36")
	l := &fakeLauncher{current: etcdRelease{Version: current, Command: []string{"etcd"}}}
	a.starter.launcher = l
	return a, f, l
}

// keepRelease records version as the etcd the data last ran, with a kept
// copy of it.
func keepRelease(t *testing.T, a *Appliance, version string) {
	t.Helper()
	dir := filepath.Join(a.data.keptDir(), version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "etcd")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := a.data.recordRelease(etcdRelease{Version: version, Command: []string{bin}}); err != nil {
		t.Fatal(err)
	}
}

// TestSwapInTurn: a member whose data last ran another etcd starts on the
// kept copy, then, under the membership lock and with every other member a
// healthy voter, stops it and starts the configured one; the kept copy of
// the old one goes once the member is a healthy voter on the new one.
func TestSwapInTurn(t *testing.T) {
	a, f, l := swapping(t, "3.6.16")
	proc, err := a.starter.startOnData(context.Background())
	if err != nil || proc == nil {
		t.Fatalf("startOnData = %v, %v", proc, err)
	}
	if want := []string{"3.5.36", "3.6.16"}; !slices.Equal(l.releases, want) {
		t.Fatalf("launched %q, want %q", l.releases, want)
	}
	if !l.procs[0].stopped || l.procs[1].stopped || proc != l.procs[1] {
		t.Errorf("old stopped %v, new stopped %v: want the old stopped and the new one returned", l.procs[0].stopped, l.procs[1].stopped)
	}
	calls := f.log(false)
	if !slices.Contains(calls, "Lock") || calls[len(calls)-1] != "Unlock" {
		t.Errorf("calls %q: want the swap under the membership lock", calls)
	}
	if got := counter(t, a.metrics.swaps.WithLabelValues("swapped")); got != 1 {
		t.Errorf("swapped = %v, want 1", got)
	}
	if gauge(t, a.metrics.swapPending) != 0 {
		t.Error("swap still pending after the swap")
	}
	if kept := a.data.keptVersions(); slices.Contains(kept, "3.5.36") {
		t.Errorf("kept %q after the swap: the old copy should be gone", kept)
	}
}

// TestSwapWaitsForFullStrength: while another voter is unhealthy, the
// member runs the old etcd and says why; it swaps once the voter is back.
func TestSwapWaitsForFullStrength(t *testing.T) {
	a, f, l := swapping(t, "3.6.16")
	c := clustertest.Member(0xc, false).ClientURLs[0]
	f.mu.Lock()
	healthy := f.status[c]
	delete(f.status, c)
	f.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := a.starter.startOnData(context.Background())
		done <- err
	}()
	waitFor(t, func() bool {
		why, _ := a.waitingFor()
		return strings.Contains(why, "is not healthy")
	})
	select {
	case err := <-done:
		t.Fatalf("startOnData returned %v while a voter was unhealthy", err)
	default:
	}
	f.mu.Lock()
	f.status[c] = healthy
	f.mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if want := []string{"3.5.36", "3.6.16"}; !slices.Equal(l.releases, want) {
		t.Fatalf("launched %q, want %q", l.releases, want)
	}
}

// TestSwapRefusedByTheVersionGate: an etcd two minors ahead of the cluster
// version is never started; the old one keeps running, says why, and is
// what starts again after it exits.
func TestSwapRefusedByTheVersionGate(t *testing.T) {
	a, f, l := swapping(t, "3.7.0")
	if _, err := a.starter.startOnData(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"3.5.36"}; !slices.Equal(l.releases, want) {
		t.Fatalf("launched %q, want only the old etcd", l.releases)
	}
	why, _ := a.waitingFor()
	if !strings.Contains(why, "2 minors ahead") || counter(t, a.metrics.swaps.WithLabelValues("refused")) != 1 ||
		gauge(t, a.metrics.swapPending) != 1 {
		t.Errorf("waiting %q, refused %v, pending %v", why, counter(t, a.metrics.swaps.WithLabelValues("refused")),
			gauge(t, a.metrics.swapPending))
	}
	locks := strings.Count(strings.Join(f.log(false), " "), "Lock")
	if _, err := a.starter.startOnData(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"3.5.36", "3.5.36"}; !slices.Equal(l.releases, want) {
		t.Errorf("after an exit, launched %q, want the old etcd again", l.releases)
	}
	if again := strings.Count(strings.Join(f.log(false), " "), "Lock"); again != locks {
		t.Errorf("a refused swap was tried again (%d locks, then %d)", locks, again)
	}
}

// TestSwapRolledBack: a new etcd that is not a healthy voter within the
// bound is stopped and the old one started again.
func TestSwapRolledBack(t *testing.T) {
	a, f, l := swapping(t, "3.6.16")
	self := a.clientURL()
	l.serve = func(n int) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if n == 2 {
			delete(f.status, self) // the new etcd never serves
		} else {
			f.status[self] = etcdStatus{ClusterID: f.clusterID, MemberID: 0xa, Leader: 0xb, Version: "3.5.36"}
		}
	}
	proc, err := a.starter.startOnData(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"3.5.36", "3.6.16", "3.5.36"}; !slices.Equal(l.releases, want) {
		t.Fatalf("launched %q, want %q", l.releases, want)
	}
	if proc != l.procs[2] || !l.procs[1].stopped {
		t.Error("the new etcd was not stopped, or the old one not returned")
	}
	why, _ := a.waitingFor()
	if !strings.Contains(why, "did not become a healthy voter") || counter(t, a.metrics.swaps.WithLabelValues("rolled_back")) != 1 {
		t.Errorf("waiting %q, rolled back %v", why, counter(t, a.metrics.swaps.WithLabelValues("rolled_back")))
	}
	if last, _, _ := a.data.lastRelease(); last.Version != "3.5.36" {
		t.Errorf("the data's release is recorded as %q, want the old one back", last.Version)
	}
}

// TestStartOnDataWithoutAKeptCopy: data of another etcd with no copy kept,
// or of the configured one, starts the configured etcd at once.
func TestStartOnDataWithoutAKeptCopy(t *testing.T) {
	for _, tt := range []struct {
		name    string
		release etcdRelease
		// keptRuns is what the kept copy says it is; "" removes it.
		keptRuns string
	}{
		{"no copy kept", etcdRelease{Version: "3.5.36", Command: []string{"/var/lib/etcd-appliance/etcd-kept/3.5.36/etcd"}}, ""},
		{"a kept link to a binary overwritten since", etcdRelease{Version: "3.5.36"}, "3.6.16"},
		{"the configured release", etcdRelease{Version: "3.6.16"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, f, l := swapping(t, "3.6.16")
			if tt.keptRuns == "" {
				if err := os.RemoveAll(a.data.keptDir()); err != nil {
					t.Fatal(err)
				}
				if err := a.data.recordRelease(tt.release); err != nil {
					t.Fatal(err)
				}
			}
			a.starter.binaryVersion = func(context.Context, []string) (string, error) { return tt.keptRuns, nil }
			if _, err := a.starter.startOnData(context.Background()); err != nil {
				t.Fatal(err)
			}
			if want := []string{"3.6.16"}; !slices.Equal(l.releases, want) || slices.Contains(f.log(false), "Lock") {
				t.Errorf("launched %q with calls %q, want the configured etcd at once", l.releases, f.log(false))
			}
		})
	}
}

// TestSwapRefusedBelowTheUpgradeFloor: a member of the old minor below the
// patch etcd's upgrade guide asks for holds the swap to the next minor.
func TestSwapRefusedBelowTheUpgradeFloor(t *testing.T) {
	a, f, l := swapping(t, "3.6.16")
	for url, st := range f.status {
		st.Version = "3.5.21"
		f.status[url] = st
	}
	if _, err := a.starter.startOnData(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"3.5.36"}; !slices.Equal(l.releases, want) {
		t.Fatalf("launched %q, want only the old etcd", l.releases)
	}
	if why, _ := a.waitingFor(); !strings.Contains(why, "3.5.26 or later") {
		t.Errorf("waiting %q, want the upgrade floor named", why)
	}
}

// TestOtherEndpoints: the lock of a restart in turn goes through the other
// members, one URL each, of the scheme this instance speaks when a member
// advertises both.
func TestOtherEndpoints(t *testing.T) {
	endpoints := []string{
		"http://10.0.0.1:2379", "https://10.0.0.1:2379", // self, moving
		"http://10.0.0.2:2379", "https://10.0.0.2:2379", // moving
		"https://10.0.0.3:2379", // switched
		"http://10.0.0.4:2379",  // plaintext
	}
	got := otherEndpoints(endpoints, "10.0.0.1", "https")
	want := []string{"https://10.0.0.2:2379", "https://10.0.0.3:2379", "http://10.0.0.4:2379"}
	if !slices.Equal(got, want) {
		t.Errorf("otherEndpoints(https) = %v, want %v", got, want)
	}
	got = otherEndpoints(endpoints, "10.0.0.1", "http")
	want = []string{"http://10.0.0.2:2379", "https://10.0.0.3:2379", "http://10.0.0.4:2379"}
	if !slices.Equal(got, want) {
		t.Errorf("otherEndpoints(http) = %v, want %v", got, want)
	}
}
