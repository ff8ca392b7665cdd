package appliance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// etcd's RBAC under --etcd-auth (SPEC §4.8, issue 11): the housekeeper
// turns auth on once the users it needs exist, and the appliances keep
// working as the user their certificate names (pki.MemberCommonName with
// --tls auto), which it grants the root role: membership changes,
// snapshots and moving the leader need it (see pki/etcdauth.go for where
// etcd says so). One user for every member, so that a joiner — which adds
// itself as a learner before it is a member — is already one.
//
// The check costs two requests per tenure of the housekeeper role, and is
// asked again only after a failure: etcd keeps auth on in its data, and
// nothing the appliance does turns it off. Turning --etcd-auth off does
// not turn it off either: `etcdctl auth disable`, as root, does.

// etcdAuthAPI is what turning etcd's auth on asks of etcd.
type etcdAuthAPI interface {
	// AuthEnabled reports whether etcd's auth is on.
	AuthEnabled(ctx context.Context) (bool, error)
	// UserRoles are a user's roles; found is false when etcd has no such
	// user. A user that is not root may read only its own.
	UserRoles(ctx context.Context, name string) (roles []string, found bool, err error)
	// AddUser adds a user without a password: it authenticates by its
	// certificate only. A user that exists already is no error.
	AddUser(ctx context.Context, name string) error
	// GrantRoot grants a user the root role.
	GrantRoot(ctx context.Context, name string) error
	// EnableAuth turns auth on; on already, nothing happens.
	EnableAuth(ctx context.Context) error
}

var _ etcdAuthAPI = (*etcdClient)(nil)

// rootRole is etcd's superuser role, which needs no role record.
const rootRole = "root"

// authInputs are what decideAuth reads: whether auth is on, the
// appliance's own user, and the roles of the users read (a user etcd does
// not have is absent). With auth on only Self is read: it is all a user
// may read of itself, and all that matters then.
type authInputs struct {
	Enabled bool
	Self    string
	Roles   map[string][]string
}

// authStepKind is one change to etcd's auth.
type authStepKind string

const (
	authAddUser   authStepKind = "add-user"
	authGrantRoot authStepKind = "grant-root"
	authEnable    authStepKind = "enable"
)

// authStep is a change and the user it is about ("" for enable).
type authStep struct {
	Kind authStepKind
	User string
}

// authPlan is what to change, in order, or Problem: what keeps the
// appliance from its work that it cannot mend itself.
type authPlan struct {
	Steps   []authStep
	Problem string
}

// decideAuth plans turning auth on: the root user etcd demands, and the
// appliance's own, each with the root role, then enable. With auth on
// there is nothing to do, unless the appliance's user lacks the root role:
// then only an operator acting as root can grant it.
func decideAuth(in authInputs) authPlan {
	if in.Enabled {
		roles, found := in.Roles[in.Self]
		switch {
		case !found:
			return authPlan{Problem: fmt.Sprintf("etcd's auth is on but has no user %q, the common name of this appliance's certificate: "+
				"as root, etcdctl user add %s --no-password && etcdctl user grant-role %s root", in.Self, in.Self, in.Self)}
		case !slices.Contains(roles, rootRole):
			return authPlan{Problem: fmt.Sprintf("etcd's auth is on but user %q, the common name of this appliance's certificate, lacks the root role "+
				"that membership changes and snapshots need: as root, etcdctl user grant-role %s root", in.Self, in.Self)}
		}
		return authPlan{}
	}
	var plan authPlan
	users := []string{pki.RootUser}
	if in.Self != pki.RootUser {
		users = append(users, in.Self)
	}
	for _, u := range users {
		roles, found := in.Roles[u]
		if !found {
			plan.Steps = append(plan.Steps, authStep{authAddUser, u})
		}
		if !slices.Contains(roles, rootRole) {
			plan.Steps = append(plan.Steps, authStep{authGrantRoot, u})
		}
	}
	plan.Steps = append(plan.Steps, authStep{Kind: authEnable})
	return plan
}

// authKeeping is the housekeeper's memory of etcd's auth over one tenure:
// whether it is known to be as wanted, and when a failed look may be
// tried again.
type authKeeping struct {
	done    bool
	retryAt time.Time
}

// authRetry is how soon a failed look at etcd's auth is tried again.
const authRetry = 30 * time.Second

// keepEtcdAuth makes sure, once per tenure of the role, that etcd's auth
// is on with the appliance's user as root (--etcd-auth); after a failure,
// again every authRetry.
func (h *housekeeper) keepEtcdAuth(ctx context.Context, c etcdAPI) {
	if !h.cfg.EtcdAuth || h.auth.done || h.now().Before(h.auth.retryAt) {
		return
	}
	api, ok := c.(etcdAuthAPI)
	if !ok {
		h.log.Debug("etcd auth not checked: the client cannot ask")
		h.auth.done = true
		return
	}
	self := h.etcdUser()
	if self == "" {
		return
	}
	fail := func(msg string, args ...any) {
		h.log.Warn(msg, args...)
		h.auth.retryAt = h.now().Add(authRetry)
	}
	in, err := gatherAuth(ctx, api, self)
	if err != nil {
		fail("etcd auth: looking failed; asking again later", "err", err, "after", authRetry)
		return
	}
	plan := decideAuth(in)
	if plan.Problem != "" {
		h.log.Error("etcd auth: this appliance is not root", "user", self, "fix", plan.Problem)
		h.auth.retryAt = h.now().Add(authRetry)
		return
	}
	for _, s := range plan.Steps {
		var err error
		switch s.Kind {
		case authAddUser:
			err = api.AddUser(ctx, s.User)
		case authGrantRoot:
			err = api.GrantRoot(ctx, s.User)
		case authEnable:
			err = api.EnableAuth(ctx)
		}
		if err != nil {
			fail("etcd auth: a change failed; trying again later", "step", s.Kind, "user", s.User, "err", err, "after", authRetry)
			return
		}
		args := []any{"reason", authStepReason(s, self)}
		if s.User != "" {
			args = append(args, "user", s.User)
		}
		h.log.Info("etcd auth: "+authStepLog[s.Kind], args...)
	}
	if in.Enabled {
		h.log.Debug("etcd auth on, this appliance root", "user", self)
	}
	h.auth.done = true
}

var authStepLog = map[authStepKind]string{
	authAddUser:   "user added, without a password",
	authGrantRoot: "root role granted",
	authEnable:    "auth enabled",
}

func authStepReason(s authStep, self string) string {
	switch {
	case s.Kind == authEnable:
		return "--etcd-auth"
	case s.User == pki.RootUser:
		return "etcd enables auth only with a user root of role root"
	case s.User == self:
		return "the appliance acts as its certificate's common name"
	}
	return ""
}

// gatherAuth reads whether auth is on and the roles of the users
// decideAuth needs.
func gatherAuth(ctx context.Context, api etcdAuthAPI, self string) (authInputs, error) {
	in := authInputs{Self: self, Roles: map[string][]string{}}
	on, err := api.AuthEnabled(ctx)
	if err != nil {
		return in, err
	}
	in.Enabled = on
	users := []string{self}
	if !on && self != pki.RootUser {
		users = append(users, pki.RootUser)
	}
	for _, u := range users {
		roles, found, err := api.UserRoles(ctx, u)
		if err != nil {
			return in, err
		}
		if found {
			in.Roles[u] = roles
		}
	}
	return in, nil
}

// etcdUser is the etcd user the appliance's etcd clients act as: its
// certificate's common name; "" without TLS.
func (n *node) etcdUser() string {
	if n.tls == nil {
		return ""
	}
	return n.tls.current().Cert.Subject.CommonName
}

func (e *etcdClient) AuthEnabled(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := e.c.AuthStatus(ctx)
	if err != nil {
		return false, fmt.Errorf("reading etcd's auth status: %w", err)
	}
	return resp.Enabled, nil
}

func (e *etcdClient) UserRoles(ctx context.Context, name string) ([]string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := e.c.UserGet(ctx, name)
	if errors.Is(err, rpctypes.ErrUserNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading etcd user %q: %w", name, err)
	}
	return resp.Roles, true, nil
}

func (e *etcdClient) AddUser(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	_, err := e.c.UserAddWithOptions(ctx, name, "", &clientv3.UserAddOptions{NoPassword: true})
	if err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("adding etcd user %q: %w", name, err)
	}
	return nil
}

func (e *etcdClient) GrantRoot(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if _, err := e.c.UserGrantRole(ctx, name, rootRole); err != nil {
		return fmt.Errorf("granting etcd user %q the root role: %w", name, err)
	}
	return nil
}

func (e *etcdClient) EnableAuth(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if _, err := e.c.AuthEnable(ctx); err != nil {
		return fmt.Errorf("enabling etcd's auth: %w", err)
	}
	return nil
}
