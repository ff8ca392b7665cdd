package appliance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// leaveTimeout bounds one attempt to leave the cluster.
const leaveTimeout = 15 * time.Second

// errNotMember: leaving, this instance is not (or no longer) a member.
var errNotMember = errors.New("this instance is not a member")

// isRule reports whether err is a hold of the rule.
func isRule(err error, rule cluster.Rule) bool {
	var h *cluster.Hold
	return errors.As(err, &h) && h.Rule == rule
}

// leaver removes this instance's member from the cluster: on shutdown with
// --leave-on-shutdown=always, and when the group terminates the instance.
type leaver struct {
	*node
	// retry is the pause between removals that etcd refuses as unstable.
	retry time.Duration
}

// leave removes this member, handing leadership over first, within
// leaveTimeout. It refuses as cluster.DecideLeave says: the quorum rule of
// every removal, and never the last voter; with budget, also while the
// rest of the cluster is not at full strength (cluster.CheckDrain). The
// membership lock is taken through the other members, since this member's
// etcd goes away with the removal.
func (l *leaver) leave(ctx context.Context, reason string, budget bool) error {
	ctx, cancel := context.WithTimeout(ctx, leaveTimeout)
	defer cancel()
	local, err := l.dial([]string{l.clientURL()})
	if err != nil {
		return err
	}
	defer local.Close()
	view, err := local.Members(ctx)
	if err != nil {
		return err
	}
	var others []string
	for _, m := range view.Members {
		if m.Name != l.self.ID {
			others = append(others, m.ClientURLs...)
		}
	}
	if len(others) == 0 {
		return &cluster.Hold{Rule: cluster.RuleLastVoter, Name: l.self.ID, Why: "this is the last member"}
	}
	rest, err := l.dial(others)
	if err != nil {
		return err
	}
	defer rest.Close()
	unlock, err := rest.LockMembership(ctx, leaveTimeout/2)
	if err != nil {
		return err
	}
	defer unlock()
	return l.leaveLocked(ctx, local, rest, reason, budget)
}

// leaveLocked is the leave under the membership lock: decide on a fresh
// member list and health, move leadership, remove.
func (l *leaver) leaveLocked(ctx context.Context, local, rest etcdAPI, reason string, budget bool) error {
	view, err := rest.Members(ctx)
	if err != nil {
		return err
	}
	group := l.groups.last()
	if budget {
		// The budget counts the group's newcomers and its desired
		// capacity: a fresh listing, taken under the membership lock.
		if group, err = l.groups.list(ctx, 0); err != nil {
			return &cluster.Hold{Rule: cluster.RuleGroupUnknown, Name: l.self.ID,
				Why: fmt.Sprintf("the group listing failed (%v): the drain budget cannot be judged", err)}
		}
	}
	health := memberHealth(ctx, rest, view.Members, group)
	healthy := healthyByID(health)
	plan := cluster.DecideLeave(view.Members, healthy, leaderOf(health), l.self.ID)
	switch {
	case plan.Member == 0:
		return errNotMember
	case plan.Refused != nil:
		return plan.Refused
	}
	if budget {
		if h := cluster.CheckDrain(view.Members, healthy, group, l.groups.desired(), plan.Member); h != nil {
			return h
		}
	}
	if plan.TransferTo != 0 {
		if err := local.MoveLeader(ctx, plan.TransferTo); err != nil {
			l.log.Warn("moving leadership before leaving", "to", plan.TransferTo, "err", err)
		} else {
			l.log.Info("leadership moved before leaving", "to", plan.TransferTo)
		}
	}
	if err := l.remove(ctx, rest, plan.Member); err != nil {
		return err
	}
	l.metrics.removals.Inc()
	l.log.Info("left the cluster", "member", plan.Member, "reason", reason)
	return nil
}

// remove removes the member, trying again while etcd's
// --strict-reconfig-check refuses it until the leader has been connected
// to a quorum for 5 s, as right after a leader change.
func (l *leaver) remove(ctx context.Context, c etcdAPI, id cluster.ID) error {
	for {
		err := c.Remove(ctx, id)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, rpctypes.ErrMemberNotFound):
			// The leader removed it meanwhile: its instance is terminating.
			return errNotMember
		case !errors.Is(err, rpctypes.ErrUnhealthy):
			return fmt.Errorf("removing member %s: %w", id, err)
		}
		l.log.Info("removal refused until the cluster is stable; retrying", "member", id, "err", err)
		if !sleep(ctx, l.retry) {
			return fmt.Errorf("removing member %s: %w", id, err)
		}
	}
}
