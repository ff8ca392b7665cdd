package appliance

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/cluster/clustertest"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// TestCARotationRollsOut: each step of a rotation stored in the CA store
// is taken at the next read: the bundle trusted and written for etcd, a
// restart of etcd asked for until etcd starts on the new bundle, the
// certificate renewed under a promoted signer; what the member reports
// follows.
func TestCARotationRollsOut(t *testing.T) {
	a, ca, logs := tlsAppliance(t)
	ctx := t.Context()
	r := a.tls.rotation
	store := a.caStore
	oldFP := pki.Fingerprint(ca.Signer.Cert)
	step := func(next *pki.ClusterCA) {
		t.Helper()
		previous, err := store.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		material, err := next.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Replace(ctx, previous, material); err != nil {
			t.Fatal(err)
		}
		r.lastTry = time.Time{}
		r.refresh(ctx)
		select {
		case <-r.changed:
		default:
			t.Error("the supervision was not told of the change")
		}
	}
	etcdFile := func() []string {
		t.Helper()
		data, err := os.ReadFile(r.caFile)
		if err != nil {
			t.Fatal(err)
		}
		b, err := pki.ParseBundle(data)
		if err != nil {
			t.Fatal(err)
		}
		return b.Fingerprints()
	}

	if r.restartDue() {
		t.Error("a restart is asked for while etcd does not run")
	}
	r.etcdStarting()
	st := *a.tlsStatus()
	if !slices.Equal(st.Trusted, []string{oldFP}) || !slices.Equal(st.EtcdTrusted, []string{oldFP}) ||
		st.Signer != oldFP || st.CertificateIssuer != oldFP || st.Rotation != "" {
		t.Fatalf("before a rotation: %+v", st)
	}
	r.refresh(ctx)
	select {
	case <-r.changed:
		t.Error("an unchanged store was taken as a change")
	default:
	}

	next, err := pki.NewAuthority("next", time.Now(), time.Hour*24)
	if err != nil {
		t.Fatal(err)
	}
	nextFP := pki.Fingerprint(next.Cert)
	step(ca.Introduce(next))
	st = *a.tlsStatus()
	if !slices.Contains(st.Trusted, nextFP) || st.Next != nextFP || !slices.Contains(etcdFile(), nextFP) {
		t.Fatalf("after introduce: %+v, etcd's file %v", st, etcdFile())
	}
	if !strings.Contains(st.Rotation, "etcd restarts in turn") {
		t.Errorf("after introduce, rotation progress %q, want the restart", st.Rotation)
	}
	if !r.restartDue() {
		t.Error("no restart asked for with etcd on the old bundle")
	}
	if r.restartDue() {
		t.Error("a restart asked for again at once, want at most one a second")
	}
	r.etcdStarting()
	r.lastTry = time.Time{}
	if r.restartDue() {
		t.Error("a restart asked for with etcd on the new bundle")
	}
	if err := cluster.CheckCAStep(cluster.CAPromote, cluster.CAState{Signer: oldFP, Next: nextFP, Trusted: st.Trusted},
		[]cluster.MemberTLS{{Name: "self", TLS: a.tlsStatus()}}); err != nil {
		t.Errorf("promote refused on this member's report: %v", err)
	}

	introduced, _, err := pki.EnsureCA(ctx, store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	promoted, err := introduced.Promote()
	if err != nil {
		t.Fatal(err)
	}
	step(promoted)
	st = *a.tlsStatus()
	if st.Signer != nextFP || st.CertificateIssuer != nextFP || st.Rotation != "" || r.restartDue() {
		t.Fatalf("after promote: %+v", st)
	}
	if err := a.tls.current().Cert.CheckSignatureFrom(next.Cert); err != nil {
		t.Errorf("the certificate in use is not of the promoted CA: %v", err)
	}

	step(promoted.Retire())
	st = *a.tlsStatus()
	if !slices.Equal(st.Trusted, []string{nextFP}) || !slices.Equal(etcdFile(), []string{nextFP}) ||
		st.CertificateIssuer != nextFP || !r.restartDue() {
		t.Fatalf("after retire: %+v", st)
	}

	// A store that turns unusable leaves the CA in use alone.
	previous, _ := store.Load(ctx)
	if err := store.Replace(ctx, previous, []byte("not a CA")); err != nil {
		t.Fatal(err)
	}
	r.refresh(ctx)
	if got := testutil.ToFloat64(r.readErrs); got != 1 {
		t.Errorf("read errors %v, want 1", got)
	}
	if st := *a.tlsStatus(); !slices.Equal(st.Trusted, []string{nextFP}) {
		t.Errorf("after an unusable store: trusted %v", st.Trusted)
	}
	if n := strings.Count(logs.String(), "CA rotation: took the stored cluster CA"); n != 3 {
		t.Errorf("%d lines say a step was taken, want 3:\n%s", n, logs.String())
	}
}

func TestCAChange(t *testing.T) {
	now := time.Now()
	a, _ := pki.NewAuthority("a", now, time.Hour)
	b, _ := pki.NewAuthority("b", now, time.Hour)
	c, _ := pki.NewAuthority("c", now, time.Hour)
	one := &pki.ClusterCA{Signer: a, Trust: pki.NewBundle(a.Cert)}
	introduced := one.Introduce(b)
	promoted, _ := introduced.Promote()
	for _, tc := range []struct {
		name       string
		prev, next *pki.ClusterCA
		want       string
	}{
		{"unchanged", one, &pki.ClusterCA{Signer: a, Trust: pki.NewBundle(a.Cert)}, ""},
		{"introduce", one, introduced, "CAs introduced"},
		{"promote", introduced, promoted, "a new signer"},
		{"retire", promoted, promoted.Retire(), "CAs retired"},
		{"another introduced", introduced, &pki.ClusterCA{Signer: a, Next: c, Trust: introduced.Trust}, "another introduced CA"},
	} {
		if got := caChange(tc.prev, tc.next); got != tc.want {
			t.Errorf("%s: caChange = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestCARestartInTurn: a member whose etcd runs with an old bundle restarts
// it only in its turn — under the membership lock, every other member a
// healthy voter — letting go of its own client first, and says meanwhile
// what it waits for.
func TestCARestartInTurn(t *testing.T) {
	a, ca, _ := tlsAppliance(t)
	ctx := t.Context()
	a.cfg.StartupInterval = 5 * time.Millisecond
	a.starter.swapWait = 200 * time.Millisecond
	ms := []cluster.Member{selfMember(a, 0xa), clustertest.Member(0xb, false), clustertest.Member(0xc, false)}
	f := newFakeEtcd(ms)
	for url, st := range f.status {
		st.Leader = 0xb
		f.status[url] = st
	}
	a.dial = f.dialer()
	l := &fakeLauncher{current: etcdRelease{Version: "3.7.3", Command: []string{"etcd"}}}
	a.starter.launcher = l
	r := a.tls.rotation
	r.etcdStarting()
	next, _ := pki.NewAuthority("next", time.Now(), 24*time.Hour)
	previous, _ := a.caStore.Load(ctx)
	material, _ := ca.Introduce(next).MarshalPEM()
	if err := a.caStore.Replace(ctx, previous, material); err != nil {
		t.Fatal(err)
	}
	r.refresh(ctx)

	c := clustertest.Member(0xc, false).ClientURLs[0]
	f.mu.Lock()
	healthy := f.status[c]
	delete(f.status, c)
	f.mu.Unlock()
	old := newFakeProcess()
	releases := 0
	release := func() { releases++ }
	got, released := a.supervisor.rollOutTrust(ctx, old, release)
	if released || got != old || old.stopped || len(l.procs) != 0 {
		t.Fatalf("with a voter unhealthy: released %v, old stopped %v, %d launched; want no restart", released, old.stopped, len(l.procs))
	}
	if st := a.tlsStatus(); !strings.Contains(st.Rotation, "is not healthy") {
		t.Errorf("rotation progress %q, want why the restart waits", st.Rotation)
	}

	f.mu.Lock()
	f.status[c] = healthy
	f.mu.Unlock()
	r.lastTry = time.Time{}
	got, released = a.supervisor.rollOutTrust(ctx, old, release)
	if !released || releases != 1 || !old.stopped || len(l.procs) != 1 || got != l.procs[0] {
		t.Fatalf("in its turn: released %v (%d), old stopped %v, %d launched; want the restart", released, releases, old.stopped, len(l.procs))
	}
	calls := f.log(false)
	if !slices.Contains(calls, "Lock") || calls[len(calls)-1] != "Unlock" {
		t.Errorf("calls %q: want the restart under the membership lock", calls)
	}
	if got := testutil.ToFloat64(r.restarts); got != 1 {
		t.Errorf("restarts counted %v, want 1", got)
	}
}
