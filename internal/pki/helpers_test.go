package pki_test

import (
	"bytes"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// t0 is the tests' start of time, whole seconds as certificates keep it.
var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func newCA(t testing.TB, name string, now time.Time) *pki.ClusterCA {
	t.Helper()
	ca, err := pki.NewClusterCA(name, now, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func memberRequest(name string, lifetime time.Duration) pki.LeafRequest {
	return pki.LeafRequest{
		Kind:       pki.Member,
		CommonName: name,
		IPs:        []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:   []string{"localhost"},
		Lifetime:   lifetime,
	}
}

func issue(t testing.TB, ca *pki.ClusterCA, req pki.LeafRequest, now time.Time) *pki.KeyPair {
	t.Helper()
	kp, err := ca.Issue(req, now)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// fakeClock is a clock the test moves: After hands each wait to the test,
// which fires it when it has moved the time.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits chan fakeWait
}

type fakeWait struct {
	d    time.Duration
	fire chan time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, waits: make(chan fakeWait, 16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	w := fakeWait{d: d, fire: make(chan time.Time, 1)}
	c.waits <- w
	return w.fire
}

// nextWait is the next wait the code under test started, within a deadline.
func (c *fakeClock) nextWait(t *testing.T) fakeWait {
	t.Helper()
	select {
	case w := <-c.waits:
		return w
	case <-time.After(10 * time.Second):
		t.Fatal("no wait started within 10 s")
		return fakeWait{}
	}
}

// logBuffer is a logger whose output the test reads.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
