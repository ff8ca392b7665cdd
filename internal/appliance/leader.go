package appliance

import (
	"context"
	"sync"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// leaderOfLocal is the leader the local member follows, 0 when none: the
// one its status names, except that a learner's word is checked with the
// leader itself. A learner never campaigns and keeps the last leader it
// heard of, even after that leader lost its quorum and stepped down (etcd
// runs raft with CheckQuorum), so it would report a leader forever while the
// cluster has none, and never take part in a recovery.
//
// etcd refuses a learner every member list, so the leader is looked for
// among candidates, the client URLs of the group's other instances: the
// one whose status says it is that member and leads.
func leaderOfLocal(ctx context.Context, c etcdAPI, st etcdStatus, candidates []string) cluster.ID {
	if st.Leader == 0 || !st.IsLearner {
		return st.Leader
	}
	found := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for _, url := range candidates {
		wg.Go(func() {
			if lst, err := c.Status(ctx, url); err == nil && lst.MemberID == st.Leader && lst.Leads() {
				once.Do(func() { close(found) })
			}
		})
	}
	wg.Wait()
	select {
	case <-found:
		return st.Leader
	default:
		return 0
	}
}

// peerClientURLs are the client URLs of the group's other instances, as
// last listed.
func (n *node) peerClientURLs() []string {
	var out []string
	for _, inst := range n.groups.last() {
		if inst.ID != n.self.ID && inst.Address != "" && !inst.State.Gone() {
			// While this member moves to TLS the others may serve
			// plaintext only; every one serves it until the move ends.
			out = append(out, n.ports.ClientURL(n.peerScheme(), inst.Address))
		}
	}
	return out
}
