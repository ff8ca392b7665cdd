package appliance

import (
	"context"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// leaderOfLocal is the leader the local member follows, 0 when none: the
// one its status names, except that a learner's word is checked with the
// leader itself. A learner never campaigns and keeps the last leader it
// heard of, even after that leader lost its quorum and stepped down (etcd
// runs raft with CheckQuorum), so it would report a leader forever while the
// cluster has none, and never take part in a recovery.
func leaderOfLocal(ctx context.Context, c etcdAPI, st etcdStatus) cluster.ID {
	if st.Leader == 0 || !st.IsLearner {
		return st.Leader
	}
	view, err := c.LocalMembers(ctx)
	if err != nil {
		return 0
	}
	for _, m := range view.Members {
		if m.ID != st.Leader || !m.Started() {
			continue
		}
		if lst, err := c.Status(ctx, m.ClientURLs[0]); err == nil && lst.Leads() {
			return st.Leader
		}
	}
	return 0
}
