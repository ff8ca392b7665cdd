// Package fleet runs groups of real etcd-appliance processes on loopback
// addresses: what `etcd-appliance demo` shows a newcomer, and what the
// end-to-end tests and the benchmarks drive. It is product code, linked
// into the binary; the test-only parts (the fault proxy, building the
// binary, helpers taking a testing.TB) are internal/testcluster's.
//
// A local Group owns a random /24 of 127.0.0.0/8 (Linux routes all of it to
// lo) and gives every instance its own address, so that all instances bind
// the product's fixed ports (2378 API, 2379 client, 2380 peer, 2381
// metrics) side by side. The fleet plays the cloud: Launch adds an instance
// to the group file and starts its appliance; Terminate marks it terminated
// and kills it; Kill, KillEtcd, Stop, Start and WipeData are the faults and
// operations an operator (or a scenario) needs.
//
// With Options.Netns, a local group runs each instance in its own network
// namespace instead, on a private /24 behind a bridge, so that tests can
// cut the network between instances (Cut, Isolate, Heal); netlab.go tells
// how it works and cleans up.
//
// An AWSGroup is an Auto Scaling group in moto, the AWS emulator: the fleet
// serves an IMDSv2 per instance (moto has none) and runs a real appliance
// with --provider aws on the loopback address moto gave it. AWSMulti is the
// same over several regions. Everything that waits polls a condition under
// a context deadline; nothing sleeps to synchronize.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider/local"
)

// Bounds of the fleet's own waits when the caller's context allows more.
const (
	healthyTimeout = 30 * time.Second
	killTimeout    = 10 * time.Second
	closeGrace     = 2 * time.Second
	pollInterval   = 50 * time.Millisecond
)

// ErrNotRunning is returned for operations that need a running appliance
// (or a running etcd) on an instance that has none.
var ErrNotRunning = errors.New("not running")

// Options configures a Group.
type Options struct {
	// Binary is the etcd-appliance binary to run.
	Binary string
	// Dir receives the group file, a data dir per instance (Dir/<id>) and a
	// log per instance (Dir/<id>.log).
	Dir string
	// Name is the group's name, which also names the cluster; default a
	// random tc-xxxxxx.
	Name string
	// Args are extra flags of `etcd-appliance run`. They come after the
	// fleet's own flags, so they win over them (--log-format, ...).
	Args []string
	// Logger receives the fleet's actions; nil discards them.
	Logger *slog.Logger
	// Netns runs every instance in its own network namespace on a /24 of
	// 198.18.0.0/15 behind a bridge, instead of on a loopback address,
	// so that the network between instances can be cut (see netlab.go).
	// It needs root, ip and nft; New fails without them.
	Netns bool
	// TLS runs the appliances with --tls auto, the cluster CA in Dir/ca
	// (created by the first appliance to start), and has the fleet's own
	// clients (status, Client) speak mutual TLS with a user certificate of
	// that CA (a member certificate for /v1/peer, which admits only
	// members).
	TLS bool
}

// Instance is one instance of the group: an entry of the group file, a data
// dir and, while it runs, an appliance process.
type Instance struct {
	ID      string
	Address string
	// DataDir is the appliance's --data-dir; etcd's data is DataDir/etcd.
	DataDir string
	LogPath string
	// Netns is the network namespace the appliance runs in, empty in
	// loopback mode.
	Netns string
	// args are this instance's own flags of `etcd-appliance run`, after
	// the group's Options.Args (LaunchNWith).
	args []string
	// plain is set when its own flags say --tls off in a group run with
	// TLS: the fleet speaks plaintext to it (a misconfigured instance).
	plain atomic.Bool

	g    *Group
	proc *process // guarded by g.mu; nil before the first start
}

// ClientURL is the instance's etcd client URL.
func (i *Instance) ClientURL() string {
	return cluster.DefaultPorts.ClientURL(i.scheme(), i.Address)
}

// PeerURL is the instance's etcd peer URL.
func (i *Instance) PeerURL() string {
	return cluster.DefaultPorts.PeerURL(i.scheme(), i.Address)
}

// APIURL is the base URL of the instance's appliance API.
func (i *Instance) APIURL() string {
	return i.scheme() + "://" + net.JoinHostPort(i.Address, fmt.Sprint(cluster.DefaultPorts.API))
}

// scheme is https when the instance's group runs with TLS.
func (i *Instance) scheme() string {
	if i.g == nil || i.plain.Load() {
		return "http"
	}
	return i.g.scheme()
}

// Running reports whether the instance's appliance process is alive.
func (i *Instance) Running() bool {
	i.g.mu.Lock()
	defer i.g.mu.Unlock()
	return i.proc != nil && !i.proc.exited()
}

// PID is the appliance's pid, 0 when it does not run.
func (i *Instance) PID() int {
	i.g.mu.Lock()
	defer i.g.mu.Unlock()
	if i.proc == nil || i.proc.exited() {
		return 0
	}
	return i.proc.pid()
}

// EtcdPID is the pid of the instance's etcd child from DataDir/etcd.pid, 0
// when no such process is alive.
func (i *Instance) EtcdPID() (int, error) {
	pid, err := readPIDFile(filepath.Join(i.DataDir, "etcd.pid"))
	if err != nil || pid == 0 {
		return 0, err
	}
	if !pidAlive(pid) || !cmdlineContains(pid, i.DataDir, i.ID) {
		return 0, nil
	}
	return pid, nil
}

func (i *Instance) String() string { return i.ID + "@" + i.Address }

// Group is a local group of appliance instances.
type Group struct {
	opts Options
	file string
	log  *slog.Logger
	net  *subnet
	lab  *netlab // nil in loopback mode
	tls  *fleetTLS

	mu        sync.Mutex
	instances []*Instance // in launch order
	nextHost  int
	closed    bool
	closeOnce sync.Once
	closeErr  error
}

// New creates an empty group: a group file in opts.Dir and a reserved
// loopback /24, or with opts.Netns a netlab /24 and its bridge. Close
// releases it.
func New(opts Options) (*Group, error) {
	if opts.Binary == "" {
		return nil, errors.New("fleet: Options.Binary is required")
	}
	if fi, err := os.Stat(opts.Binary); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("fleet: binary %q is not a file", opts.Binary)
	}
	if opts.Dir == "" {
		return nil, errors.New("fleet: Options.Dir is required")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if opts.Name == "" {
		opts.Name = fmt.Sprintf("tc-%06x", rand.Uint32()&0xffffff)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Group{
		opts:     opts,
		file:     filepath.Join(opts.Dir, "group.json"),
		nextHost: 1,
		tls:      newFleetTLS(opts.TLS, opts.Dir),
	}
	g.log = opts.Logger.With("component", "fleet", "group", opts.Name)
	if opts.Netns {
		ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		defer cancel()
		lab, err := newNetlab(ctx, g.log)
		if err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
		g.lab, g.net = lab, lab.net
	} else {
		sn, err := reserveSubnet()
		if err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
		g.net = sn
	}
	if err := local.Write(g.file, local.File{Name: opts.Name, Instances: []cluster.Instance{}}); err != nil {
		g.releaseNet()
		return nil, fmt.Errorf("fleet: %w", err)
	}
	g.log.Info("group created", "file", g.file, "subnet", g.net.String(), "netns", opts.Netns)
	return g, nil
}

// Name is the group's name.
func (g *Group) Name() string { return g.opts.Name }

// GroupFile is the path of the group file the appliances read.
func (g *Group) GroupFile() string { return g.file }

// Dir is the group's directory.
func (g *Group) Dir() string { return g.opts.Dir }

// Subnet is the /24 the group's addresses come from.
func (g *Group) Subnet() string { return g.net.String() }

// Instance returns the instance id, nil if the group never had it.
func (g *Group) Instance(id string) *Instance {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lookupLocked(id)
}

func (g *Group) lookupLocked(id string) *Instance {
	for _, inst := range g.instances {
		if inst.ID == id {
			return inst
		}
	}
	return nil
}

func (g *Group) lookup(id string) (*Instance, error) {
	if inst := g.Instance(id); inst != nil {
		return inst, nil
	}
	return nil, fmt.Errorf("fleet: no instance %q in group %s", id, g.opts.Name)
}

// Instances returns every instance the group ever had, in launch order.
func (g *Group) Instances() []*Instance {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.instances)
}

// Running returns the instances whose appliance process is alive, by id.
func (g *Group) Running() []*Instance {
	var out []*Instance
	for _, inst := range g.Instances() {
		if inst.Running() {
			out = append(out, inst)
		}
	}
	slices.SortFunc(out, func(a, b *Instance) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// RunningInGroup returns the running instances whose group file state
// counts them in the group (pending or running): the instances a converged
// cluster consists of.
func (g *Group) RunningInGroup() ([]*Instance, error) {
	f, err := local.Read(g.file)
	if err != nil {
		return nil, err
	}
	in := map[string]bool{}
	for _, e := range f.Instances {
		if e.State.InGroup() {
			in[e.ID] = true
		}
	}
	var out []*Instance
	for _, inst := range g.Running() {
		if in[inst.ID] {
			out = append(out, inst)
		}
	}
	return out, nil
}

// File returns the group file's content.
func (g *Group) File() (local.File, error) { return local.Read(g.file) }

// Add registers n new instances in the group file, state running, in one
// write, without starting their appliances (see Start). Each gets a fresh
// id and the next free address of the group's subnet.
func (g *Group) Add(n int) ([]*Instance, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, errors.New("fleet: group is closed")
	}
	var added []*Instance
	for range n {
		addr, err := g.nextAddressLocked()
		if err != nil {
			return nil, err
		}
		inst, err := g.newInstanceLocked(addr)
		if err != nil {
			return nil, err
		}
		added = append(added, inst)
	}
	if err := g.registerLocked(added); err != nil {
		return nil, err
	}
	return added, nil
}

// Launch adds one instance to the group and starts its appliance; it
// returns once the appliance answers /healthz.
func (g *Group) Launch(ctx context.Context) (*Instance, error) {
	insts, err := g.LaunchN(ctx, 1)
	if err != nil {
		return nil, err
	}
	return insts[0], nil
}

// LaunchN adds n instances to the group file in one write and starts all
// their appliances at once, as an autoscaling group does.
func (g *Group) LaunchN(ctx context.Context, n int) ([]*Instance, error) {
	return g.LaunchNWith(ctx, n)
}

// LaunchNWith is LaunchN with flags of these instances' own after the
// group's Options.Args, as a launch template changed between launches
// (another --etcd-binary: a rolling upgrade).
func (g *Group) LaunchNWith(ctx context.Context, n int, args ...string) ([]*Instance, error) {
	insts, err := g.Add(n)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	for _, inst := range insts {
		inst.args = slices.Clone(args)
		inst.plain.Store(tlsOff(args))
	}
	g.mu.Unlock()
	if err := g.Start(ctx, ids(insts)...); err != nil {
		return insts, err
	}
	return insts, nil
}

// SetArgs replaces the flags of the instance's own (after the group's
// Options.Args) that its appliance starts with next: configuration
// management changing an instance's service, e.g. its --etcd-binary.
func (g *Group) SetArgs(id string, args ...string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	inst := g.lookupLocked(id)
	if inst == nil {
		return fmt.Errorf("fleet: no instance %s", id)
	}
	inst.args = slices.Clone(args)
	inst.plain.Store(tlsOff(args))
	return nil
}

// tlsOff reports whether flags end up with --tls off.
func tlsOff(flags []string) bool {
	off := false
	for k, f := range flags {
		switch {
		case f == "--tls" && k+1 < len(flags):
			off = flags[k+1] == "off"
		case strings.HasPrefix(f, "--tls="):
			off = f == "--tls=off"
		}
	}
	return off
}

// LaunchAt launches a new instance (new id) on a given address, typically
// the address of a terminated instance, as a cloud reuses private IPs. It
// waits for the address's ports to be free first.
func (g *Group) LaunchAt(ctx context.Context, address string) (*Instance, error) {
	if net.ParseIP(address) == nil {
		return nil, fmt.Errorf("fleet: %q is not an IP address", address)
	}
	if err := g.waitPortsFree(ctx, address); err != nil {
		return nil, err
	}
	g.mu.Lock()
	inst, err := g.newInstanceLocked(address)
	if err == nil {
		err = g.registerLocked([]*Instance{inst})
	}
	g.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := g.Start(ctx, inst.ID); err != nil {
		return inst, err
	}
	return inst, nil
}

func (g *Group) nextAddressLocked() (string, error) {
	used := map[string]bool{}
	for _, inst := range g.instances {
		used[inst.Address] = true
	}
	for ; g.nextHost < bridgeHost; g.nextHost++ {
		addr := g.net.address(g.nextHost)
		// A netlab's addresses are the group's alone; loopback ones may
		// be bound by a process outside our locks.
		if used[addr] || g.lab == nil && !portsFree(addr) {
			continue
		}
		g.nextHost++
		return addr, nil
	}
	return "", fmt.Errorf("fleet: subnet %s has no free address left", g.net)
}

func (g *Group) newInstanceLocked(address string) (*Instance, error) {
	var id string
	for id == "" || g.lookupLocked(id) != nil {
		id = fmt.Sprintf("i-0%016x", rand.Uint64())
	}
	inst := &Instance{
		ID:      id,
		Address: address,
		DataDir: filepath.Join(g.opts.Dir, id),
		LogPath: filepath.Join(g.opts.Dir, id+".log"),
		g:       g,
	}
	if err := os.MkdirAll(inst.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if g.lab != nil {
		ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		defer cancel()
		ns, err := g.lab.namespace(ctx, address)
		if err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
		inst.Netns = ns
	}
	return inst, nil
}

func (g *Group) registerLocked(insts []*Instance) error {
	err := g.editFile(func(f *local.File) {
		for _, inst := range insts {
			f.Instances = append(f.Instances, cluster.Instance{
				ID: inst.ID, Address: inst.Address, State: cluster.InstanceRunning,
				Region: "local", Zone: "local-a",
			})
		}
	})
	if err != nil {
		return err
	}
	g.instances = append(g.instances, insts...)
	for _, inst := range insts {
		g.log.Info("instance added to the group file", "id", inst.ID, "address", inst.Address)
	}
	return nil
}

// editFile rewrites the group file atomically. Callers serialize through g.mu.
func (g *Group) editFile(edit func(*local.File)) error {
	f, err := local.Read(g.file)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	edit(&f)
	if err := local.Write(g.file, f); err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	return nil
}

// SetState sets an instance's state in the group file; its process is left
// alone.
func (g *Group) SetState(id string, state cluster.InstanceState) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	found := false
	err := g.editFile(func(f *local.File) {
		for i := range f.Instances {
			if f.Instances[i].ID == id {
				f.Instances[i].State = state
				found = true
			}
		}
	})
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("fleet: no instance %q in the group file", id)
	}
	g.log.Info("instance state set", "id", id, "state", state)
	return nil
}

// Start starts the appliances of instances that do not run, on whatever
// their data dirs hold, all at once, and waits until each answers /healthz.
func (g *Group) Start(ctx context.Context, ids ...string) error {
	var started []*Instance
	var errs []error
	for _, id := range ids {
		inst, err := g.startOne(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		started = append(started, inst)
	}
	return errors.Join(append(errs, g.waitAllHealthy(ctx, started))...)
}

func (g *Group) startOne(ctx context.Context, id string) (*Instance, error) {
	inst, err := g.lookup(id)
	if err != nil {
		return nil, err
	}
	if inst.Running() {
		return nil, fmt.Errorf("fleet: %s already runs (pid %d)", inst, inst.PID())
	}
	// The previous process of this address may have just died.
	if err := g.waitPortsFree(ctx, inst.Address); err != nil {
		return nil, err
	}
	args := []string{"run",
		"--provider", "local",
		"--instance-id", inst.ID,
		"--group-file", g.file,
		"--data-dir", inst.DataDir,
		"--log-format", "text",
	}
	args = append(args, g.tls.args()...)
	args = append(args, g.opts.Args...)
	g.mu.Lock()
	defer g.mu.Unlock()
	args = append(args, inst.args...)
	if g.closed {
		return nil, errors.New("fleet: group is closed")
	}
	binary, args := g.argv(inst, args)
	p, err := startProcess(binary, args, nil, inst.LogPath)
	if err != nil {
		return nil, fmt.Errorf("fleet: %s: %w", inst, err)
	}
	inst.proc = p
	g.log.Info("appliance started", "id", inst.ID, "address", inst.Address, "pid", p.pid())
	return inst, nil
}

// waitAllHealthy waits for every one of insts at once (see waitHealthy).
func (g *Group) waitAllHealthy(ctx context.Context, insts []*Instance) error {
	errs := make([]error, len(insts))
	var wg sync.WaitGroup
	for k, inst := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = g.waitHealthy(ctx, inst)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitHealthy waits until the appliance answers /healthz with 200, failing
// early when it exits.
func (g *Group) waitHealthy(ctx context.Context, inst *Instance) error {
	ctx, cancel := context.WithTimeout(ctx, healthyTimeout)
	defer cancel()
	g.mu.Lock()
	p := inst.proc
	g.mu.Unlock()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var last error
	for {
		if p.exited() {
			return fmt.Errorf("fleet: appliance %s exited (%v) before answering /healthz; log tail:\n%s",
				inst, p.exitError(), tail(inst.LogPath, 20))
		}
		code, _, err := g.get(ctx, inst, "/healthz")
		if err == nil && code == 200 {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("/healthz answered %d", code)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("fleet: appliance %s did not answer /healthz: %v: %w", inst, last, ctx.Err())
		case <-t.C:
		}
	}
}

// runningProc returns the instance and its live appliance process, or an
// error naming the action that needed it.
func (g *Group) runningProc(id, action string) (*Instance, *process, error) {
	inst, err := g.lookup(id)
	if err != nil {
		return nil, nil, err
	}
	g.mu.Lock()
	p := inst.proc
	g.mu.Unlock()
	if p == nil || p.exited() {
		return nil, nil, fmt.Errorf("fleet: %s %s: appliance %w", action, inst, ErrNotRunning)
	}
	return inst, p, nil
}

// Kill sends SIGKILL to an instance's appliance only, as a crash would, and
// waits until both the appliance and its etcd child are gone: the etcd
// child must die with its parent (Pdeathsig). The group file is unchanged.
func (g *Group) Kill(id string) error {
	inst, p, err := g.runningProc(id, "killing")
	if err != nil {
		return err
	}
	etcdPID, _ := inst.EtcdPID()
	p.signal(syscall.SIGKILL)
	g.log.Info("appliance killed", "id", id, "pid", p.pid(), "etcd_pid", etcdPID)
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	if err := waitExit(ctx, p); err != nil {
		return fmt.Errorf("fleet: appliance %s survived SIGKILL: %w", inst, err)
	}
	if etcdPID == 0 {
		return nil
	}
	err = Poll(ctx, pollInterval, func() (bool, string) {
		return !pidAlive(etcdPID), fmt.Sprintf("etcd pid %d still alive", etcdPID)
	})
	if err != nil {
		// Leave no orphan behind, but report it: etcd must die with its appliance.
		_ = syscall.Kill(etcdPID, syscall.SIGKILL)
		return fmt.Errorf("fleet: etcd (pid %d) of %s outlived its killed appliance: %w", etcdPID, inst, err)
	}
	return nil
}

// Freeze sends SIGSTOP to an instance's appliance only, as a hung process:
// its etcd child, in its own process group, keeps running (and leading).
func (g *Group) Freeze(id string) error {
	_, p, err := g.runningProc(id, "freezing")
	if err != nil {
		return err
	}
	p.signal(syscall.SIGSTOP)
	g.log.Info("appliance frozen", "id", id, "pid", p.pid())
	return nil
}

// Thaw sends SIGCONT to an instance's appliance that Freeze stopped.
func (g *Group) Thaw(id string) error {
	_, p, err := g.runningProc(id, "thawing")
	if err != nil {
		return err
	}
	p.signal(syscall.SIGCONT)
	g.log.Info("appliance thawed", "id", id, "pid", p.pid())
	return nil
}

// KillEtcd sends SIGKILL to an instance's etcd child, found by its pid
// file, waits until it is gone and returns its pid.
func (g *Group) KillEtcd(id string) (int, error) {
	inst, err := g.lookup(id)
	if err != nil {
		return 0, err
	}
	pid, err := inst.EtcdPID()
	if err != nil {
		return 0, fmt.Errorf("fleet: %s: %w", inst, err)
	}
	if pid == 0 {
		return 0, fmt.Errorf("fleet: killing the etcd of %s: etcd %w", inst, ErrNotRunning)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return 0, fmt.Errorf("fleet: killing etcd pid %d of %s: %w", pid, inst, err)
	}
	g.log.Info("etcd killed", "id", id, "etcd_pid", pid)
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	err = Poll(ctx, pollInterval, func() (bool, string) {
		return !pidAlive(pid), fmt.Sprintf("etcd pid %d still alive", pid)
	})
	if err != nil {
		return pid, fmt.Errorf("fleet: etcd pid %d of %s survived SIGKILL: %w", pid, inst, err)
	}
	return pid, nil
}

// Terminate plays the cloud terminating an instance: its group file state
// becomes terminated, then its appliance and etcd get SIGKILL (a terminated
// machine does not shut down politely). It waits until both are gone.
func (g *Group) Terminate(ctx context.Context, id string) error {
	inst, err := g.lookup(id)
	if err != nil {
		return err
	}
	if err := g.SetState(id, cluster.InstanceTerminated); err != nil {
		return err
	}
	g.mu.Lock()
	p := inst.proc
	g.mu.Unlock()
	etcdPID, _ := inst.EtcdPID()
	if p != nil && !p.exited() {
		p.signal(syscall.SIGKILL)
	}
	if etcdPID != 0 {
		_ = syscall.Kill(etcdPID, syscall.SIGKILL)
	}
	g.log.Info("instance terminated", "id", id, "etcd_pid", etcdPID)
	ctx, cancel := context.WithTimeout(ctx, killTimeout)
	defer cancel()
	if p != nil {
		if err := waitExit(ctx, p); err != nil {
			return fmt.Errorf("fleet: terminating %s: %w", inst, err)
		}
	}
	err = Poll(ctx, pollInterval, func() (bool, string) {
		return !pidAlive(etcdPID), fmt.Sprintf("etcd pid %d still alive", etcdPID)
	})
	if err != nil {
		return fmt.Errorf("fleet: terminating %s: %w", inst, err)
	}
	return nil
}

// Stop sends SIGTERM to an instance's appliance and waits for it to exit.
// It fails when the appliance exits with a non-zero status, or when its
// etcd child is still alive after the appliance exited.
func (g *Group) Stop(ctx context.Context, id string) error {
	inst, p, err := g.runningProc(id, "stopping")
	if err != nil {
		return err
	}
	etcdPID, _ := inst.EtcdPID()
	start := time.Now()
	p.signal(syscall.SIGTERM)
	g.log.Info("appliance sent SIGTERM", "id", id, "pid", p.pid())
	if err := waitExit(ctx, p); err != nil {
		return fmt.Errorf("fleet: %s did not exit after SIGTERM: %w", inst, err)
	}
	if err := p.exitError(); err != nil {
		return fmt.Errorf("fleet: %s exited after SIGTERM with %v (want exit 0); log tail:\n%s", inst, err, tail(inst.LogPath, 20))
	}
	g.log.Info("appliance stopped", "id", id, "after", time.Since(start).Round(time.Millisecond))
	if etcdPID != 0 && pidAlive(etcdPID) {
		_ = syscall.Kill(etcdPID, syscall.SIGKILL)
		return fmt.Errorf("fleet: etcd (pid %d) of %s still ran after its appliance exited on SIGTERM", etcdPID, inst)
	}
	return nil
}

// StopAll sends SIGTERM to every running appliance at once and waits for all
// of them, as a whole-group shutdown.
func (g *Group) StopAll(ctx context.Context) error {
	running := g.Running()
	errs := make([]error, len(running))
	var wg sync.WaitGroup
	for k, inst := range running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = g.Stop(ctx, inst.ID)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Restart stops an instance's appliance with SIGTERM if it runs, then starts
// it again on the same data dir.
func (g *Group) Restart(ctx context.Context, id string) error {
	inst, err := g.lookup(id)
	if err != nil {
		return err
	}
	if inst.Running() {
		if err := g.Stop(ctx, id); err != nil {
			return err
		}
	}
	return g.Start(ctx, id)
}

// WipeData empties the data dir of an instance whose appliance does not run,
// as a replaced disk would.
func (g *Group) WipeData(id string) error {
	inst, err := g.lookup(id)
	if err != nil {
		return err
	}
	if inst.Running() {
		return fmt.Errorf("fleet: refusing to wipe the data of %s while its appliance runs", inst)
	}
	if err := os.RemoveAll(inst.DataDir); err != nil {
		return fmt.Errorf("fleet: wiping %s: %w", inst, err)
	}
	if err := os.MkdirAll(inst.DataDir, 0o755); err != nil {
		return fmt.Errorf("fleet: wiping %s: %w", inst, err)
	}
	g.log.Info("data dir wiped", "id", id, "dir", inst.DataDir)
	return nil
}

// LogTail returns the last n lines of an instance's log.
func (g *Group) LogTail(id string, n int) string {
	inst := g.Instance(id)
	if inst == nil {
		return fmt.Sprintf("(no instance %q)", id)
	}
	return tail(inst.LogPath, n)
}

// LogTails returns the last n lines of every instance's log, with headers.
func (g *Group) LogTails(n int) string {
	var b strings.Builder
	for _, inst := range g.Instances() {
		state := "not running"
		if pid := inst.PID(); pid != 0 {
			state = fmt.Sprintf("running, pid %d", pid)
		}
		fmt.Fprintf(&b, "----- %s (%s), last %d lines of %s -----\n%s\n", inst, state, n, inst.LogPath, tail(inst.LogPath, n))
	}
	return b.String()
}

// Close stops every appliance (SIGTERM, then SIGKILL after a short grace),
// kills any etcd left behind and releases the group's subnet. The files in
// Dir are kept. Close is bounded and idempotent.
func (g *Group) Close() error {
	g.closeOnce.Do(func() {
		g.mu.Lock()
		g.closed = true
		insts := slices.Clone(g.instances)
		g.mu.Unlock()

		var errs []error
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, inst := range insts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := closeInstance(inst); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		// The namespaces go once their processes are gone.
		if err := g.releaseNet(); err != nil {
			errs = append(errs, fmt.Errorf("fleet: %w", err))
		}
		g.closeErr = errors.Join(errs...)
		g.log.Info("group closed")
	})
	return g.closeErr
}

// releaseNet removes the netlab, if any, and releases the subnet.
func (g *Group) releaseNet() error {
	if g.lab == nil {
		g.net.release()
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	return g.lab.close(ctx)
}

// argv is the command that runs the appliance binary with args on inst:
// the binary itself, or `ip netns exec` in its namespace, which execs the
// binary in place (same pid).
func (g *Group) argv(inst *Instance, args []string) (string, []string) {
	if inst.Netns == "" {
		return g.opts.Binary, args
	}
	return g.lab.ip, append([]string{"netns", "exec", inst.Netns, g.opts.Binary}, args...)
}

// waitPortsFree polls until every appliance port of address can be bound
// where the instance on address runs.
func (g *Group) waitPortsFree(ctx context.Context, address string) error {
	if g.lab == nil {
		return waitPortsFree(ctx, address)
	}
	ns, err := g.lab.namespace(ctx, address)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	err = Poll(ctx, 50*time.Millisecond, func() (bool, string) {
		free := false
		if err := inNetns(ns, func() error { free = portsFree(address); return nil }); err != nil {
			return false, err.Error()
		}
		return free, "a port of " + address + " is still bound in " + ns
	})
	if err != nil {
		return fmt.Errorf("fleet: waiting for the ports of %s: %w", address, err)
	}
	return nil
}

func closeInstance(inst *Instance) error {
	inst.g.mu.Lock()
	p := inst.proc
	inst.g.mu.Unlock()
	etcdPID, _ := inst.EtcdPID()
	if p != nil && !p.exited() {
		p.signal(syscall.SIGTERM)
		ctx, cancel := context.WithTimeout(context.Background(), closeGrace)
		err := waitExit(ctx, p)
		cancel()
		if err != nil {
			p.signal(syscall.SIGKILL)
			ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
			err = waitExit(ctx, p)
			cancel()
			if err != nil {
				return fmt.Errorf("fleet: closing %s: %w", inst, err)
			}
		}
	}
	if pidAlive(etcdPID) {
		_ = syscall.Kill(etcdPID, syscall.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		defer cancel()
		return Poll(ctx, pollInterval, func() (bool, string) {
			return !pidAlive(etcdPID), fmt.Sprintf("closing %s: etcd pid %d still alive", inst, etcdPID)
		})
	}
	return nil
}

func waitExit(ctx context.Context, p *process) error {
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pid %d still running: %w", p.pid(), ctx.Err())
	}
}

func ids(insts []*Instance) []string {
	out := make([]string, len(insts))
	for k, inst := range insts {
		out[k] = inst.ID
	}
	return out
}
