package fleet

// The netlab: a local group in network namespaces (Options.Netns), so that
// tests can cut the network between instances.
//
// Layout. The group reserves a /24 of 198.18.0.0/15 (RFC 2544's range for
// test networks) with the same flock scheme as the loopback /24s, so
// parallel test binaries never collide. In the root namespace a Linux
// bridge holds the subnet's .254; every instance gets a namespace with lo
// up and a veth pair: eth0 inside, with the instance's address /24 and a
// default route via .254, and the other end enslaved to the bridge. The
// appliance runs as `ip netns exec <ns> <binary> <args>`; ip execs in
// place, so the pid the fleet holds is the appliance's (signals, Freeze,
// Pdeathsig and EtcdPID work as in loopback mode). The test process stays
// in the root namespace and reaches every instance through the bridge.
// Names derive from the subnet: its number n in 198.18.0.0/15 (0..511) as
// three hex digits gives the bridge "eaf-<n>" and, for host h, the
// namespace and the bridge end of its veth "eaf-<n>-<h>", all within
// IFNAMSIZ.
//
// Faults. A cut drops, in the sender's namespace, the packets it sends to
// the receiver's address (an nftables table "etcd_appliance_fleet" in
// each sender's namespace, rewritten whole at each change), optionally
// only those to some TCP ports. Cuts are between instances only: the root
// namespace, where the test's clients, status reads and metrics scrapes
// come from, always reaches every instance, as etcd's robustness tests
// keep the client path to an isolated member. "Asymmetric" is meant at
// the packet level: Cut(a, b) drops a's packets to b and lets b's packets
// to a through. Without ports that breaks TCP both ways, for connections
// opened by either side (b's connections to a lose a's replies); with
// ports it drops only what a sends to those ports of b, so a cannot
// connect to them while b's connections to a (whose replies go to b's
// ephemeral ports) keep working: one-way at the connection level. Cuts
// follow addresses, as a network does: an instance launched on a cut
// address (LaunchAt) is cut too, and Isolate covers the instances that
// exist when it is called.
//
// Cleanup. Close removes every namespace, link and rule the group created,
// after its processes are gone, then releases the subnet's lock. A group
// that died without Close (SIGKILL of the test binary) leaves them behind
// with its lock released; New sweeps such leftovers: it removes the
// objects of every "eaf-" subnet whose lock it can take.
//
// Needs root, ip (iproute2) and nft (nftables): scripts/netlab-deps.sh
// installs them, and New fails, naming what is missing, without them.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrNotNetns is returned by the fault calls of a group that runs without
// network namespaces.
var ErrNotNetns = errors.New("the group runs on loopback, not in network namespaces (Options.Netns)")

const (
	// netlabPrefix starts the name of every namespace and link of a netlab.
	netlabPrefix = "eaf-"
	// bridgeHost is the bridge's host number in the subnet; instances get
	// the others.
	bridgeHost = 254
	// nftTable is the fleet's table in each sender's namespace.
	nftTable = "etcd_appliance_fleet"
	// netnsDir is where `ip netns add` mounts the namespaces.
	netnsDir = "/var/run/netns"
)

// netlabNet is the number of the subnet 198.18.0.0/15 + n*256 in the names
// of its objects; subnetOfNet is its inverse.
func netlabNet(prefix [3]byte) int { return int(prefix[1]-18)<<8 | int(prefix[2]) }

func subnetOfNet(n int) [3]byte { return [3]byte{198, byte(18 + n>>8), byte(n)} }

// bridgeName and hostName name the objects of subnet number n: the bridge,
// and the namespace and bridge-side veth of host h.
func bridgeName(n int) string  { return fmt.Sprintf("%s%03x", netlabPrefix, n) }
func hostName(n, h int) string { return fmt.Sprintf("%s%03x-%d", netlabPrefix, n, h) }

// parseNetlabName returns the subnet number of a netlab object's name.
func parseNetlabName(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, netlabPrefix)
	if !ok || len(rest) < 3 || (len(rest) > 3 && rest[3] != '-') {
		return 0, false
	}
	n, err := strconv.ParseUint(rest[:3], 16, 16)
	if err != nil || n > 511 {
		return 0, false
	}
	return int(n), true
}

// cut is one direction of traffic dropped: the packets that the namespace
// of the instance at address from sends to address to, only those to ports
// (sorted) when there are any.
type cut struct {
	from, to string
	ports    []int
}

// mergeCut adds c to cuts: a cut of all ports absorbs any other on the same
// direction, port sets add up.
func mergeCut(cuts []cut, c cut) []cut {
	for k, old := range cuts {
		if old.from != c.from || old.to != c.to {
			continue
		}
		if len(old.ports) == 0 || len(c.ports) == 0 {
			cuts[k].ports = nil
		} else {
			cuts[k].ports = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(old.ports), c.ports...))))
		}
		return cuts
	}
	return append(cuts, c)
}

// nftScript is the nft input that makes a namespace drop what cuts say:
// the fleet's table replaced whole (created first so that deleting it
// cannot fail), or only deleted when there is no cut.
func nftScript(cuts []cut) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n", nftTable, nftTable)
	if len(cuts) == 0 {
		return b.String()
	}
	fmt.Fprintf(&b, "table inet %s {\n\tchain output {\n\t\ttype filter hook output priority 0; policy accept;\n", nftTable)
	for _, c := range cuts {
		if len(c.ports) == 0 {
			fmt.Fprintf(&b, "\t\tip daddr %s drop\n", c.to)
			continue
		}
		ports := make([]string, len(c.ports))
		for k, p := range c.ports {
			ports[k] = strconv.Itoa(p)
		}
		fmt.Fprintf(&b, "\t\tip daddr %s tcp dport { %s } drop\n", c.to, strings.Join(ports, ", "))
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// netlab is the network of a group in netns mode: the bridge, a namespace
// per host, the cuts.
type netlab struct {
	ip, nft string // the tools' paths
	net     *subnet
	n       int // the subnet's number in the names
	log     *slog.Logger

	mu    sync.Mutex
	hosts []int // hosts whose namespace exists, in creation order
	cuts  []cut
}

// checkNetlabTools reports what keeps this machine from running a netlab.
func checkNetlabTools() (ip, nft string, err error) {
	if os.Geteuid() != 0 {
		return "", "", errors.New("network namespaces need root (Options.Netns)")
	}
	if ip, err = exec.LookPath("ip"); err != nil {
		return "", "", errors.New("network namespaces need ip (Debian package iproute2; scripts/netlab-deps.sh installs it)")
	}
	if nft, err = exec.LookPath("nft"); err != nil {
		return "", "", errors.New("network namespaces need nft (Debian package nftables; scripts/netlab-deps.sh installs it)")
	}
	return ip, nft, nil
}

// newNetlab sweeps the leftovers of dead netlabs, reserves a free /24 of
// 198.18.0.0/15 and creates its bridge.
func newNetlab(ctx context.Context, log *slog.Logger) (*netlab, error) {
	ip, nft, err := checkNetlabTools()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(os.TempDir(), lockDir)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("reserving a netlab subnet: %w", err)
	}
	sweepNetlabs(ctx, ip, dir, log)
	sn, err := reserveNetlabSubnet(dir)
	if err != nil {
		return nil, err
	}
	nl := &netlab{ip: ip, nft: nft, net: sn, n: netlabNet(sn.prefix), log: log}
	br := bridgeName(nl.n)
	err = nl.run(ctx,
		[]string{"link", "add", br, "type", "bridge"},
		[]string{"addr", "add", nl.net.address(bridgeHost) + "/24", "dev", br},
		[]string{"link", "set", br, "up"},
	)
	if err != nil {
		nl.close(ctx)
		return nil, fmt.Errorf("creating the bridge of %s: %w", sn, err)
	}
	log.Info("netlab created", "subnet", sn.String(), "bridge", br)
	return nl, nil
}

// reserveNetlabSubnet locks a random /24 of 198.18.0.0/15 that no address
// of the root namespace lies in.
func reserveNetlabSubnet(dir string) (*subnet, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing the addresses of this machine: %w", err)
	}
	lastErr := errors.New("every /24 of 198.18.0.0/15 is taken")
	for _, n := range rand.Perm(512)[:64] {
		s, err := lockSubnet(dir, subnetOfNet(n))
		if err != nil {
			lastErr = err
			continue
		}
		inUse := slices.ContainsFunc(addrs, func(a net.Addr) bool {
			ipn, ok := a.(*net.IPNet)
			return ok && s.contains(ipn.IP)
		})
		if inUse {
			s.release()
			lastErr = fmt.Errorf("an address of this machine lies in %s", s)
			continue
		}
		return s, nil
	}
	return nil, fmt.Errorf("no free /24 in 198.18.0.0/15: %w", lastErr)
}

// sweepNetlabs removes, best effort, the namespaces and links of netlabs
// whose group died without Close: those whose subnet lock is free.
func sweepNetlabs(ctx context.Context, ip, dir string, log *slog.Logger) {
	objects := map[int][]string{} // subnet number → namespaces and links
	nss, _ := netlabNamespaces()
	links, _ := netlabLinks()
	for _, name := range append(nss, links...) {
		if n, ok := parseNetlabName(name); ok {
			objects[n] = append(objects[n], name)
		}
	}
	for n, names := range objects {
		s, err := lockSubnet(dir, subnetOfNet(n))
		if err != nil {
			log.Debug("netlab in use, not swept", "subnet", n, "objects", names)
			continue
		}
		removeNetlabObjects(ctx, ip, names)
		s.release()
		log.Info("leftovers of a dead netlab removed", "subnet", s.String(), "objects", names)
	}
}

// netlabNamespaces lists the netlab namespaces of this machine.
func netlabNamespaces() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), netlabPrefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// netlabLinks lists the netlab links of the root namespace.
func netlabLinks() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, netlabPrefix) {
			out = append(out, i.Name)
		}
	}
	return out, nil
}

// removeNetlabObjects deletes namespaces and links by name, ignoring what
// is already gone. Deleting a veth's bridge end deletes its pair, and a
// namespace's rules go with it.
func removeNetlabObjects(ctx context.Context, ip string, names []string) error {
	var errs []error
	links, _ := netlabLinks()
	nss, _ := netlabNamespaces()
	for _, name := range names {
		if slices.Contains(links, name) {
			if out, err := exec.CommandContext(ctx, ip, "link", "del", name).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip link del %s: %v: %s", name, err, strings.TrimSpace(string(out))))
			}
		}
		if slices.Contains(nss, name) {
			if out, err := exec.CommandContext(ctx, ip, "netns", "del", name).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out))))
			}
		}
	}
	return errors.Join(errs...)
}

// run runs ip commands in order, stopping at the first failure.
func (nl *netlab) run(ctx context.Context, cmds ...[]string) error {
	for _, args := range cmds {
		if out, err := exec.CommandContext(ctx, nl.ip, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// host returns the host number of an address of the subnet.
func (nl *netlab) host(address string) (int, error) {
	ip := net.ParseIP(address)
	if ip == nil || !nl.net.contains(ip) {
		return 0, fmt.Errorf("%q is not an address of the netlab %s", address, nl.net)
	}
	h := int(ip.To4()[3])
	if h == 0 || h >= bridgeHost {
		return 0, fmt.Errorf("%s is the network, the bridge or the broadcast address of %s", address, nl.net)
	}
	return h, nil
}

// namespace returns the namespace of address, creating it and its veth
// pair on first use.
func (nl *netlab) namespace(ctx context.Context, address string) (string, error) {
	h, err := nl.host(address)
	if err != nil {
		return "", err
	}
	ns := hostName(nl.n, h)
	nl.mu.Lock()
	defer nl.mu.Unlock()
	if slices.Contains(nl.hosts, h) {
		return ns, nil
	}
	// Recorded before creating, so that close removes a half-made host.
	nl.hosts = append(nl.hosts, h)
	err = nl.run(ctx,
		[]string{"netns", "add", ns},
		[]string{"-n", ns, "link", "set", "lo", "up"},
		[]string{"link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns},
		[]string{"link", "set", ns, "master", bridgeName(nl.n), "up"},
		[]string{"-n", ns, "addr", "add", address + "/24", "dev", "eth0"},
		[]string{"-n", ns, "link", "set", "eth0", "up"},
		[]string{"-n", ns, "route", "add", "default", "via", nl.net.address(bridgeHost)},
	)
	if err != nil {
		return "", fmt.Errorf("creating the namespace of %s: %w", address, err)
	}
	nl.log.Info("namespace created", "netns", ns, "address", address)
	return ns, nil
}

// apply changes the cuts with edit and rewrites the rules of every sender
// whose cuts changed.
func (nl *netlab) apply(ctx context.Context, edit func([]cut) []cut) error {
	nl.mu.Lock()
	defer nl.mu.Unlock()
	before := slices.Clone(nl.cuts)
	nl.cuts = edit(slices.Clone(nl.cuts))
	senders := map[string]bool{}
	for _, c := range append(before, nl.cuts...) {
		senders[c.from] = true
	}
	var errs []error
	for _, from := range slices.Sorted(maps.Keys(senders)) {
		var mine, old []cut
		for _, c := range nl.cuts {
			if c.from == from {
				mine = append(mine, c)
			}
		}
		for _, c := range before {
			if c.from == from {
				old = append(old, c)
			}
		}
		script := nftScript(mine)
		if script == nftScript(old) {
			continue
		}
		h, err := nl.host(from)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cmd := exec.CommandContext(ctx, nl.ip, "netns", "exec", hostName(nl.n, h), nl.nft, "-f", "-")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("nft in the namespace of %s: %v: %s\ninput:\n%s", from, err, strings.TrimSpace(string(out)), script))
		}
	}
	return errors.Join(errs...)
}

// objects lists the names of everything the netlab created.
func (nl *netlab) objects() []string {
	nl.mu.Lock()
	defer nl.mu.Unlock()
	var names []string
	for _, h := range nl.hosts {
		names = append(names, hostName(nl.n, h))
	}
	return append(names, bridgeName(nl.n))
}

// leftovers lists the namespaces and links of this netlab that exist.
func (nl *netlab) leftovers() []string {
	nss, _ := netlabNamespaces()
	links, _ := netlabLinks()
	var out []string
	for _, name := range append(nss, links...) {
		if n, ok := parseNetlabName(name); ok && n == nl.n {
			out = append(out, name)
		}
	}
	return out
}

// close removes every namespace and link of the netlab, checks that none
// is left, and releases the subnet. Callers stop the processes first.
func (nl *netlab) close(ctx context.Context) error {
	err := removeNetlabObjects(ctx, nl.ip, nl.objects())
	if left := nl.leftovers(); len(left) > 0 {
		err = errors.Join(err, fmt.Errorf("netlab %s: left behind %s", nl.net, strings.Join(left, ", ")))
	}
	nl.net.release()
	return err
}

// inNetns runs f on an OS thread that has joined the network namespace ns,
// so that the sockets f opens live there. The thread then goes back to its
// own namespace and is unlocked, never destroyed: it may be the thread that
// forked an appliance, and a thread's end sends that child its Pdeathsig.
// Only when the way back fails is the thread left locked, to end with its
// goroutine rather than serve others in ns.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening this thread's namespace: %w", err)
			return
		}
		defer own.Close()
		target, err := os.Open(filepath.Join(netnsDir, ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening the namespace %s: %w", ns, err)
			return
		}
		err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET)
		target.Close()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("joining the namespace %s: %w", ns, err)
			return
		}
		err = f()
		if backErr := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); backErr != nil {
			errc <- errors.Join(err, fmt.Errorf("leaving the namespace %s: %w", ns, backErr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// CutBoth cuts a→b and b→a.
func (g *Group) CutBoth(a, b string, ports ...int) error {
	if err := g.Cut(a, b, ports...); err != nil {
		return err
	}
	return g.Cut(b, a, ports...)
}

// Isolate cuts, both ways, instance id from every other address of the
// group's instances, to the given ports only or entirely. The root
// namespace keeps reaching it: the test still reads its status, metrics
// and etcd client port, as etcd's robustness tests keep the client path to
// an isolated member. Instances launched later on new addresses are not
// cut from it.
func (g *Group) Isolate(id string, ports ...int) error {
	inst, err := g.lookup(id)
	if err != nil {
		return err
	}
	var cuts []cut
	seen := map[string]bool{inst.Address: true}
	for _, o := range g.Instances() {
		if seen[o.Address] {
			continue
		}
		seen[o.Address] = true
		cuts = append(cuts,
			cut{from: inst.Address, to: o.Address, ports: ports},
			cut{from: o.Address, to: inst.Address, ports: ports})
	}
	return g.addCuts("isolating "+inst.String(), cuts)
}

// Cut drops the packets that instance from sends to instance to: to the
// given TCP ports of to only, or all of them when none is given. It adds
// to the cuts in place; Heal and HealAll undo them. A cut of all ports
// breaks every TCP connection between the two, whichever side opened it;
// a cut of some ports only keeps from from connecting to them (see the
// top of netlab.go).
func (g *Group) Cut(from, to string, ports ...int) error {
	src, err := g.lookup(from)
	if err != nil {
		return err
	}
	dst, err := g.lookup(to)
	if err != nil {
		return err
	}
	if dst.Address == src.Address {
		return fmt.Errorf("fleet: cutting %s from itself", src)
	}
	return g.addCuts(fmt.Sprintf("cutting %s→%s", src, dst), []cut{{from: src.Address, to: dst.Address, ports: ports}})
}

// addCuts merges cuts into the netlab's; what names the action in errors.
func (g *Group) addCuts(what string, cuts []cut) error {
	if g.lab == nil {
		return fmt.Errorf("fleet: %s: %w", what, ErrNotNetns)
	}
	for k, c := range cuts {
		for _, p := range c.ports {
			if p < 1 || p > 65535 {
				return fmt.Errorf("fleet: %s: port %d out of range", what, p)
			}
		}
		cuts[k].ports = slices.Compact(slices.Sorted(slices.Values(c.ports)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	err := g.lab.apply(ctx, func(all []cut) []cut {
		for _, c := range cuts {
			all = mergeCut(all, c)
		}
		return all
	})
	if err != nil {
		return fmt.Errorf("fleet: %s: %w", what, err)
	}
	g.log.Info("network cut", "action", what, "cuts", len(cuts))
	return nil
}

// Heal removes every cut from instance from to instance to (one direction).
func (g *Group) Heal(from, to string) error {
	if g.lab == nil {
		return fmt.Errorf("fleet: healing %s→%s: %w", from, to, ErrNotNetns)
	}
	src, err := g.lookup(from)
	if err != nil {
		return err
	}
	dst, err := g.lookup(to)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	err = g.lab.apply(ctx, func(all []cut) []cut {
		return slices.DeleteFunc(all, func(c cut) bool { return c.from == src.Address && c.to == dst.Address })
	})
	if err != nil {
		return fmt.Errorf("fleet: healing %s→%s: %w", src, dst, err)
	}
	g.log.Info("network healed", "from", from, "to", to)
	return nil
}

// HealAll removes every cut of the group.
func (g *Group) HealAll() error {
	if g.lab == nil {
		return fmt.Errorf("fleet: healing: %w", ErrNotNetns)
	}
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	if err := g.lab.apply(ctx, func([]cut) []cut { return nil }); err != nil {
		return fmt.Errorf("fleet: healing: %w", err)
	}
	g.log.Info("network healed entirely")
	return nil
}

// DialFrom opens a TCP connection to address (host:port) from where
// instance from runs (its namespace, or its loopback address) and closes
// it: nil when the network and a listener let it through before ctx ends.
func (g *Group) DialFrom(ctx context.Context, from, address string) error {
	inst, err := g.lookup(from)
	if err != nil {
		return err
	}
	dial := func() error {
		d := net.Dialer{}
		if inst.Netns == "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(inst.Address)}
		}
		c, err := d.DialContext(ctx, "tcp", address)
		if err != nil {
			return err
		}
		return c.Close()
	}
	if inst.Netns != "" {
		err = inNetns(inst.Netns, dial)
	} else {
		err = dial()
	}
	if err != nil {
		return fmt.Errorf("fleet: dialing %s from %s: %w", address, inst, err)
	}
	return nil
}
