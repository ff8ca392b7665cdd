package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

func keyName(prefix string, i int) string { return fmt.Sprintf("/e2e/%s/%04d", prefix, i) }
func keyValue(prefix string, i int) string {
	return fmt.Sprintf("value %d of %s", i, prefix)
}

// etcdClients is what the key helpers need of a group, local or AWS.
type etcdClients interface {
	Client(ctx context.Context, ids ...string) (*clientv3.Client, error)
}

// putKeys writes n keys under prefix through the running instances.
func putKeys(t *testing.T, ctx context.Context, g etcdClients, prefix string, n int) {
	t.Helper()
	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i := range n {
		// A put in flight when a leader dies times out; writing the same
		// value again is harmless, so retry as a client would.
		err := fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
			pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
			defer pcancel()
			if _, err := c.Put(pctx, keyName(prefix, i), keyValue(prefix, i)); err != nil {
				return false, fmt.Sprintf("writing %s: %v", keyName(prefix, i), err)
			}
			return true, ""
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// checkKeysOnEach reads the n keys under prefix with a linearizable read
// through each running instance of the group, or through ids when given:
// etcd serves such a read from the member's own store once it has applied
// everything committed, so every member proves it holds all the data.
func checkKeysOnEach(t *testing.T, ctx context.Context, g *fleet.Group, prefix string, n int, ids ...string) {
	t.Helper()
	if len(ids) == 0 {
		running, err := g.RunningInGroup()
		if err != nil {
			t.Fatal(err)
		}
		for _, inst := range running {
			ids = append(ids, inst.ID)
		}
	}
	for _, id := range ids {
		checkKeys(t, ctx, g, prefix, n, id)
	}
}

func checkKeys(t *testing.T, ctx context.Context, g etcdClients, prefix string, n int, id string) {
	t.Helper()
	c, err := g.Client(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var resp *clientv3.GetResponse
	// Retry errors only (a leader election may be in flight); a wrong
	// answer is a failure at once.
	err = fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
		defer rcancel()
		resp, err = c.Get(rctx, "/e2e/"+prefix+"/", clientv3.WithPrefix())
		if err != nil {
			return false, fmt.Sprintf("reading /e2e/%s/ from %s: %v", prefix, id, err)
		}
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	var lost []string
	for i := range n {
		if got[keyName(prefix, i)] != keyValue(prefix, i) {
			lost = append(lost, keyName(prefix, i))
		}
	}
	if len(lost) > 0 || len(got) != n {
		t.Fatalf("member %s holds %d keys under /e2e/%s/, want %d; missing or wrong: %d (first: %v)",
			id, len(got), prefix, n, len(lost), lost[:min(len(lost), 5)])
	}
}

// memberWatch records every member list it sees while a membership change
// happens, to check how members joined: as learners, one at a time.
type memberWatch struct {
	mu sync.Mutex
	// initial are the member ids present when the watch started.
	initial map[uint64]bool
	// firstSeenLearner tells, per new member id, whether it was a learner
	// when first seen.
	firstSeenLearner map[uint64]bool
	names            map[uint64]string
	// maxPending is the largest number of learners and unstarted members
	// seen in one member list.
	maxPending   int
	pendingAtMax string
	// unstartedVoters lists new members seen as voters before they had
	// started (published their name): a learner must be promoted only
	// once it runs, as housekeeping does.
	unstartedVoters map[uint64]bool
	polls, fails    int

	cancel context.CancelFunc
	done   chan struct{}
}

func watchMembers(t *testing.T, ctx context.Context, g *fleet.Group) *memberWatch {
	t.Helper()
	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.MemberList(ctx)
	if err != nil {
		c.Close()
		t.Fatalf("listing members: %v", err)
	}
	w := &memberWatch{initial: map[uint64]bool{}, firstSeenLearner: map[uint64]bool{}, names: map[uint64]string{},
		unstartedVoters: map[uint64]bool{}, done: make(chan struct{})}
	for _, m := range first.Members {
		w.initial[m.ID] = true
	}
	ctx, w.cancel = context.WithCancel(ctx)
	go func() {
		defer close(w.done)
		defer c.Close()
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for {
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			resp, err := c.MemberList(rctx)
			rcancel()
			w.record(resp, err)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *memberWatch) record(resp *clientv3.MemberListResponse, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.polls++
	if err != nil {
		w.fails++
		return
	}
	var pending []string
	for _, m := range resp.Members {
		if m.Name != "" {
			w.names[m.ID] = m.Name
		}
		if m.IsLearner || m.Name == "" {
			pending = append(pending, fmt.Sprintf("%x(learner=%t,name=%q)", m.ID, m.IsLearner, m.Name))
		}
		if w.initial[m.ID] {
			continue
		}
		if !m.IsLearner && m.Name == "" {
			w.unstartedVoters[m.ID] = true
		}
		if _, seen := w.firstSeenLearner[m.ID]; !seen {
			w.firstSeenLearner[m.ID] = m.IsLearner
		}
	}
	if len(pending) > w.maxPending {
		w.maxPending = len(pending)
		w.pendingAtMax = strings.Join(pending, ", ")
	}
}

func (w *memberWatch) stop() {
	w.cancel()
	<-w.done
}

// assertJoinedAsLearners stops the watch and checks that exactly wantNew
// members joined, each first seen as a learner, never two pending at once.
func (w *memberWatch) assertJoinedAsLearners(t *testing.T, wantNew int) {
	t.Helper()
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("member watch: %d polls, %d failed, %d new members", w.polls, w.fails, len(w.firstSeenLearner))
	var ids []uint64
	for id := range w.firstSeenLearner {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if !w.firstSeenLearner[id] {
			t.Errorf("new member %x (%s) was a voter when first seen: joins must add learners", id, w.names[id])
		}
	}
	if len(ids) != wantNew {
		t.Errorf("saw %d new members (%x), want %d", len(ids), ids, wantNew)
	}
	for id := range w.unstartedVoters {
		t.Errorf("new member %x (%s) was a voter before it started: a learner must be promoted only once it runs and has published itself", id, w.names[id])
	}
	if w.maxPending > 1 {
		t.Errorf("saw %d learners or unstarted members at once (%s): joins must be one at a time", w.maxPending, w.pendingAtMax)
	}
}
