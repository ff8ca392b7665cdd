package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// TestTLSEtcdAuth runs a group of 3 with --tls auto --etcd-auth: the
// housekeeper turns etcd's auth on with the users root and etcd-appliance
// (the members' certificates' name) as root, without passwords. A
// certificate of a user etcd does not know is refused a write while the
// cluster keeps working; a user that an operator acting as root (a
// `client-cert --name root` certificate) gives a role writes in its prefix
// and nowhere else. A by-hand backup (a snapshot: root only) works, and a
// replacement of the leader's instance joins — adding a learner and
// promoting it are root's — with auth on.
func TestTLSEtcdAuth(t *testing.T) {
	g := newTLSGroup(t, "--etcd-auth", "--store", "file://"+t.TempDir(), "--backup-interval", "1h")
	ctx := testContext(t, 2*time.Minute)
	insts, st := startConverged(t, ctx, g, 3)

	root := userClient(t, ctx, g, "root")
	err := fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		resp, err := root.AuthStatus(rctx)
		if err != nil {
			return false, err.Error()
		}
		return resp.Enabled, "etcd's auth is still off"
	})
	if err != nil {
		t.Fatalf("the housekeeper did not turn auth on: %v\n%s", err, applianceLogTails(g, 20))
	}
	for _, u := range []string{pki.RootUser, pki.MemberCommonName} {
		resp, err := root.UserGet(ctx, u)
		if err != nil {
			t.Fatalf("user %s: %v", u, err)
		}
		if !slices.Contains(resp.Roles, "root") {
			t.Errorf("user %s has roles %v, want root", u, resp.Roles)
		}
	}

	// The fleet's own certificate names a user etcd does not know.
	unknown, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer unknown.Close()
	if err := putOnce(ctx, unknown, "/e2e/unknown", "x"); !refusedByAuth(err) {
		t.Errorf("a write by the unknown user fleet: %v, want user name not found or permission denied", err)
	} else {
		t.Logf("unknown user: refused: %v", err)
	}
	if err := putOnce(ctx, root, "/e2e/root", "x"); err != nil {
		t.Errorf("a write by root: %v", err)
	}

	// An operator adds a user with a role on a prefix, as docs/operations.md
	// says with etcdctl.
	for _, step := range []func(context.Context) error{
		func(ctx context.Context) error { _, err := root.RoleAdd(ctx, "app-rw"); return err },
		func(ctx context.Context) error {
			_, err := root.RoleGrantPermission(ctx, "app-rw", "/app/", clientv3.GetPrefixRangeEnd("/app/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func(ctx context.Context) error {
			_, err := root.UserAddWithOptions(ctx, "app", "", &clientv3.UserAddOptions{NoPassword: true})
			return err
		},
		func(ctx context.Context) error { _, err := root.UserGrantRole(ctx, "app", "app-rw"); return err },
	} {
		if err := step(ctx); err != nil {
			t.Fatalf("setting up the user app as root: %v", err)
		}
	}
	app := userClient(t, ctx, g, "app")
	if err := putOnce(ctx, app, "/app/k", "v"); err != nil {
		t.Errorf("app writing in /app/: %v", err)
	}
	for _, key := range []string{"/other/k", "/etcd-appliance/locks/x"} {
		if err := putOnce(ctx, app, key, "v"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Errorf("app writing %s: %v, want permission denied", key, err)
		}
	}

	// A snapshot takes the root role.
	if out, errOut, code, err := g.Command(ctx, insts[1].ID, "backup"); err != nil || code != 0 {
		t.Fatalf("backup with auth on: exit %d, err %v\n%s%s", code, err, out, errOut)
	}

	// A replacement adds itself as a learner and is promoted: root's.
	victim := g.Instance(leaderOf(t, st).Name)
	if err := g.Terminate(ctx, victim.ID); err != nil {
		t.Fatal(err)
	}
	repl, err := g.Launch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := waitConverged(t, ctx, g, 3)
	if after.ClusterID != st.ClusterID {
		t.Fatalf("cluster id changed from %s to %s: a new cluster formed", st.ClusterID, after.ClusterID)
	}
	memberByName(t, after, repl.ID)
	app2 := userClient(t, ctx, g, "app")
	if err := putOnce(ctx, app2, "/app/after", "v"); err != nil {
		t.Errorf("app writing after the replacement: %v", err)
	}
	if err := putOnce(ctx, app2, "/other/after", "v"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("app writing outside its prefix after the replacement: %v, want permission denied", err)
	}

	// No appliance was ever refused by etcd's auth, and one turned it on.
	enabled := 0
	for _, inst := range g.Instances() {
		raw, err := os.ReadFile(inst.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(raw), "\n") {
			if etcdsOwnLine(l) {
				continue
			}
			if strings.Contains(l, "auth enabled") {
				enabled++
			}
			for _, refusal := range []string{rpctypes.ErrPermissionDenied.Error(), rpctypes.ErrUserNotFound.Error(), rpctypes.ErrUserEmpty.Error()} {
				if strings.Contains(l, refusal) {
					t.Errorf("%s was refused by etcd's auth: %s", inst.ID, l)
				}
			}
		}
	}
	if enabled != 1 {
		t.Errorf("%d appliances logged turning auth on, want 1", enabled)
	}
}

// userClient is an etcd client of the group's running instances with a
// certificate `client-cert --name name` issued, as an operator gets one.
func userClient(t *testing.T, ctx context.Context, g *fleet.Group, name string) *clientv3.Client {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.CommandContext(ctx, binary, "client-cert", "--name", name, "--out", dir, "--tls-ca-dir", g.CADir()).CombinedOutput(); err != nil {
		t.Fatalf("client-cert --name %s: %v\n%s", name, err, out)
	}
	cfg, err := (transport.TLSInfo{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"),
		TrustedCAFile: filepath.Join(dir, "ca.pem")}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	running, err := g.RunningInGroup()
	if err != nil {
		t.Fatal(err)
	}
	var endpoints []string
	for _, inst := range running {
		endpoints = append(endpoints, inst.ClientURL())
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: cfg, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// putOnce writes key once, with a deadline.
func putOnce(ctx context.Context, c *clientv3.Client, key, value string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.Put(ctx, key, value)
	return err
}

// refusedByAuth reports whether err is etcd refusing the request's user.
func refusedByAuth(err error) bool {
	return errors.Is(err, rpctypes.ErrUserNotFound) || errors.Is(err, rpctypes.ErrPermissionDenied)
}
