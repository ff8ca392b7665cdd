package appliance

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc/connectivity"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// Timeouts of the calls to etcd.
const (
	dialTimeout    = 2 * time.Second
	requestTimeout = 3 * time.Second
	statusTimeout  = time.Second
)

// etcdAPI is what the appliance asks of etcd: the calls its apply steps make
// (join, leave, stale removal, promotion, recovery), as raft-autopilot's Raft
// interface is what autopilot asks of raft. Every call carries its own
// deadline. The real one is etcdClient; tests use a fake that records calls.
type etcdAPI interface {
	// Members is the member list by a linearizable request: it exists only
	// while the cluster has quorum.
	Members(ctx context.Context) (*cluster.ClusterView, error)
	// LocalMembers is the member list as the endpoint itself knows it, with
	// or without quorum.
	LocalMembers(ctx context.Context) (*cluster.ClusterView, error)
	// AddLearner adds a learner with the peer URL and returns its id and
	// the members after the change.
	AddLearner(ctx context.Context, peerURL string) (cluster.ID, []cluster.Member, error)
	Remove(ctx context.Context, id cluster.ID) error
	Promote(ctx context.Context, id cluster.ID) error
	MoveLeader(ctx context.Context, to cluster.ID) error
	// UpdatePeerURLs sets the peer URLs of member id (a move between
	// plaintext and TLS changes their scheme).
	UpdatePeerURLs(ctx context.Context, id cluster.ID, peerURLs []string) error
	// Status asks the member at endpoint (a client URL) for its status.
	Status(ctx context.Context, endpoint string) (etcdStatus, error)
	// LockMembership takes the cluster-wide membership lock, waiting at
	// most wait; unlock is bounded and never blocks for long.
	LockMembership(ctx context.Context, wait time.Duration) (unlock func(), err error)
	// TryLockMembership takes the membership lock if it is free, and
	// fails with errMembershipLocked at once if not: a waiter that keeps no
	// stream open on the members meanwhile.
	TryLockMembership(ctx context.Context) (unlock func(), err error)
	// HoldRole campaigns for the housekeeper role and returns once it is
	// held (or ctx ends): the role is an etcd election whose lease this
	// client keeps alive, so an appliance that hangs loses it within
	// housekeeperTTL.
	HoldRole(ctx context.Context, name string) (tenure, error)
	// RoleHolder is the name the housekeeper role's holder campaigned with
	// and the lease that keeps its key, "" when nobody holds it.
	RoleHolder(ctx context.Context) (name string, lease int64, err error)
	// RevokeLease ends a lease, and the keys it keeps, at once.
	RevokeLease(ctx context.Context, lease int64) error
	// Versions are the cluster version and any downgrade in progress, as
	// the first member that answers tells them.
	Versions(ctx context.Context) (clusterVersions, error)
	// Snapshot streams a snapshot of the endpoint's database.
	Snapshot(ctx context.Context) (io.ReadCloser, error)
	// UserKeys counts the keys outside the appliance's own prefix.
	UserKeys(ctx context.Context) (int64, error)
	// Fact reads one of the appliance's keys as the endpoint itself has it
	// (a serializable read: no quorum, no network), nil when absent;
	// PutFact writes one.
	Fact(ctx context.Context, key string) ([]byte, error)
	PutFact(ctx context.Context, key string, value []byte) error
	// Changes receives (without blocking the watch: one pending at most)
	// whenever a key under the appliance's prefix changes: the membership
	// lock taken or freed (a join, a leave, a removal begins or ends), the
	// housekeeper role changing hands, the published holds. It is one
	// watch stream, which costs etcd nothing while nothing changes. It is
	// closed once ctx ends.
	Changes(ctx context.Context) <-chan struct{}
	// Endpoints are the client URLs the client talks to.
	Endpoints() []string
	Close() error
}

// errMembershipLocked: the membership lock is held by another.
var errMembershipLocked = errors.New("the membership lock is held by another instance")

// dialer connects to the etcd members at endpoints.
type dialer func(endpoints []string) (etcdAPI, error)

// etcdStatus is a member's answer to a status request.
type etcdStatus struct {
	ClusterID, MemberID, Leader cluster.ID
	Revision                    int64
	RaftIndex, RaftTerm         uint64
	IsLearner                   bool
	// Errors are the member's alarms and errors; healthy without any.
	Errors  []string
	Version string
	DBSize  int64
}

// clusterVersions are what the version gate of a join reads from the
// cluster.
type clusterVersions struct {
	// Cluster is etcd's cluster version, the lowest minor its members run.
	Cluster string
	// DowngradeTarget is the version an enabled downgrade goes to, "" when
	// none is (etcd before 3.6 tells of none).
	DowngradeTarget string
}

// Leads reports whether the member that answered leads its cluster.
func (s etcdStatus) Leads() bool { return s.Leader != 0 && s.Leader == s.MemberID }

// membershipLockKey serializes membership changes cluster-wide (§4.2): joins,
// stale-member removals and leaving, so that two changes checked against the
// same membership can never both pass etcd's quorum checks.
const membershipLockKey = "/etcd-appliance/locks/membership"

// membershipLockTTL is the lease of the lock: a holder that dies releases it
// after this many seconds.
const membershipLockTTL = 10

// housekeeperKey is the election of the housekeeper (§4.4): the appliance
// whose key under it is the oldest holds the role.
const housekeeperKey = "/etcd-appliance/housekeeper"

// housekeeperTTL is the lease of the housekeeper role, in seconds: an
// appliance that stops keeping it alive (hung, partitioned, killed) loses the
// role this long after its last keep-alive, and the next in line takes it.
// The client keeps a lease alive every third of its TTL, and every
// appliance waits in line with one: 12 keep-alives a minute each at 15 s
// (36 at 5 s would take most of SPEC §7's idle budget of 60 requests a
// minute). A holder whose instance is killed is unseated sooner by the
// etcd leader's appliance (unseatDeadHolder); one that stops or drains
// resigns at once; only a hung one keeps the role for the whole TTL.
const housekeeperTTL = 15

// errRoleLost is a tenure that ended: its lease expired or was revoked.
var errRoleLost = errors.New("housekeeper role lost")

// tenure is one holding of the housekeeper role.
type tenure interface {
	// Done is closed once the client saw the role's lease end. A process
	// resumed after a pause may act before it is closed: Held asks etcd.
	Done() <-chan struct{}
	// Held asks etcd whether the role is still this tenure's; it returns
	// errRoleLost (wrapped) when it is not.
	Held(ctx context.Context) error
	// Resign gives the role up, with a bounded wait.
	Resign()
}

// etcdClient is etcdAPI over clientv3.
type etcdClient struct {
	c   *clientv3.Client
	log *slog.Logger
	// http asks etcd's HTTP endpoints (/version) on its client port, over
	// the same TLS as c.
	http *http.Client
}

var _ etcdAPI = (*etcdClient)(nil)

// dialEtcd is the dialer of real etcd clients. tlsConfig is the client
// side of etcd's mutual TLS, asked at each dial (nil: plaintext); an
// http:// endpoint is dialled in plaintext either way.
func dialEtcd(log *slog.Logger, tlsConfig func() *tls.Config) dialer {
	return func(endpoints []string) (etcdAPI, error) {
		tc := tlsConfig()
		c, err := newClient(endpoints, tc)
		if err != nil {
			return nil, err
		}
		hc := http.DefaultClient
		if tc != nil {
			hc = &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
		}
		return &etcdClient{c: c, log: log, http: hc}, nil
	}
}

func newClient(endpoints []string, tc *tls.Config) (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{
		TLS:                  tc,
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

func (e *etcdClient) Endpoints() []string { return e.c.Endpoints() }

func (e *etcdClient) Close() error {
	if e.http != http.DefaultClient {
		e.http.CloseIdleConnections()
	}
	return e.c.Close()
}

func (e *etcdClient) Members(ctx context.Context) (*cluster.ClusterView, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := e.c.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing members: %w", err)
	}
	return &cluster.ClusterView{ClusterID: cluster.ID(resp.Header.ClusterId), Members: members(resp.Members)}, nil
}

func (e *etcdClient) LocalMembers(ctx context.Context) (*cluster.ClusterView, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := e.c.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return nil, fmt.Errorf("listing members: %w", err)
	}
	return &cluster.ClusterView{ClusterID: cluster.ID(resp.Header.ClusterId), Members: members(resp.Members)}, nil
}

func (e *etcdClient) AddLearner(ctx context.Context, peerURL string) (cluster.ID, []cluster.Member, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := e.c.MemberAddAsLearner(ctx, []string{peerURL})
	if err != nil {
		return 0, nil, err
	}
	return cluster.ID(resp.Member.ID), members(resp.Members), nil
}

func (e *etcdClient) Remove(ctx context.Context, id cluster.ID) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	_, err := e.c.MemberRemove(ctx, uint64(id))
	return err
}

func (e *etcdClient) Promote(ctx context.Context, id cluster.ID) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	_, err := e.c.MemberPromote(ctx, uint64(id))
	return err
}

func (e *etcdClient) UpdatePeerURLs(ctx context.Context, id cluster.ID, peerURLs []string) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	_, err := e.c.MemberUpdate(ctx, uint64(id), peerURLs)
	return err
}

func (e *etcdClient) MoveLeader(ctx context.Context, to cluster.ID) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	_, err := e.c.MoveLeader(ctx, uint64(to))
	return err
}

func (e *etcdClient) Status(ctx context.Context, endpoint string) (etcdStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	var resp *etcdserverpb.StatusResponse
	var err error
	if eps := e.c.Endpoints(); len(eps) == 1 && eps[0] == endpoint && e.c.ActiveConnection().GetState() == connectivity.Ready {
		// The endpoint the client is connected to is asked over that
		// connection: clientv3's Status dials a new one for every call,
		// which for the supervisor's looks at its own member is most of
		// what they cost either side. Only once it is ready: a connection
		// made before etcd listened waits out gRPC's reconnection backoff
		// (a second or more), which a new one does not.
		resp, err = etcdserverpb.NewMaintenanceClient(e.c.ActiveConnection()).Status(ctx, &etcdserverpb.StatusRequest{})
	} else {
		var r *clientv3.StatusResponse
		r, err = e.c.Status(ctx, endpoint)
		resp = (*etcdserverpb.StatusResponse)(r)
	}
	if err != nil {
		return etcdStatus{}, err
	}
	return etcdStatus{
		ClusterID: cluster.ID(resp.Header.ClusterId), MemberID: cluster.ID(resp.Header.MemberId),
		Leader: cluster.ID(resp.Leader), Revision: resp.Header.Revision, RaftIndex: resp.RaftIndex,
		RaftTerm: resp.RaftTerm, IsLearner: resp.IsLearner, Errors: resp.Errors, Version: resp.Version,
		DBSize: resp.DbSize,
	}, nil
}

// Versions reads the cluster version from a member's /version, which is
// the one place etcd serves it, and an enabled downgrade from its status.
func (e *etcdClient) Versions(ctx context.Context) (clusterVersions, error) {
	var errs []error
	for _, ep := range e.c.Endpoints() {
		v, err := e.versionsAt(ctx, ep)
		if err == nil {
			return v, nil
		}
		errs = append(errs, err)
	}
	return clusterVersions{}, fmt.Errorf("reading the cluster version: %w", errors.Join(errs...))
}

func (e *etcdClient) versionsAt(ctx context.Context, endpoint string) (clusterVersions, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/version", nil)
	if err != nil {
		return clusterVersions{}, err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return clusterVersions{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return clusterVersions{}, fmt.Errorf("GET %s/version: %s", endpoint, resp.Status)
	}
	var vs version.Versions
	if err := json.NewDecoder(resp.Body).Decode(&vs); err != nil {
		return clusterVersions{}, fmt.Errorf("GET %s/version: %w", endpoint, err)
	}
	st, err := e.c.Status(ctx, endpoint)
	if err != nil {
		return clusterVersions{}, err
	}
	out := clusterVersions{Cluster: vs.Cluster}
	if d := st.DowngradeInfo; d != nil && d.Enabled {
		out.DowngradeTarget = d.TargetVersion
	}
	return out, nil
}

func (e *etcdClient) Snapshot(ctx context.Context) (io.ReadCloser, error) { return e.c.Snapshot(ctx) }

// appliancePrefix holds the appliance's own keys (locks, the election).
const appliancePrefix = "/etcd-appliance/"

func (e *etcdClient) UserKeys(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	below, err := e.c.Get(ctx, "\x00", clientv3.WithRange(appliancePrefix), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	above, err := e.c.Get(ctx, clientv3.GetPrefixRangeEnd(appliancePrefix), clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return below.Count + above.Count, nil
}

func (e *etcdClient) Fact(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := e.c.Get(ctx, key, clientv3.WithSerializable())
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0].Value, nil
}

func (e *etcdClient) PutFact(ctx context.Context, key string, value []byte) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	_, err := e.c.Put(ctx, key, string(value))
	return err
}

func (e *etcdClient) Changes(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		// The watch ends when the client closes, or when etcd compacted
		// the revision it would resume from after a reconnection: then it
		// starts again from now, after a pause.
		for ctx.Err() == nil && e.c.Ctx().Err() == nil {
			for resp := range e.c.Watch(ctx, appliancePrefix, clientv3.WithPrefix()) {
				if len(resp.Events) == 0 && resp.Err() == nil {
					continue
				}
				select {
				case out <- struct{}{}:
				default:
				}
			}
			if !sleep(ctx, time.Second) {
				return
			}
		}
	}()
	return out
}

func (e *etcdClient) LockMembership(ctx context.Context, wait time.Duration) (unlock func(), err error) {
	return e.lockMembership(ctx, func(mu *concurrency.Mutex) error {
		lctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		return mu.Lock(lctx)
	})
}

func (e *etcdClient) TryLockMembership(ctx context.Context) (unlock func(), err error) {
	return e.lockMembership(ctx, func(mu *concurrency.Mutex) error {
		lctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		if err := mu.TryLock(lctx); errors.Is(err, concurrency.ErrLocked) {
			return errMembershipLocked
		} else if err != nil {
			return err
		}
		return nil
	})
}

// lockMembership takes the membership lock as lock says, in a session of
// its own.
func (e *etcdClient) lockMembership(ctx context.Context, lock func(*concurrency.Mutex) error) (unlock func(), err error) {
	// The lease is granted with a deadline of our own: concurrency.NewSession
	// would grant it with ctx, waiting forever on unreachable endpoints.
	gctx, cancel := context.WithTimeout(ctx, requestTimeout)
	lease, err := e.c.Grant(gctx, membershipLockTTL)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("granting the membership lock's lease: %w", err)
	}
	sctx, stop := context.WithCancel(ctx)
	session, err := concurrency.NewSession(e.c, concurrency.WithLease(lease.ID), concurrency.WithContext(sctx))
	if err != nil {
		stop()
		return nil, fmt.Errorf("opening the membership lock's session: %w", err)
	}
	mu := concurrency.NewMutex(session, membershipLockKey)
	if err := lock(mu); err != nil {
		closeSession(session)
		stop()
		return nil, fmt.Errorf("taking the membership lock: %w", err)
	}
	e.log.Debug("membership lock taken")
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		if err := mu.Unlock(uctx); err != nil {
			e.log.Warn("releasing the membership lock; its lease frees it", "err", err)
		}
		cancel()
		closeSession(session)
		stop()
	}, nil
}

func (e *etcdClient) HoldRole(ctx context.Context, name string) (tenure, error) {
	gctx, cancel := context.WithTimeout(ctx, requestTimeout)
	lease, err := e.c.Grant(gctx, housekeeperTTL)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("granting the housekeeper role's lease: %w", err)
	}
	// The session lives until the role is resigned, not until ctx (the
	// campaign) ends.
	sctx, stop := context.WithCancel(context.Background())
	session, err := concurrency.NewSession(e.c, concurrency.WithLease(lease.ID), concurrency.WithContext(sctx))
	if err != nil {
		stop()
		return nil, fmt.Errorf("opening the housekeeper role's session: %w", err)
	}
	t := &etcdTenure{session: session, election: concurrency.NewElection(session, housekeeperKey), stop: stop}
	// A campaign whose lease expires while it waits in line must end, not
	// win with a key that is gone.
	cctx, cancelCampaign := context.WithCancel(ctx)
	defer cancelCampaign()
	go func() {
		select {
		case <-session.Done():
			cancelCampaign()
		case <-cctx.Done():
		}
	}()
	if err := t.election.Campaign(cctx, name); err != nil {
		t.Resign()
		return nil, fmt.Errorf("campaigning for the housekeeper role: %w", err)
	}
	if err := t.Held(ctx); err != nil {
		t.Resign()
		return nil, err
	}
	return t, nil
}

func (e *etcdClient) RoleHolder(ctx context.Context) (string, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := e.c.Get(ctx, housekeeperKey+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", 0, err
	}
	if len(resp.Kvs) == 0 {
		return "", 0, nil
	}
	return string(resp.Kvs[0].Value), resp.Kvs[0].Lease, nil
}

func (e *etcdClient) RevokeLease(ctx context.Context, lease int64) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	_, err := e.c.Revoke(ctx, clientv3.LeaseID(lease))
	return err
}

// etcdTenure is a tenure over a concurrency election.
type etcdTenure struct {
	session  *concurrency.Session
	election *concurrency.Election
	stop     context.CancelFunc
}

var _ tenure = (*etcdTenure)(nil)

func (t *etcdTenure) Done() <-chan struct{} { return t.session.Done() }

func (t *etcdTenure) Held(ctx context.Context) error {
	select {
	case <-t.session.Done():
		return fmt.Errorf("%w: its session ended", errRoleLost)
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	// The role is the oldest key of the election; ours is gone with its
	// lease, or follows another.
	resp, err := t.session.Client().Get(ctx, housekeeperKey+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return fmt.Errorf("checking the housekeeper role: %w", err)
	}
	if len(resp.Kvs) == 0 || string(resp.Kvs[0].Key) != t.election.Key() {
		return fmt.Errorf("%w: its lease expired or another appliance holds it", errRoleLost)
	}
	return nil
}

func (t *etcdTenure) Resign() {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	_ = t.election.Resign(ctx)
	cancel()
	closeSession(t.session)
	t.stop()
}

// closeSession revokes the session's lease with a bounded wait.
func closeSession(s *concurrency.Session) {
	s.Orphan()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	_, _ = s.Client().Revoke(ctx, s.Lease())
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

// memberHealth asks every started member for its status, concurrently. A
// member that never started is not healthy: it answers nothing; nor is one
// whose instance the group listing shows terminated, which is not asked.
func memberHealth(ctx context.Context, c etcdAPI, ms []cluster.Member, group []cluster.Instance) map[cluster.ID]cluster.MemberStatus {
	out := make(map[cluster.ID]cluster.MemberStatus, len(ms))
	terminated := map[string]bool{}
	publicIP := map[string]string{}
	for _, inst := range group {
		terminated[inst.ID] = inst.State == cluster.InstanceTerminated
		publicIP[inst.ID] = inst.PublicIP
	}
	// A member whose peers move between plaintext and TLS advertises
	// both schemes: asked in the client's own, as etcd's auth wants a
	// TLS client's certificate.
	scheme := endpointScheme(c.Endpoints())
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range ms {
		st := cluster.MemberStatus{ID: m.ID, Name: m.Name, Role: role(m), PublicIP: publicIP[m.Name]}
		if len(m.PeerURLs) > 0 {
			st.PeerURL = m.PeerURLs[0]
		}
		switch {
		case len(m.ClientURLs) == 0:
			st.Error = "never started"
		case terminated[m.Name]:
			// No probe waits out its timeout on a machine that is gone.
			st.Error = "instance terminated"
			st.ClientURL = clientURLIn(m.ClientURLs, scheme)
		}
		if st.Error != "" {
			mu.Lock()
			out[m.ID] = st
			mu.Unlock()
			continue
		}
		st.ClientURL = clientURLIn(m.ClientURLs, scheme)
		wg.Go(func() {
			resp, err := c.Status(ctx, st.ClientURL)
			if err != nil {
				st.Error = err.Error()
			} else {
				st.Healthy = len(resp.Errors) == 0
				st.Leader = resp.Leads()
				st.Revision = resp.Revision
				st.RaftIndex = resp.RaftIndex
				st.RaftTerm = resp.RaftTerm
				st.DBSize = resp.DBSize
				st.Version = resp.Version
				st.Alarms = resp.Errors
			}
			mu.Lock()
			out[m.ID] = st
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// healthyByID is the health of every member as the removal rule reads it.
func healthyByID(health map[cluster.ID]cluster.MemberStatus) map[cluster.ID]bool {
	out := make(map[cluster.ID]bool, len(health))
	for id, st := range health {
		out[id] = st.Healthy
	}
	return out
}

// leaderOf is the member that said it leads, 0 when none did.
func leaderOf(health map[cluster.ID]cluster.MemberStatus) cluster.ID {
	for id, st := range health {
		if st.Leader {
			return id
		}
	}
	return 0
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

// clientURLIn is the one of a member's client URLs in scheme, when it
// advertises one, else its first.
func clientURLIn(urls []string, scheme string) string {
	for _, u := range urls {
		if strings.HasPrefix(u, scheme+"://") {
			return u
		}
	}
	return urls[0]
}

// endpointScheme is the scheme of a client's first endpoint, which decides
// whether it speaks TLS to every one (etcd's clientv3).
func endpointScheme(endpoints []string) string {
	if len(endpoints) > 0 {
		if scheme, _, ok := strings.Cut(endpoints[0], "://"); ok {
			return scheme
		}
	}
	return "http"
}

// clientURLsIn lists one client URL of every started member, in scheme
// when it advertises one: the endpoints of one client.
func clientURLsIn(ms []cluster.Member, scheme string) []string {
	var out []string
	for _, m := range ms {
		if m.Started() {
			out = append(out, clientURLIn(m.ClientURLs, scheme))
		}
	}
	return out
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
