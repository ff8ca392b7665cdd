package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// plaintextFlags undo the fleet's --tls auto flags: an instance of a TLS
// group that runs in plaintext.
var plaintextFlags = []string{"--tls", "off", "--tls-ca-dir="}

// startPlaintextInTLSGroup starts a plaintext cluster of n in a group whose
// fleet holds the cluster CA, ready to move to TLS.
func startPlaintextInTLSGroup(t *testing.T, n int) (*fleet.Group, context.Context, []*fleet.Instance, cluster.ClusterStatus) {
	t.Helper()
	g := newTLSGroup(t)
	ctx := testContext(t, 3*time.Minute)
	insts, err := g.LaunchNWith(ctx, n, plaintextFlags...)
	if err != nil {
		t.Fatal(err)
	}
	return g, ctx, insts, waitConverged(t, ctx, g, n)
}

// plaintextClient is an etcd client of insts' plaintext client URLs,
// closed when the test ends.
func plaintextClient(t *testing.T, insts ...*fleet.Instance) *clientv3.Client {
	t.Helper()
	var urls []string
	for _, inst := range insts {
		urls = append(urls, "http://"+inst.Address+":2379")
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: urls, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestTLSMoveUnderWrites moves a running plaintext cluster to TLS the way
// an operator does: each instance restarted in turn with --tls auto and
// --tls-plaintext-clients, under a plaintext writer. Each member first
// runs with the certificates but its peer URL still http; once all do,
// each switches its peer URL to https in its turn. No acknowledged write is
// lost, the writer never stops for long, and the cluster keeps its id and
// members. Restarted once more without --tls-plaintext-clients, the
// cluster refuses plaintext clients and serves TLS ones. Then the way back:
// restarted with --tls-plaintext-peers, each member switches its peer URL
// to http in turn, under a TLS writer; then restarted with --tls off, the
// cluster is plaintext again, every write of the three phases on every
// member.
func TestTLSMoveUnderWrites(t *testing.T) {
	g, ctx, insts, before := startPlaintextInTLSGroup(t, 3)
	plain := plaintextClient(t, insts...)
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
	peers := waitPeerScheme(t, ctx, plain, "https")
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
	_, err := plain.Put(pctx, "/e2e/move-plain", "y")
	cancel()
	if err == nil {
		t.Errorf("a plaintext client wrote to the cluster after the move ended")
	}
	putKeys(t, ctx, g, "after-move", 10)
	for _, inst := range insts {
		checkWritten(t, ctx, g, inst.ID, "move", acked)
	}

	// The way back, under a TLS writer: --tls-plaintext-peers, then --tls
	// off, one instance at a time each.
	tlsClient, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tlsClient.Close()
	w = startWriter(ctx, tlsClient, "back")
	began = time.Now()
	for _, inst := range insts {
		if err := g.SetArgs(inst.ID, "--tls-plaintext-peers"); err != nil {
			t.Fatal(err)
		}
		if err := g.Restart(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
		waitAcked(t, ctx, w, w.acknowledged()+20)
	}
	peers = waitPeerScheme(t, ctx, tlsClient, "http")
	back, backGap, werr := w.stop()
	if werr != nil {
		t.Fatalf("the writer failed on the way back: %v", werr)
	}
	t.Logf("peers back to plaintext %s after the first restart; %d writes acknowledged, longest gap %s; %s",
		time.Since(began).Round(time.Millisecond), back, backGap.Round(time.Millisecond), peers)
	w = startWriter(ctx, plain, "off")
	for _, inst := range insts {
		if err := g.SetArgs(inst.ID, plaintextFlags...); err != nil {
			t.Fatal(err)
		}
		if err := g.Restart(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
		waitAcked(t, ctx, w, w.acknowledged()+20)
	}
	off, _, werr := w.stop()
	if werr != nil {
		t.Fatalf("the plaintext writer failed while TLS was turned off: %v", werr)
	}
	final := waitConverged(t, ctx, g, 3)
	assertSameMembers(t, before, final)
	for _, inst := range insts {
		checkWritten(t, ctx, g, inst.ID, "move", acked)
		checkWritten(t, ctx, g, inst.ID, "back", back)
		checkWritten(t, ctx, g, inst.ID, "off", off)
	}
}

// waitPeerScheme waits until every member's peer URL has scheme, and
// returns the member list.
func waitPeerScheme(t *testing.T, ctx context.Context, c *clientv3.Client, scheme string) string {
	t.Helper()
	return waitPeerSchemeOf(t, ctx, c, scheme, 3)
}

// waitPeerSchemeOf is waitPeerScheme for a cluster of n members.
func waitPeerSchemeOf(t *testing.T, ctx context.Context, c *clientv3.Client, scheme string, members int) string {
	t.Helper()
	var peers string
	err := fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := c.MemberList(rctx)
		if err != nil {
			return false, err.Error()
		}
		var b strings.Builder
		n := 0
		for _, m := range resp.Members {
			fmt.Fprintf(&b, "%s %v %v; ", m.Name, m.PeerURLs, m.ClientURLs)
			if len(m.PeerURLs) == 1 && strings.HasPrefix(m.PeerURLs[0], scheme+"://") {
				n++
			}
		}
		peers = b.String()
		return len(resp.Members) == members && n == members, peers
	})
	if err != nil {
		t.Fatalf("the peer URLs never all switched to %s: %v", scheme, err)
	}
	return peers
}

// TestTLSMoveReplacementJoinsMidMove: mid-move, one member restarted with
// TLS and the others still plaintext, a plaintext instance is terminated
// and the group launches a replacement with TLS. The replacement joins with
// an http peer URL, which the member still serving plaintext peers can
// dial; once the last plaintext instance is restarted with TLS, every
// member, the new one included, switches to https in turn. No acknowledged
// write is lost.
func TestTLSMoveReplacementJoinsMidMove(t *testing.T) {
	g, ctx, insts, before := startPlaintextInTLSGroup(t, 3)
	plain := plaintextClient(t, insts[0], insts[1])
	w := startWriter(ctx, plain, "midmove")
	moveInstance := func(id string) {
		t.Helper()
		if err := g.SetArgs(id, "--tls-plaintext-clients"); err != nil {
			t.Fatal(err)
		}
		if err := g.Restart(ctx, id); err != nil {
			t.Fatal(err)
		}
		waitAcked(t, ctx, w, w.acknowledged()+20)
	}
	moveInstance(insts[0].ID)
	if err := g.Terminate(ctx, insts[2].ID); err != nil {
		t.Fatal(err)
	}
	launched := time.Now()
	repl, err := g.Launch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ctx, g, 3)
	joined := time.Since(launched)
	if log := g.LogTail(repl.ID, 400); !strings.Contains(log, "joining a cluster that moves to TLS") {
		t.Errorf("the replacement did not join with an http peer URL:\n%s", log)
	}
	moveInstance(insts[1].ID)
	peers := waitPeerScheme(t, ctx, plain, "https")
	acked, gap, werr := w.stop()
	if werr != nil {
		t.Fatalf("the writer failed: %v", werr)
	}
	t.Logf("replacement %s joined mid-move %s after its launch; every peer URL https %s after it; %d writes acknowledged, longest gap %s; %s",
		repl.ID, joined.Round(time.Millisecond), time.Since(launched).Round(time.Millisecond), acked, gap.Round(time.Millisecond), peers)
	after := waitConverged(t, ctx, g, 3)
	if after.ClusterID != before.ClusterID {
		t.Fatalf("cluster id changed from %s to %s", before.ClusterID, after.ClusterID)
	}
	for _, id := range []string{insts[0].ID, insts[1].ID, repl.ID} {
		checkWritten(t, ctx, g, id, "midmove", acked)
	}
}

// TestTLSMoveTwoMembers: a cluster of two voters moves to TLS too. Without
// a member the other has no quorum to update its peer URL through, so each
// is updated first, while it runs, and restarted: no switch is left half
// done for the appliance to mend (realignPeers), and no acknowledged write
// is lost.
func TestTLSMoveTwoMembers(t *testing.T) {
	g, ctx, insts, _ := startPlaintextInTLSGroup(t, 2)
	plain := plaintextClient(t, insts...)
	w := startWriter(ctx, plain, "two")
	for _, inst := range insts {
		if err := g.SetArgs(inst.ID, "--tls-plaintext-clients"); err != nil {
			t.Fatal(err)
		}
		if err := g.Restart(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
		waitAcked(t, ctx, w, w.acknowledged()+20)
	}
	peers := waitPeerSchemeOf(t, ctx, plain, "https", 2)
	waitAcked(t, ctx, w, w.acknowledged()+20)
	acked, gap, werr := w.stop()
	if werr != nil {
		t.Fatalf("the writer failed: %v", werr)
	}
	t.Logf("a cluster of two moved to TLS; %d writes acknowledged, longest gap %s; %s", acked, gap.Round(time.Millisecond), peers)
	for _, inst := range insts {
		if log := g.LogTail(inst.ID, 1000); strings.Contains(log, "another scheme than etcd serves") ||
			strings.Contains(log, "updating the peer URL to") {
			t.Errorf("%s's switch went wrong:\n%s", inst.ID, log)
		}
		checkWritten(t, ctx, g, inst.ID, "two", acked)
	}
}
