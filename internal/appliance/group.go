package appliance

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// groupTimeout bounds one group listing (the provider retries within it).
const groupTimeout = 5 * time.Second

// startupListEvery bounds how often a starting instance lists the group:
// its plans are made every --startup-interval, and a join decides twice.
const startupListEvery = time.Second

// groupLister lists the group and keeps the last successful listing, so
// that readers that can do with a recent one (steady housekeeping,
// /v1/status) share it.
type groupLister struct {
	group provider.Group
	now   func() time.Time
	// listed hears every successful listing (nil: nobody), which the node
	// publishes as its view of the group.
	listed func([]cluster.Instance)

	mu        sync.Mutex
	at        time.Time
	instances []cluster.Instance
	// tried is when freshen last listed; refreshing is closed when its
	// listing ends, nil while none is under way.
	tried      time.Time
	refreshing chan struct{}
}

func (g *groupLister) name() string { return g.group.Name() }

// list lists the group, or returns the last successful listing when it is
// younger than maxAge. A failed listing is returned as the error, never
// replaced by an older one.
func (g *groupLister) list(ctx context.Context, maxAge time.Duration) ([]cluster.Instance, error) {
	now := g.now()
	g.mu.Lock()
	if maxAge > 0 && !g.at.IsZero() && now.Sub(g.at) < maxAge {
		insts := slices.Clone(g.instances)
		g.mu.Unlock()
		return insts, nil
	}
	g.mu.Unlock()
	gctx, cancel := context.WithTimeout(ctx, groupTimeout)
	defer cancel()
	insts, err := g.group.Instances(gctx)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	if now.Before(g.at) {
		// A listing started later ended first: it is the newer one, and
		// stays the one kept and published.
		g.mu.Unlock()
		return insts, nil
	}
	g.at, g.instances = now, slices.Clone(insts)
	if g.listed != nil {
		// Under the lock, so that views are published in the order kept.
		g.listed(slices.Clone(insts))
	}
	g.mu.Unlock()
	return insts, nil
}

// freshen lists the group in the background when the last listing, and
// the last one freshen started, are older than maxAge, and waits up to
// wait for it to end. It serves the readers of the published view of the
// group (/v1/peer): an instance whose member runs and that does not keep
// house lists the group for nobody else, and its view would otherwise be
// as old as its start. ctx's values go to the listing, not its end: the
// listing outlives the reader who asked too late.
func (g *groupLister) freshen(ctx context.Context, maxAge, wait time.Duration) {
	now := g.now()
	g.mu.Lock()
	done := g.refreshing
	if done == nil {
		if now.Sub(g.at) < maxAge || now.Sub(g.tried) < maxAge {
			g.mu.Unlock()
			return
		}
		done = make(chan struct{})
		g.refreshing, g.tried = done, now
		go func() {
			defer close(done)
			_, _ = g.list(context.WithoutCancel(ctx), 0)
			g.mu.Lock()
			g.refreshing = nil
			g.mu.Unlock()
		}()
	}
	g.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// desired is the group's desired capacity as its provider last listed it,
// 0 when the provider does not know one.
func (g *groupLister) desired() int {
	if s, ok := g.group.(provider.Sized); ok {
		return s.Desired()
	}
	return 0
}

// last is the last successful listing, nil when none succeeded yet.
func (g *groupLister) last() []cluster.Instance {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.at.IsZero() {
		return nil
	}
	return append([]cluster.Instance{}, g.instances...)
}

// terminations confirms, through the provider, that instances which left
// the group listing are terminated: their members are then removed at once
// rather than after --stale-grace. It remembers the confirmed ones.
type terminations struct {
	*node
	checker provider.TerminationChecker // nil: the provider can't tell
	gone    map[string]bool
}

func newTerminations(n *node, g provider.Group) *terminations {
	checker, _ := g.(provider.TerminationChecker)
	return &terminations{node: n, checker: checker, gone: map[string]bool{}}
}

// withConfirmed adds to the group listing, as terminated, the members'
// instances that left the listing and that the provider confirms
// terminated. A failed check confirms nothing.
func (t *terminations) withConfirmed(ctx context.Context, group []cluster.Instance, members []cluster.Member) []cluster.Instance {
	if t.checker == nil {
		return group
	}
	listed := map[string]bool{}
	for _, inst := range group {
		listed[inst.ID] = true
	}
	var ask []string
	for _, m := range members {
		if m.Name != "" && !listed[m.Name] && !t.gone[m.Name] {
			ask = append(ask, m.Name)
		}
	}
	t.confirm(ctx, ask)
	names := map[string]bool{}
	for _, m := range members {
		names[m.Name] = true
	}
	for id := range t.gone {
		if !names[id] {
			delete(t.gone, id)
		}
	}
	out := group
	for _, m := range members {
		if m.Name != "" && !listed[m.Name] && t.gone[m.Name] {
			out = append(slices.Clip(out), cluster.Instance{ID: m.Name, State: cluster.InstanceTerminated})
		}
	}
	return out
}

func (t *terminations) confirm(ctx context.Context, ask []string) {
	if len(ask) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, groupTimeout)
	gone, err := t.checker.Terminated(cctx, ask)
	cancel()
	if err != nil {
		t.log.Debug("checking whether absent instances are terminated", "instances", ask, "err", err)
	}
	for _, id := range gone {
		t.gone[id] = true
		t.log.Info("instance confirmed terminated", "instance", id)
	}
}
