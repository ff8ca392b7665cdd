package appliance

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// membershipLockKey serializes membership changes cluster-wide (§4.2): joins,
// stale-member removals and leaving, so that two changes checked against the
// same membership can never both pass etcd's quorum checks.
const membershipLockKey = "/etcd-appliance/locks/membership"

// membershipLockTTL is the lease of the lock: a holder that dies releases it
// after this many seconds.
const membershipLockTTL = 10

// lockMembership takes the membership lock, waiting at most wait for it.
// The returned unlock releases it; it is bounded and never blocks for long.
func (a *Appliance) lockMembership(ctx context.Context, c *clientv3.Client, wait time.Duration) (unlock func(), err error) {
	// The lease is granted with a deadline of our own: concurrency.NewSession
	// would grant it with ctx, waiting forever on unreachable endpoints.
	gctx, cancel := context.WithTimeout(ctx, requestTimout)
	lease, err := c.Grant(gctx, membershipLockTTL)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("granting the membership lock's lease: %w", err)
	}
	sctx, stop := context.WithCancel(ctx)
	session, err := concurrency.NewSession(c, concurrency.WithLease(lease.ID), concurrency.WithContext(sctx))
	if err != nil {
		stop()
		return nil, fmt.Errorf("opening the membership lock's session: %w", err)
	}
	mu := concurrency.NewMutex(session, membershipLockKey)
	lctx, lcancel := context.WithTimeout(ctx, wait)
	err = mu.Lock(lctx)
	lcancel()
	if err != nil {
		closeSession(session)
		stop()
		return nil, fmt.Errorf("taking the membership lock: %w", err)
	}
	a.log.Debug("membership lock taken")
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), requestTimout)
		if err := mu.Unlock(uctx); err != nil {
			a.log.Warn("releasing the membership lock; its lease frees it", "err", err)
		}
		cancel()
		closeSession(session)
		stop()
	}, nil
}

// closeSession revokes the session's lease with a bounded wait.
func closeSession(s *concurrency.Session) {
	s.Orphan()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimout)
	defer cancel()
	_, _ = s.Client().Revoke(ctx, s.Lease())
}
