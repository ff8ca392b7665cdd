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

	mu        sync.Mutex
	at        time.Time
	instances []cluster.Instance
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
	g.at, g.instances = now, slices.Clone(insts)
	g.mu.Unlock()
	return insts, nil
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
