package appliance

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// Timeouts of the calls to etcd.
const (
	dialTimeout   = 2 * time.Second
	requestTimout = 3 * time.Second
	statusTimeout = time.Second
)

// joinLockKey serializes membership changes cluster-wide (§4.2).
const joinLockKey = "/etcd-appliance/locks/join"

func newClient(endpoints []string) (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          dialTimeout,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd at %v: %w", endpoints, err)
	}
	return c, nil
}

// clusterView reads the member list with a linearizable request, so a view
// exists only while the cluster has quorum.
func clusterView(ctx context.Context, c *clientv3.Client) (*cluster.ClusterView, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimout)
	defer cancel()
	resp, err := c.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing members: %w", err)
	}
	return &cluster.ClusterView{ClusterID: cluster.ID(resp.Header.ClusterId), Members: members(resp.Members)}, nil
}

func members(pb []*etcdserverpb.Member) []cluster.Member {
	out := make([]cluster.Member, 0, len(pb))
	for _, m := range pb {
		out = append(out, cluster.Member{
			ID:         cluster.ID(m.ID),
			Name:       m.Name,
			PeerURLs:   m.PeerURLs,
			ClientURLs: m.ClientURLs,
			IsLearner:  m.IsLearner,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// memberHealth asks every started member for its status, concurrently.
func memberHealth(ctx context.Context, c *clientv3.Client, ms []cluster.Member) map[cluster.ID]cluster.MemberStatus {
	out := make(map[cluster.ID]cluster.MemberStatus, len(ms))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range ms {
		st := cluster.MemberStatus{ID: m.ID, Name: m.Name, Role: role(m)}
		if len(m.PeerURLs) > 0 {
			st.PeerURL = m.PeerURLs[0]
		}
		if len(m.ClientURLs) == 0 {
			st.Error = "never started"
			out[m.ID] = st
			continue
		}
		st.ClientURL = m.ClientURLs[0]
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, statusTimeout)
			defer cancel()
			resp, err := c.Status(sctx, st.ClientURL)
			if err != nil {
				st.Error = err.Error()
			} else {
				st.Healthy = len(resp.Errors) == 0
				st.Leader = resp.Leader == resp.Header.MemberId
				st.Revision = resp.Header.Revision
				st.RaftIndex = resp.RaftIndex
				st.RaftTerm = resp.RaftTerm
				st.DBSize = resp.DbSize
				st.Version = resp.Version
				st.Alarms = resp.Errors
			}
			mu.Lock()
			out[m.ID] = st
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func role(m cluster.Member) string {
	switch {
	case !m.Started():
		return cluster.RoleUnstarted
	case m.IsLearner:
		return cluster.RoleLearner
	default:
		return cluster.RoleVoter
	}
}

// clientURLs lists the client URLs of started members.
func clientURLs(ms []cluster.Member) []string {
	var out []string
	for _, m := range ms {
		if m.Started() {
			out = append(out, m.ClientURLs...)
		}
	}
	return out
}
