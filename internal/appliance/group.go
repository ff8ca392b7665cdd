package appliance

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// steadyListEvery is how often the leader lists the group while nothing
// changes: every member a started, healthy voter whose instance the last
// listing had running. Anything else (a member unhealthy or learning, an
// instance gone) lists the group every --reconcile-interval. With AWS a
// listing is one DescribeAutoScalingGroups call, so a steady cluster makes
// 120 of them an hour (SPEC §7: ≤ 360 calls an hour in all).
const steadyListEvery = 30 * time.Second

// startupListEvery bounds how often a starting instance lists the group:
// its plans are made every --startup-interval, and a join decides twice.
const startupListEvery = time.Second

// groupCache keeps the last successful group listing, so that readers
// that can do with a recent one (steady housekeeping, /v1/status) share it.
type groupCache struct {
	mu        sync.Mutex
	at        time.Time
	instances []cluster.Instance
}

// listGroup lists the group, or returns the last successful listing when
// it is younger than maxAge. A failed listing is returned as the error,
// never replaced by an older one.
func (a *Appliance) listGroup(ctx context.Context, maxAge time.Duration) ([]cluster.Instance, error) {
	now := a.now()
	a.groupCache.mu.Lock()
	if maxAge > 0 && !a.groupCache.at.IsZero() && now.Sub(a.groupCache.at) < maxAge {
		insts := slices.Clone(a.groupCache.instances)
		a.groupCache.mu.Unlock()
		return insts, nil
	}
	a.groupCache.mu.Unlock()
	gctx, cancel := context.WithTimeout(ctx, groupTimeout)
	defer cancel()
	insts, err := a.group.Instances(gctx)
	if err != nil {
		return nil, err
	}
	a.groupCache.mu.Lock()
	a.groupCache.at, a.groupCache.instances = now, slices.Clone(insts)
	a.groupCache.mu.Unlock()
	return insts, nil
}

// steady reports whether nothing is changing in the cluster: every member
// is a started, healthy voter and the last group listing has its instance
// running. Then the leader's housekeeping can do with a listing up to
// steadyListEvery old.
func (a *Appliance) steady(members []cluster.Member, health map[cluster.ID]cluster.MemberStatus) bool {
	a.groupCache.mu.Lock()
	listed := a.groupCache.instances
	known := !a.groupCache.at.IsZero()
	a.groupCache.mu.Unlock()
	if !known || len(members) == 0 {
		return false
	}
	running := map[string]bool{}
	for _, inst := range listed {
		if inst.State == cluster.InstanceRunning {
			running[inst.ID] = true
		}
	}
	for _, m := range members {
		if m.IsLearner || !m.Started() || !health[m.ID].Healthy || !running[m.Name] {
			return false
		}
	}
	return true
}

// withConfirmedTerminations adds to the group listing, as terminated, the
// members' instances that left the listing and that the provider confirms
// terminated: their members are then removed at once rather than after
// --stale-grace. A failed check confirms nothing.
func (a *Appliance) withConfirmedTerminations(ctx context.Context, group []cluster.Instance, members []cluster.Member) []cluster.Instance {
	checker, ok := a.group.(provider.TerminationChecker)
	if !ok {
		return group
	}
	listed := map[string]bool{}
	for _, inst := range group {
		listed[inst.ID] = true
	}
	var ask []string
	for _, m := range members {
		if m.Name != "" && !listed[m.Name] && !a.hk.gone[m.Name] {
			ask = append(ask, m.Name)
		}
	}
	if len(ask) > 0 {
		cctx, cancel := context.WithTimeout(ctx, groupTimeout)
		gone, err := checker.Terminated(cctx, ask)
		cancel()
		if err != nil {
			a.log.Debug("checking whether absent instances are terminated", "instances", ask, "err", err)
		}
		for _, id := range gone {
			if a.hk.gone == nil {
				a.hk.gone = map[string]bool{}
			}
			a.hk.gone[id] = true
			a.log.Info("instance confirmed terminated", "instance", id)
		}
	}
	names := map[string]bool{}
	for _, m := range members {
		names[m.Name] = true
	}
	for id := range a.hk.gone {
		if !names[id] {
			delete(a.hk.gone, id)
		}
	}
	out := group
	for _, m := range members {
		if m.Name != "" && !listed[m.Name] && a.hk.gone[m.Name] {
			out = append(slices.Clip(out), cluster.Instance{ID: m.Name, State: cluster.InstanceTerminated})
		}
	}
	return out
}
