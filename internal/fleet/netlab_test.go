package fleet

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

func TestNetlabNames(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range []int{0, 1, 0xff, 0x100, 0x1ff} {
		prefix := subnetOfNet(n)
		if prefix[0] != 198 || prefix[1] < 18 || prefix[1] > 19 || netlabNet(prefix) != n {
			t.Errorf("subnet number %d ↔ %v does not round-trip within 198.18.0.0/15", n, prefix)
		}
		names := []string{bridgeName(n)}
		for _, h := range []int{1, 9, 10, 253} {
			names = append(names, hostName(n, h))
		}
		for _, name := range names {
			if len(name) > 15 {
				t.Errorf("%q is longer than IFNAMSIZ-1 (15)", name)
			}
			if seen[name] {
				t.Errorf("%q named twice", name)
			}
			seen[name] = true
			if got, ok := parseNetlabName(name); !ok || got != n {
				t.Errorf("parseNetlabName(%q) = %d, %v; want %d", name, got, ok, n)
			}
		}
	}
	for _, name := range []string{"eth0", "eaf-", "eaf-1f", "eaf-xyz", "eaf-200", "eaf-1ffx", "veaf-001", "eaf-0011"} {
		if n, ok := parseNetlabName(name); ok {
			t.Errorf("parseNetlabName(%q) = %d: want no netlab name", name, n)
		}
	}
}

func TestNftScript(t *testing.T) {
	const reset = "table inet etcd_appliance_fleet\ndelete table inet etcd_appliance_fleet\n"
	for name, tc := range map[string]struct {
		cuts []cut
		want []string // lines of the output after the reset, trimmed
	}{
		"no cut removes the table": {},
		"all ports and some": {
			cuts: []cut{
				{from: "198.18.0.1", to: "198.18.0.2"},
				{from: "198.18.0.1", to: "198.18.0.3", ports: []int{2378, 2380}},
			},
			want: []string{
				"table inet etcd_appliance_fleet {", "chain output {",
				"type filter hook output priority 0; policy accept;",
				"ip daddr 198.18.0.2 drop",
				"ip daddr 198.18.0.3 tcp dport { 2378, 2380 } drop",
				"}", "}",
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			got := nftScript(tc.cuts)
			rest, ok := strings.CutPrefix(got, reset)
			if !ok {
				t.Fatalf("script does not start by resetting the table:\n%s", got)
			}
			var lines []string
			for _, l := range strings.Split(strings.TrimSpace(rest), "\n") {
				if l = strings.TrimSpace(l); l != "" {
					lines = append(lines, l)
				}
			}
			if strings.Join(lines, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("script:\n%s\nwant after the reset:\n%s", got, strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestMergeCut(t *testing.T) {
	ab := func(ports ...int) cut { return cut{from: "a", to: "b", ports: ports} }
	for name, tc := range map[string]struct {
		cuts []cut
		add  cut
		want []int // ports of the a→b cut; nil = all
	}{
		"new":               {add: ab(2380), want: []int{2380}},
		"ports add up":      {cuts: []cut{ab(2380)}, add: ab(2378, 2380), want: []int{2378, 2380}},
		"all absorbs ports": {cuts: []cut{ab(2380)}, add: ab(), want: nil},
		"ports stay in all": {cuts: []cut{ab()}, add: ab(2380), want: nil},
	} {
		t.Run(name, func(t *testing.T) {
			got := mergeCut(append([]cut{{from: "b", to: "a"}}, tc.cuts...), tc.add)
			if len(got) != 2 || got[0].from != "b" {
				t.Fatalf("cuts %+v: want b→a untouched and one a→b", got)
			}
			if !slices.Equal(got[1].ports, tc.want) || (got[1].ports == nil) != (tc.want == nil) {
				t.Fatalf("a→b ports %v, want %v", got[1].ports, tc.want)
			}
		})
	}
}

// TestNetnsProcessHandling runs fake appliances in namespaces: the fleet
// holds the appliance's own pid through `ip netns exec`, its etcd child
// dies with it, restarts wait on the ports inside the namespace, and a
// port cut is one-way at the connection level.
func TestNetnsProcessHandling(t *testing.T) {
	g := newFakeGroupWith(t, Options{Netns: true})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	insts, err := g.LaunchN(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	a, b := insts[0], insts[1]
	if !strings.HasPrefix(a.Address, "198.1") || a.Netns == "" || a.Netns == b.Netns {
		t.Fatalf("instances %s in %q and %s in %q: want two namespaces on 198.18.0.0/15", a, a.Netns, b, b.Netns)
	}
	self, _ := os.Executable()
	if exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(a.PID()), "exe")); err != nil || exe != self {
		t.Fatalf("pid %d of %s runs %q (%v), want the appliance %q: ip must exec in place", a.PID(), a, exe, err, self)
	}
	// The root namespace reaches both; both reach each other.
	if _, err := g.Peer(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	apiOf := func(i *Instance) string { return net.JoinHostPort(i.Address, strconv.Itoa(cluster.DefaultPorts.API)) }
	if err := g.DialFrom(ctx, a.ID, apiOf(b)); err != nil {
		t.Fatal(err)
	}

	// A cut of a port: a cannot connect to b's API, b still connects to a's.
	if err := g.Cut(a.ID, b.ID, cluster.DefaultPorts.API); err != nil {
		t.Fatal(err)
	}
	if err := dialBriefly(ctx, g, a, apiOf(b)); err == nil {
		t.Fatalf("%s reached %s's API across the cut", a, b)
	}
	if err := g.DialFrom(ctx, b.ID, apiOf(a)); err != nil {
		t.Fatalf("the cut %s→%s stopped %s's own connections: %v", a, b, b, err)
	}
	if _, err := g.Peer(ctx, b.ID); err != nil {
		t.Fatalf("the root namespace lost %s to a cut between instances: %v", b, err)
	}
	if err := g.Heal(a.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := g.DialFrom(ctx, a.ID, apiOf(b)); err != nil {
		t.Fatalf("after Heal: %v", err)
	}

	// The port check looks inside the namespace: bound while a runs,
	// free once Kill took a and its etcd (Pdeathsig through ip's exec).
	free := true
	if err := inNetns(a.Netns, func() error { free = portsFree(a.Address); return nil }); err != nil || free {
		t.Fatalf("ports of running %s free: %v (%v)", a, free, err)
	}
	etcdPID, _ := a.EtcdPID()
	if err := g.Kill(a.ID); err != nil {
		t.Fatal(err)
	}
	if pidAlive(etcdPID) {
		t.Fatalf("etcd %d outlived its killed appliance", etcdPID)
	}
	if err := g.Start(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := g.KillEtcd(b.ID); err != nil {
		t.Fatal(err)
	}

	// A new instance on a terminated one's address reuses its namespace.
	if err := g.Terminate(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	c, err := g.LaunchAt(ctx, a.Address)
	if err != nil {
		t.Fatal(err)
	}
	if c.Netns != a.Netns {
		t.Fatalf("%s on %s runs in %q, want %s's %q", c, c.Address, c.Netns, a, a.Netns)
	}
	if err := g.Isolate(c.ID); err != nil {
		t.Fatal(err)
	}
	if err := dialBriefly(ctx, g, b, apiOf(c)); err == nil {
		t.Fatalf("%s reached the isolated %s", b, c)
	}
	if _, err := g.Peer(ctx, c.ID); err != nil {
		t.Fatalf("the root namespace lost the isolated %s: %v", c, err)
	}
	if err := g.HealAll(); err != nil {
		t.Fatal(err)
	}
	if err := g.DialFrom(ctx, b.ID, apiOf(c)); err != nil {
		t.Fatalf("after HealAll: %v", err)
	}
}

// dialBriefly is DialFrom with a deadline short enough for a dropped SYN.
func dialBriefly(ctx context.Context, g *Group, from *Instance, address string) error {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	return g.DialFrom(ctx, from.ID, address)
}

// TestSweepNetlabs leaves the objects of a live netlab (its lock held)
// alone and removes those of a dead one (its lock free).
func TestSweepNetlabs(t *testing.T) {
	if testing.Short() {
		t.Skip("creates network namespaces")
	}
	ip, _, err := checkNetlabTools()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := filepath.Join(os.TempDir(), lockDir)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	// Two subnets: the live one stays locked, the dead one's lock is free.
	live, err := reserveNetlabSubnet(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer live.release()
	dead, err := reserveNetlabSubnet(dir)
	if err != nil {
		t.Fatal(err)
	}
	dead.release()
	var names []string
	for _, n := range []int{netlabNet(live.prefix), netlabNet(dead.prefix)} {
		names = append(names, bridgeName(n), hostName(n, 1))
	}
	t.Cleanup(func() { removeNetlabObjects(context.Background(), ip, names) })
	for k := 0; k < len(names); k += 2 {
		for _, args := range [][]string{{"link", "add", names[k], "type", "bridge"}, {"netns", "add", names[k+1]}} {
			if out, err := exec.CommandContext(ctx, ip, args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %v: %v: %s", args, err, out)
			}
		}
	}

	sweepNetlabs(ctx, ip, dir, slog.New(slog.DiscardHandler))

	nss, _ := netlabNamespaces()
	links, _ := netlabLinks()
	present := append(nss, links...)
	for k, name := range names {
		owner, want := "dead", false
		if k < 2 {
			owner, want = "live", true
		}
		if got := slices.Contains(present, name); got != want {
			t.Errorf("after the sweep, %s of the %s netlab present: %v, want %v", name, owner, got, want)
		}
	}
}
