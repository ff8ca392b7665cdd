package appliance

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

func TestDecideAuth(t *testing.T) {
	const self = pki.MemberCommonName
	add := func(u string) authStep { return authStep{authAddUser, u} }
	grant := func(u string) authStep { return authStep{authGrantRoot, u} }
	enable := authStep{Kind: authEnable}
	for _, tt := range []struct {
		name    string
		in      authInputs
		want    []authStep
		problem string // a word the problem must contain; "" for none
	}{
		{"a fresh cluster: root and the appliance's user, then enable",
			authInputs{Self: self, Roles: map[string][]string{}},
			[]authStep{add("root"), grant("root"), add(self), grant(self), enable}, ""},
		{"an operator's root with a password is kept, given the role only",
			authInputs{Self: self, Roles: map[string][]string{"root": {"reader"}}},
			[]authStep{grant("root"), add(self), grant(self), enable}, ""},
		{"an earlier attempt made the users: enable only",
			authInputs{Self: self, Roles: map[string][]string{"root": {"root"}, self: {"root"}}},
			[]authStep{enable}, ""},
		{"certificates named root (--tls files): one user",
			authInputs{Self: "root", Roles: map[string][]string{}},
			[]authStep{add("root"), grant("root"), enable}, ""},
		{"auth on, the appliance root: nothing",
			authInputs{Enabled: true, Self: self, Roles: map[string][]string{self: {"root", "other"}}},
			nil, ""},
		{"auth on without the appliance's user: only an operator can add it",
			authInputs{Enabled: true, Self: "node-7", Roles: map[string][]string{}},
			nil, "etcdctl user add node-7"},
		{"auth on, the appliance's user not root",
			authInputs{Enabled: true, Self: "node-7", Roles: map[string][]string{"node-7": {"reader"}}},
			nil, "grant-role node-7 root"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := decideAuth(tt.in)
			if !reflect.DeepEqual(got.Steps, tt.want) {
				t.Errorf("steps %v, want %v", got.Steps, tt.want)
			}
			if (tt.problem == "") != (got.Problem == "") || !strings.Contains(got.Problem, tt.problem) {
				t.Errorf("problem %q, want one containing %q", got.Problem, tt.problem)
			}
		})
	}
}

// fakeAuthEtcd is etcd's auth in memory, beside fakeEtcd's membership:
// it refuses enable without a root user of role root, as etcd does.
type fakeAuthEtcd struct {
	*fakeEtcd
	enabled bool
	users   map[string][]string
	calls   []string
	// failNext fails the next call of that name.
	failNext string
}

var _ etcdAuthAPI = (*fakeAuthEtcd)(nil)

func (f *fakeAuthEtcd) call(name string) error {
	f.calls = append(f.calls, name)
	if f.failNext == name {
		f.failNext = ""
		return errors.New("etcdserver: request timed out")
	}
	return nil
}

func (f *fakeAuthEtcd) AuthEnabled(context.Context) (bool, error) {
	return f.enabled, f.call("AuthEnabled")
}

func (f *fakeAuthEtcd) UserRoles(_ context.Context, name string) ([]string, bool, error) {
	if err := f.call("UserRoles"); err != nil {
		return nil, false, err
	}
	roles, ok := f.users[name]
	return roles, ok, nil
}

func (f *fakeAuthEtcd) AddUser(_ context.Context, name string) error {
	if err := f.call("AddUser"); err != nil {
		return err
	}
	if _, ok := f.users[name]; !ok {
		f.users[name] = []string{}
	}
	return nil
}

func (f *fakeAuthEtcd) GrantRoot(_ context.Context, name string) error {
	if err := f.call("GrantRoot"); err != nil {
		return err
	}
	f.users[name] = append(f.users[name], rootRole)
	return nil
}

func (f *fakeAuthEtcd) EnableAuth(context.Context) error {
	if err := f.call("EnableAuth"); err != nil {
		return err
	}
	if !slices.Contains(f.users[pki.RootUser], rootRole) {
		return errors.New("etcdserver: root user does not exist")
	}
	f.enabled = true
	return nil
}

// authHousekeeper is a housekeeper run with --etcd-auth and a member
// certificate of the cluster CA, on a clock the test moves.
func authHousekeeper(t *testing.T, now *time.Time) *housekeeper {
	t.Helper()
	a := testAppliance(t)
	a.cfg.TLS, a.cfg.EtcdAuth = "auto", true
	a.now = func() time.Time { return *now }
	ca, err := pki.NewClusterCA("test CA", time.Now(), 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(a.memberRequest(nil), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a.tls = &memberTLS{current: func() *pki.KeyPair { return kp }}
	return a.housekeeper
}

// TestEtcdAuthTurnedOnOncePerTenure: the first housekeeper turns auth on;
// a later cycle of the same tenure asks nothing, a new tenure two
// requests, and a failure is asked again only after authRetry.
func TestEtcdAuthTurnedOnOncePerTenure(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := authHousekeeper(t, &now)
	f := &fakeAuthEtcd{fakeEtcd: newFakeEtcd(nil), users: map[string][]string{}}
	ctx := t.Context()

	f.failNext = "EnableAuth"
	h.keepEtcdAuth(ctx, f)
	if f.enabled {
		t.Fatal("enabled through a failing call")
	}
	f.calls = nil
	now = now.Add(authRetry / 2)
	h.keepEtcdAuth(ctx, f)
	if len(f.calls) != 0 {
		t.Errorf("asked again %v before authRetry", f.calls)
	}
	now = now.Add(authRetry)
	h.keepEtcdAuth(ctx, f)
	if !f.enabled || !slices.Equal(f.users[pki.RootUser], []string{"root"}) || !slices.Equal(f.users[pki.MemberCommonName], []string{"root"}) {
		t.Fatalf("after the retry: enabled %v, users %v; want on, root and %s with the root role", f.enabled, f.users, pki.MemberCommonName)
	}

	f.calls = nil
	h.keepEtcdAuth(ctx, f)
	if len(f.calls) != 0 {
		t.Errorf("the same tenure asked %v again", f.calls)
	}
	h.reset()
	h.keepEtcdAuth(ctx, f)
	if want := []string{"AuthEnabled", "UserRoles"}; !slices.Equal(f.calls, want) {
		t.Errorf("a new tenure asked %v, want %v", f.calls, want)
	}

	// An operator took the root role from the appliance: said, and looked
	// at again after authRetry, not every cycle.
	f.users[pki.MemberCommonName] = nil
	h.reset()
	f.calls = nil
	h.keepEtcdAuth(ctx, f)
	h.keepEtcdAuth(ctx, f)
	if len(f.calls) != 2 {
		t.Errorf("without the root role, asked %v; want one look per authRetry", f.calls)
	}
	now = now.Add(authRetry)
	h.keepEtcdAuth(ctx, f)
	if len(f.calls) != 4 {
		t.Errorf("without the root role, asked %v; want a look again after authRetry", f.calls)
	}

	// Without --etcd-auth nothing is asked.
	h.cfg.EtcdAuth = false
	h.reset()
	f.calls = nil
	h.keepEtcdAuth(ctx, f)
	if len(f.calls) != 0 {
		t.Errorf("without --etcd-auth asked %v", f.calls)
	}
}
