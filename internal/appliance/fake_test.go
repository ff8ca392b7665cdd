package appliance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// fakeEtcd is an etcdAPI over an in-memory membership. It records every
// call as "Method arg" in order, and fails the calls the test names.
type fakeEtcd struct {
	mu sync.Mutex
	// members is the membership; clusterID its cluster.
	members   []cluster.Member
	clusterID cluster.ID
	// status answers Status by endpoint; a missing endpoint fails.
	status map[string]etcdStatus
	// fail makes the calls of a method fail, in turn; a nil entry lets
	// that call through.
	fail map[string][]error
	// nextID is the id of the next learner added.
	nextID cluster.ID
	// userKeys answers UserKeys.
	userKeys int64
	// snapshot is the stream Snapshot answers (nil: none).
	snapshot []byte
	// holder and holderLease answer RoleHolder.
	holder      string
	holderLease int64
	calls       []string
	dials       [][]string
	locked      bool
	// tenures are the housekeeper roles handed out, in order; campaign,
	// when set, holds HoldRole until it receives (or ctx ends, unless
	// deaf: clientv3's campaign, cancelled, still waits on an unreachable
	// etcd until the client closes).
	tenures  []*fakeTenure
	campaign chan struct{}
	deaf     bool
	// versions answer Versions; newFakeEtcd's cluster runs 3.6.
	versions clusterVersions
	// facts are the appliance's keys Fact reads and PutFact writes.
	facts map[string][]byte
	// endpoints answer Endpoints (default: one http URL).
	endpoints []string
}

var _ etcdAPI = (*fakeEtcd)(nil)

func newFakeEtcd(ms []cluster.Member) *fakeEtcd {
	f := &fakeEtcd{members: slices.Clone(ms), clusterID: 0xc1, status: map[string]etcdStatus{},
		fail: map[string][]error{}, nextID: 0xf00, versions: clusterVersions{Cluster: "3.6.0"}}
	for _, m := range ms {
		if m.Started() {
			f.status[m.ClientURLs[0]] = etcdStatus{ClusterID: f.clusterID, MemberID: m.ID, Leader: ms[0].ID}
		}
	}
	return f
}

// dialer hands out the fake for any endpoints, recording them.
func (f *fakeEtcd) dialer() dialer {
	return func(endpoints []string) (etcdAPI, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.dials = append(f.dials, endpoints)
		if err := f.failing("Dial"); err != nil {
			return nil, err
		}
		return f, nil
	}
}

// failing records nothing; it pops the next injected failure of method.
func (f *fakeEtcd) failing(method string) error {
	errs := f.fail[method]
	if len(errs) == 0 {
		return nil
	}
	f.fail[method] = errs[1:]
	return errs[0]
}

func (f *fakeEtcd) call(method string, arg any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if arg != nil {
		f.calls = append(f.calls, fmt.Sprintf("%s %v", method, arg))
	} else {
		f.calls = append(f.calls, method)
	}
	return f.failing(method)
}

// log is the calls made so far, Status calls left out unless withStatus.
func (f *fakeEtcd) log(withStatus bool) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if withStatus || !strings.HasPrefix(c, "Status") {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeEtcd) called(prefix string) bool {
	return slices.ContainsFunc(f.log(true), func(c string) bool { return strings.HasPrefix(c, prefix) })
}

func (f *fakeEtcd) view() *cluster.ClusterView {
	return &cluster.ClusterView{ClusterID: f.clusterID, Members: slices.Clone(f.members)}
}

func (f *fakeEtcd) Members(context.Context) (*cluster.ClusterView, error) {
	if err := f.call("Members", nil); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.view(), nil
}

func (f *fakeEtcd) LocalMembers(context.Context) (*cluster.ClusterView, error) {
	if err := f.call("LocalMembers", nil); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.view(), nil
}

func (f *fakeEtcd) AddLearner(_ context.Context, peerURL string) (cluster.ID, []cluster.Member, error) {
	if err := f.call("AddLearner", peerURL); err != nil {
		return 0, nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextID
	f.nextID++
	f.members = append(f.members, cluster.Member{ID: id, PeerURLs: []string{peerURL}, IsLearner: true})
	return id, slices.Clone(f.members), nil
}

func (f *fakeEtcd) Remove(_ context.Context, id cluster.ID) error {
	if err := f.call("Remove", id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.members = slices.DeleteFunc(f.members, func(m cluster.Member) bool { return m.ID == id })
	return nil
}

func (f *fakeEtcd) UpdatePeerURLs(_ context.Context, id cluster.ID, peerURLs []string) error {
	if err := f.call("UpdatePeerURLs", id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.members {
		if f.members[i].ID == id {
			f.members[i].PeerURLs = slices.Clone(peerURLs)
		}
	}
	return nil
}

func (f *fakeEtcd) Promote(_ context.Context, id cluster.ID) error {
	if err := f.call("Promote", id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.members {
		if f.members[i].ID == id {
			f.members[i].IsLearner = false
		}
	}
	return nil
}

func (f *fakeEtcd) MoveLeader(_ context.Context, to cluster.ID) error {
	return f.call("MoveLeader", to)
}

func (f *fakeEtcd) Status(_ context.Context, endpoint string) (etcdStatus, error) {
	if err := f.call("Status", endpoint); err != nil {
		return etcdStatus{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.status[endpoint]
	if !ok {
		return etcdStatus{}, errors.New("connection refused")
	}
	return st, nil
}

func (f *fakeEtcd) TryLockMembership(ctx context.Context) (func(), error) {
	return f.LockMembership(ctx, 0)
}

func (f *fakeEtcd) LockMembership(context.Context, time.Duration) (func(), error) {
	if err := f.call("Lock", nil); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.locked = true
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		f.locked = false
		f.calls = append(f.calls, "Unlock")
		f.mu.Unlock()
	}, nil
}

func (f *fakeEtcd) HoldRole(ctx context.Context, _ string) (tenure, error) {
	if err := f.call("HoldRole", nil); err != nil {
		return nil, err
	}
	if f.campaign != nil {
		var cancelled <-chan struct{}
		if !f.deaf {
			cancelled = ctx.Done()
		}
		select {
		case <-f.campaign:
		case <-cancelled:
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTenure{done: make(chan struct{})}
	f.tenures = append(f.tenures, t)
	return t, nil
}

func (f *fakeEtcd) RoleHolder(context.Context) (string, int64, error) {
	if err := f.call("RoleHolder", nil); err != nil {
		return "", 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holder, f.holderLease, nil
}

func (f *fakeEtcd) RevokeLease(_ context.Context, lease int64) error {
	return f.call("RevokeLease", lease)
}

// tenure is the latest role handed out, nil when none was.
func (f *fakeEtcd) tenure() *fakeTenure {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.tenures) == 0 {
		return nil
	}
	return f.tenures[len(f.tenures)-1]
}

// fakeTenure is a housekeeper role that the test takes away: expire as the
// client sees a lease end (Done closes), revoke as etcd sees it while the
// client did not notice yet (a process resumed after a pause).
type fakeTenure struct {
	mu       sync.Mutex
	done     chan struct{}
	revoked  bool
	resigned bool
}

var _ tenure = (*fakeTenure)(nil)

func (t *fakeTenure) Done() <-chan struct{} { return t.done }

func (t *fakeTenure) Held(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.revoked {
		return fmt.Errorf("%w: revoked by the test", errRoleLost)
	}
	return nil
}

func (t *fakeTenure) Resign() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resigned = true
}

func (t *fakeTenure) isResigned() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.resigned
}

func (t *fakeTenure) revoke() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.revoked = true
}

func (t *fakeTenure) expire() {
	t.revoke()
	close(t.done)
}

// Versions is not logged, as Status is not by default: the gate only reads.
func (f *fakeEtcd) Versions(context.Context) (clusterVersions, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("Versions"); err != nil {
		return clusterVersions{}, err
	}
	return f.versions, nil
}

func (f *fakeEtcd) Snapshot(context.Context) (io.ReadCloser, error) {
	if err := f.call("Snapshot", nil); err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(f.snapshot)), nil
}

func (f *fakeEtcd) UserKeys(context.Context) (int64, error) {
	if err := f.call("UserKeys", nil); err != nil {
		return 0, err
	}
	return f.userKeys, nil
}

// Endpoints names one member, as a dialled client always does.
// Fact and PutFact are not recorded as calls: they are the cluster
// facts' bookkeeping, beside the apply steps the tests compare.
func (f *fakeEtcd) Fact(_ context.Context, key string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("Fact"); err != nil {
		return nil, err
	}
	return f.facts[key], nil
}

func (f *fakeEtcd) PutFact(_ context.Context, key string, value []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("PutFact"); err != nil {
		return err
	}
	if f.facts == nil {
		f.facts = map[string][]byte{}
	}
	f.facts[key] = value
	return nil
}

func (f *fakeEtcd) Changes(context.Context) <-chan struct{} { return nil }

func (f *fakeEtcd) Endpoints() []string {
	if f.endpoints != nil {
		return f.endpoints
	}
	return []string{"http://127.0.0.1:2379"}
}
func (f *fakeEtcd) Close() error { return nil }

// fakeProcess is an etcd child that runs until stopped.
type fakeProcess struct {
	done    chan struct{}
	stopped bool
}

func newFakeProcess() *fakeProcess { return &fakeProcess{done: make(chan struct{})} }

func (p *fakeProcess) Done() <-chan struct{} { return p.done }
func (p *fakeProcess) Err() error            { return nil }
func (p *fakeProcess) LastLines() []string   { return nil }
func (p *fakeProcess) Stop(time.Duration) error {
	if !p.stopped {
		p.stopped = true
		close(p.done)
	}
	return nil
}

// fakeLauncher records the launches; each makes a fakeProcess, and may
// make the fake etcd answer for the new member (serve).
type fakeLauncher struct {
	launches []cluster.Launch
	// releases are the versions of the launches, current is what launch
	// starts.
	releases []string
	current  etcdRelease
	procs    []*fakeProcess
	err      error
	// serve is called with each launch before it returns.
	serve func(n int)
}

func (l *fakeLauncher) currentRelease() etcdRelease { return l.current }

func (l *fakeLauncher) launch(ctx context.Context, launch cluster.Launch) (etcdProcess, error) {
	return l.launchRelease(ctx, launch, l.current)
}

func (l *fakeLauncher) launchRelease(_ context.Context, launch cluster.Launch, r etcdRelease) (etcdProcess, error) {
	if l.err != nil {
		return nil, l.err
	}
	l.launches = append(l.launches, launch)
	l.releases = append(l.releases, r.Version)
	p := newFakeProcess()
	l.procs = append(l.procs, p)
	if l.serve != nil {
		l.serve(len(l.launches))
	}
	return p, nil
}
