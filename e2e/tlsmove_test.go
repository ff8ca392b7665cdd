package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// plaintextFlags undo the fleet's --tls auto flags: an instance of a TLS
// group that runs in plaintext.
var plaintextFlags = []string{"--tls", "off", "--tls-ca-dir="}

// TestTLSMoveUnderWrites moves a running plaintext cluster to TLS the way
// an operator does: each instance restarted in turn with --tls auto and
// --tls-plaintext-clients, under a plaintext writer. Each member first
// runs with the certificates but its peer URL still http; once all do,
// each switches its peer URL to https in its turn. No acknowledged write is
// lost, the writer never stops for long, and the cluster keeps its id and
// members. Restarted once more without --tls-plaintext-clients, the
// cluster refuses plaintext clients and serves TLS ones.
func TestTLSMoveUnderWrites(t *testing.T) {
	g := newTLSGroup(t)
	ctx := testContext(t, 3*time.Minute)
	insts, err := g.LaunchNWith(ctx, 3, plaintextFlags...)
	if err != nil {
		t.Fatal(err)
	}
	before := waitConverged(t, ctx, g, 3)
	var plainURLs []string
	for _, inst := range insts {
		plainURLs = append(plainURLs, "http://"+inst.Address+":2379")
	}
	plain, err := clientv3.New(clientv3.Config{Endpoints: plainURLs, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	w := startWriter(ctx, plain, "move")

	began := time.Now()
	for _, inst := range insts {
		if err := g.Stop(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
		if err := g.SetArgs(inst.ID, "--tls-plaintext-clients"); err != nil {
			t.Fatal(err)
		}
		if err := g.Start(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
		waitAcked(t, ctx, w, w.acknowledged()+20)
	}
	restarted := time.Since(began)
	// Every member switches its peer URL to https in its turn.
	var peers string
	err = fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := plain.MemberList(rctx)
		if err != nil {
			return false, err.Error()
		}
		var b strings.Builder
		https := 0
		for _, m := range resp.Members {
			fmt.Fprintf(&b, "%s %v %v; ", m.Name, m.PeerURLs, m.ClientURLs)
			if len(m.PeerURLs) == 1 && strings.HasPrefix(m.PeerURLs[0], "https://") {
				https++
			}
		}
		peers = b.String()
		return len(resp.Members) == 3 && https == 3, peers
	})
	if err != nil {
		t.Fatalf("the peer URLs never all switched to https: %v", err)
	}
	switched := time.Since(began)
	waitAcked(t, ctx, w, w.acknowledged()+20)
	acked, gap, werr := w.stop()
	if werr != nil {
		t.Fatalf("the writer failed: %v", werr)
	}
	t.Logf("moved to TLS: instances restarted in %s, every peer URL https %s after the first restart; %d writes acknowledged, longest gap %s; %s",
		restarted.Round(time.Millisecond), switched.Round(time.Millisecond), acked, gap.Round(time.Millisecond), peers)
	after := waitConverged(t, ctx, g, 3)
	assertSameMembers(t, before, after)
	for _, inst := range insts {
		checkWritten(t, ctx, g, inst.ID, "move", acked)
	}
	// Plaintext clients are still served (--tls-plaintext-clients).
	if _, err := plain.Put(ctx, "/e2e/move-plain", "x"); err != nil {
		t.Errorf("a plaintext client was refused with --tls-plaintext-clients: %v", err)
	}

	// Restarted without --tls-plaintext-clients, one at a time: the move
	// ends, and only TLS clients are served.
	for _, inst := range insts {
		if err := g.SetArgs(inst.ID); err != nil {
			t.Fatal(err)
		}
		if err := g.Restart(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, ctx, g, 3)
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = plain.Put(pctx, "/e2e/move-plain", "y")
	cancel()
	if err == nil {
		t.Errorf("a plaintext client wrote to the cluster after the move ended")
	}
	putKeys(t, ctx, g, "after-move", 10)
	for _, inst := range insts {
		checkWritten(t, ctx, g, inst.ID, "move", acked)
	}
}
