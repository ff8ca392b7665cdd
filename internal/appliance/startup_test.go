package appliance

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// A waiting instance asks again soon while a peer's appliance refuses the
// connection (not serving yet) early in the planning, and at the startup
// interval otherwise.
func TestAskAgainAfter(t *testing.T) {
	const interval = time.Second
	for _, c := range []struct {
		name    string
		refused bool
		planned time.Duration
		want    time.Duration
	}{
		{"a peer not serving yet, just started", true, 0, quickAskEvery},
		{"a peer not serving yet, for long", true, quickAskFor, interval},
		{"every peer answered or timed out", false, 0, interval},
	} {
		if got := askAgainAfter(interval, c.refused, c.planned); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	if got := askAgainAfter(100*time.Millisecond, true, 0); got != 100*time.Millisecond {
		t.Errorf("a --startup-interval below the quick pace: %s, want it", got)
	}
}

// askPeers notes a peer whose address refuses the connection.
func TestAskPeersNotesARefusedConnection(t *testing.T) {
	a, _, _ := candidate(t)
	// A port that was free a moment ago: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	a.world.ports.API = addr.Port
	a.world.askPeers(context.Background(), []cluster.Instance{{ID: "i-9", Address: "127.0.0.1", State: cluster.InstanceRunning}})
	if !a.world.refusedLastRound() {
		t.Error("a refused connection is not noted")
	}
	a.world.askPeers(context.Background(), nil)
	if a.world.refusedLastRound() {
		t.Error("a round without peers still notes a refusal")
	}
}
