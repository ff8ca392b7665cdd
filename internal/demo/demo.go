// Package demo is `etcd-appliance demo`: a newcomer's first run. It starts a
// local group of appliance processes on loopback addresses (through
// internal/fleet), lets them bootstrap a cluster, writes keys,
// replaces one instance by a new one on a new address, checks that no key
// was lost and prints what it saw. Its last line of output is one JSON
// object with the figures, for scripts.
//
// `demo --aws` tours the same steps on an Auto Scaling group in moto (the
// AWS emulator of the test suite, SPEC §6): the appliances run with
// --provider aws and publish Route53 records, and the replacement is an
// instance terminated through the Auto Scaling API.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// Deadlines are generous: §7's targets are 5 s for both steps.
const (
	bootstrapTimeout = 90 * time.Second
	replaceTimeout   = 90 * time.Second
	keysTimeout      = 30 * time.Second
	progressInterval = 200 * time.Millisecond
	keyCount         = 100
	keyPrefix        = "/demo/"
)

// applianceArgs are quicker than production defaults so the demo takes
// seconds; see `etcd-appliance run --help`.
var applianceArgs = []string{
	"--startup-interval", "200ms",
	"--reconcile-interval", "1s",
	"--stale-grace", "5s",
}

// Options configures Run.
type Options struct {
	// Binary is the etcd-appliance binary the instances run; the CLI passes
	// its own executable.
	Binary string
	// Members is the size of the group, default 3.
	Members int
	// Keep leaves the group running after the tour, until ctx is cancelled,
	// and keeps its directory.
	Keep bool
	// Out receives the tour; default os.Stdout.
	Out io.Writer
	// AWS tours an Auto Scaling group in moto instead of a local group;
	// moto_server must be installed (else fleet.ErrMotoNotFound).
	AWS bool
	// TLS runs the group with --tls auto: its CA in the tour's directory
	// (locally) or in moto's Secrets Manager (AWS).
	TLS bool
}

// Result is the JSON object of the last output line.
type Result struct {
	OK               bool    `json:"ok"`
	Members          int     `json:"members"`
	Healthy          int     `json:"healthy"`
	ClusterID        string  `json:"cluster_id,omitempty"`
	BootstrapSeconds float64 `json:"bootstrap_seconds"`
	ReplaceSeconds   float64 `json:"replace_seconds"`
	KeysWritten      int     `json:"keys_written"`
	KeysLost         int     `json:"keys_lost"`
	Dir              string  `json:"dir,omitempty"`
	Error            string  `json:"error,omitempty"`
	// DNSRecords are the Route53 records the cluster published, read back
	// from moto at the end of an AWS tour.
	DNSRecords []cluster.DNSRecord `json:"dns_records,omitempty"`
}

// Run runs the demo. It fails when the group does not converge within a
// generous deadline or when a key was lost.
func Run(ctx context.Context, opts Options) error {
	if opts.Members <= 0 {
		opts.Members = 3
	}
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	d := &tour{opts: opts, out: &lockedWriter{w: opts.Out}}
	var err error
	if opts.AWS {
		err = d.runAWS(ctx)
	} else {
		err = d.run(ctx)
	}
	d.cleanup(err)

	d.res.OK = err == nil
	if err != nil {
		d.res.Error = err.Error()
	}
	b, _ := json.Marshal(d.res)
	fmt.Fprintf(d.out, "%s\n", b)
	return err
}

type tour struct {
	opts Options
	out  *lockedWriter
	dir  string
	g    *fleet.Group    // the local tour's group
	ag   *fleet.AWSGroup // the AWS tour's group
	// view and running read the group of either tour.
	view    group
	running func(context.Context) []*fleet.Instance
	res     Result
}

// group is what the tour reads from its group, local or AWS.
type group interface {
	Status(ctx context.Context) (cluster.ClusterStatus, error)
	Peer(ctx context.Context, id string) (cluster.PeerState, error)
	Client(ctx context.Context, ids ...string) (*clientv3.Client, error)
	Instance(id string) *fleet.Instance
	WaitConverged(ctx context.Context, voters int) (cluster.ClusterStatus, error)
}

func (d *tour) printf(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
}

func (d *tour) run(ctx context.Context) error {
	binary, err := d.prepare("etcd-appliance-demo-")
	if err != nil {
		return err
	}
	d.g, err = fleet.New(fleet.Options{Binary: binary, Dir: d.dir, Name: "demo", Args: applianceArgs, TLS: d.opts.TLS})
	if err != nil {
		return err
	}
	d.view = d.g
	d.running = func(context.Context) []*fleet.Instance { return d.g.Running() }
	d.printf("etcd-appliance demo: a group of %d instances, each an appliance process on its own loopback address", d.opts.Members)
	d.printf("  directory   %s (group file, data, one log per instance)", d.dir)
	d.printf("  group file  %s", d.g.GroupFile())
	d.printf("")

	st, err := d.steps(ctx, d.bootstrap, d.replace)
	if err != nil {
		return err
	}
	d.printf("")
	d.printTable(st)
	if d.opts.Keep {
		d.keep(ctx, st)
	}
	return nil
}

// prepare makes the tour's directory, named after pattern, and returns the
// binary the instances run.
func (d *tour) prepare(pattern string) (binary string, err error) {
	if d.opts.Binary == "" {
		return "", errors.New("demo: Options.Binary is required: the etcd-appliance binary the instances run")
	}
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	d.dir = dir
	return d.opts.Binary, nil
}

// steps are the tour's steps 1 to 4 on either group: bootstrap, the keys
// written, one instance replaced, the keys read back. It returns the
// cluster's final status.
func (d *tour) steps(ctx context.Context, bootstrap, replace func(context.Context) error) (cluster.ClusterStatus, error) {
	if err := bootstrap(ctx); err != nil {
		return cluster.ClusterStatus{}, err
	}
	if err := d.writeKeys(ctx); err != nil {
		return cluster.ClusterStatus{}, err
	}
	if err := replace(ctx); err != nil {
		return cluster.ClusterStatus{}, err
	}
	if err := d.checkKeys(ctx); err != nil {
		return cluster.ClusterStatus{}, err
	}
	st, err := d.view.Status(ctx)
	if err != nil {
		return cluster.ClusterStatus{}, fmt.Errorf("reading the final status: %w", err)
	}
	d.res.Members, d.res.Healthy = len(st.Members), st.HealthyVoters()
	return st, nil
}

func (d *tour) bootstrap(ctx context.Context) error {
	d.printf("1. Launching %d instances at once; they find each other through the group file and", d.opts.Members)
	d.printf("   agree on one seeder, which offers the whole group as the initial membership;")
	d.printf("   every instance starts etcd with that offer, so one cluster forms at once.")
	start := time.Now()
	insts, err := d.g.LaunchN(ctx, d.opts.Members)
	if err != nil {
		return err
	}
	for _, inst := range insts {
		d.printf("   launched %s at %s", inst.ID, inst.Address)
	}
	st, err := d.waitBootstrap(ctx, start)
	if err != nil {
		return err
	}
	d.printf("   => cluster %s: %d healthy voters after %.1fs", st.ClusterID, st.HealthyVoters(), d.res.BootstrapSeconds)
	d.printf("")
	return nil
}

// waitBootstrap shows the cluster forming since start until the group's
// members are its healthy voters, and records the bootstrap's figures.
func (d *tour) waitBootstrap(ctx context.Context, start time.Time) (cluster.ClusterStatus, error) {
	stop := d.showProgress(ctx, start)
	wctx, cancel := context.WithTimeout(ctx, bootstrapTimeout)
	st, err := d.view.WaitConverged(wctx, d.opts.Members)
	cancel()
	stop()
	if err != nil {
		return st, fmt.Errorf("bootstrap: %w", err)
	}
	d.res.BootstrapSeconds = seconds(time.Since(start))
	d.res.ClusterID = st.ClusterID.String()
	return st, nil
}

func (d *tour) writeKeys(ctx context.Context) error {
	d.printf("2. Writing %d keys under %s", keyCount, keyPrefix)
	c, err := d.view.Client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, keysTimeout)
	defer cancel()
	for i := range keyCount {
		if _, err := c.Put(ctx, demoKey(i), demoValue(i)); err != nil {
			return fmt.Errorf("writing %s: %w", demoKey(i), err)
		}
		d.res.KeysWritten++
	}
	d.printf("   => %d keys written", keyCount)
	d.printf("")
	return nil
}

// pickVictim picks the instance the tour replaces among the running ones:
// the etcd leader's, else the first; what says which it is.
func (d *tour) pickVictim(ctx context.Context, running []*fleet.Instance) (victim *fleet.Instance, what string, err error) {
	st, err := d.view.Status(ctx)
	if err != nil {
		return nil, "", err
	}
	if len(running) == 0 {
		return nil, "", errors.New("replacement: no instance runs")
	}
	victim, what = running[0], "a follower"
	for _, m := range st.Members {
		if inst := d.view.Instance(m.Name); m.Leader && inst != nil {
			victim, what = inst, "the etcd leader"
		}
	}
	return victim, what, nil
}

func (d *tour) replace(ctx context.Context) error {
	victim, what, err := d.pickVictim(ctx, d.g.Running())
	if err != nil {
		return err
	}
	d.printf("3. Terminating %s (%s, %s) and launching a replacement on a new address,", victim.ID, victim.Address, what)
	d.printf("   as an autoscaling group would. The leader removes the stale member; the new")
	d.printf("   instance joins as a learner and is promoted to voter once in sync. (etcd accepts")
	d.printf("   membership changes only once its members were connected for 5 s, which a cluster")
	d.printf("   this young has not been yet.)")
	if err := d.g.Terminate(ctx, victim.ID); err != nil {
		return err
	}
	start := time.Now()
	repl, err := d.g.Launch(ctx)
	if err != nil {
		return err
	}
	d.printf("   launched %s at %s", repl.ID, repl.Address)
	stop := d.showProgress(ctx, start)
	wctx, cancel := context.WithTimeout(ctx, replaceTimeout)
	st, err := d.g.WaitConverged(wctx, d.opts.Members)
	cancel()
	stop()
	if err != nil {
		return fmt.Errorf("replacement: %w", err)
	}
	d.res.ReplaceSeconds = seconds(time.Since(start))
	d.printf("   => %d healthy voters again %.1fs after the replacement started", st.HealthyVoters(), d.res.ReplaceSeconds)
	d.printf("")
	return nil
}

func (d *tour) checkKeys(ctx context.Context) error {
	d.printf("4. Reading the %d keys back", keyCount)
	c, err := d.view.Client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, keysTimeout)
	defer cancel()
	resp, err := c.Get(ctx, keyPrefix, clientv3.WithPrefix())
	if err != nil {
		d.res.KeysLost = d.res.KeysWritten
		return fmt.Errorf("reading the keys back: %w", err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	for i := range d.res.KeysWritten {
		if got[demoKey(i)] != demoValue(i) {
			d.res.KeysLost++
		}
	}
	if d.res.KeysLost > 0 {
		d.printf("   => %d of %d keys LOST", d.res.KeysLost, d.res.KeysWritten)
		return fmt.Errorf("%d of %d keys lost", d.res.KeysLost, d.res.KeysWritten)
	}
	d.printf("   => all %d keys are there", d.res.KeysWritten)
	return nil
}

func (d *tour) printTable(st cluster.ClusterStatus) {
	d.printf("Cluster %s, as %s reports it (GET /v1/status):", st.ClusterID, st.Reporter)
	members := slices.Clone(st.Members)
	slices.SortFunc(members, func(a, b cluster.MemberStatus) int { return strings.Compare(a.Name, b.Name) })
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  MEMBER\tMEMBER ID\tADDRESS\tROLE\tHEALTHY\tLEADER\tREVISION\tIN GROUP")
	for _, m := range members {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.Name, m.ID, hostOf(m.PeerURL), m.Role,
			yesNo(m.Healthy), yesNo(m.Leader), m.Revision, yesNo(m.InGroup))
	}
	tw.Flush()
}

func (d *tour) keep(ctx context.Context, st cluster.ClusterStatus) {
	running, _ := d.g.RunningInGroup()
	d.printf("")
	d.printf("The group keeps running. Try:")
	d.printClientHints(running)
	d.printf("  edit %s to launch or terminate instances", d.g.GroupFile())
	d.printf("Press Ctrl-C to stop the group.")
	<-ctx.Done()
}

// printClientHints prints how to reach the cluster of the running
// instances: etcdctl on their endpoints, the API and log of the first.
func (d *tour) printClientHints(running []*fleet.Instance) {
	var endpoints []string
	for _, inst := range running {
		endpoints = append(endpoints, inst.ClientURL())
	}
	if d.g != nil && d.g.TLS() {
		// Every port speaks mutual TLS: a certificate of the cluster CA
		// gets in.
		certs := filepath.Join(d.dir, "client")
		d.printf("  etcd-appliance client-cert --name demo --out %s --tls-ca-dir %s", certs, d.g.CADir())
		d.printf("  ETCDCTL_ENDPOINTS=%s etcdctl --cacert %s --cert %s --key %s member list -w table", strings.Join(endpoints, ","),
			filepath.Join(certs, "ca.pem"), filepath.Join(certs, "cert.pem"), filepath.Join(certs, "key.pem"))
		if len(running) > 0 {
			d.printf("  etcd-appliance status --api %s --tls-ca-dir %s", running[0].APIURL(), d.g.CADir())
			d.printf("  tail -f %s", running[0].LogPath)
		}
		return
	}
	d.printf("  ETCDCTL_ENDPOINTS=%s etcdctl member list -w table", strings.Join(endpoints, ","))
	if len(running) > 0 {
		d.printf("  curl %s/v1/status", running[0].APIURL())
		d.printf("  tail -f %s", running[0].LogPath)
	}
}

// cleanup stops the group; the directory goes too unless the group was
// kept or the run failed (its logs tell why).
func (d *tour) cleanup(runErr error) {
	if d.g != nil {
		d.g.Close()
	}
	if d.ag != nil {
		d.ag.Close()
	}
	if d.dir == "" {
		return
	}
	if d.opts.Keep || runErr != nil {
		d.res.Dir = d.dir
		if runErr != nil && !errors.Is(runErr, context.Canceled) {
			d.printf("The logs of every instance are kept in %s", d.dir)
		}
		return
	}
	os.RemoveAll(d.dir)
}

// showProgress prints a line whenever the cluster's picture changes, until
// the returned function is called.
func (d *tour) showProgress(ctx context.Context, start time.Time) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		last := ""
		for {
			if line := d.picture(ctx); line != last && ctx.Err() == nil {
				d.printf("   %5.1fs  %s", time.Since(start).Seconds(), line)
				last = line
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// picture describes the cluster in one line: its members when a member
// list can be read, else what each appliance is doing.
func (d *tour) picture(ctx context.Context) string {
	sctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	st, err := d.view.Status(sctx)
	cancel()
	if err == nil && st.Error == "" && len(st.Members) > 0 {
		members := slices.Clone(st.Members)
		slices.SortFunc(members, func(a, b cluster.MemberStatus) int { return strings.Compare(a.Name, b.Name) })
		var parts []string
		for _, m := range members {
			name := m.Name
			if name == "" {
				name = m.ID.String()
			}
			p := fmt.Sprintf("%s %s", name, m.Role)
			if !m.Healthy && m.Role != cluster.RoleUnstarted {
				p += " (down)"
			}
			if m.Leader {
				p += " (leader)"
			}
			if !m.InGroup && m.Name != "" {
				p += " (not in group)"
			}
			parts = append(parts, p)
		}
		return "members: " + strings.Join(parts, ", ")
	}
	var parts []string
	etcdRuns := false
	for _, inst := range d.running(ctx) {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		ps, err := d.view.Peer(pctx, inst.ID)
		cancel()
		phase := "not answering"
		if err == nil {
			phase = string(ps.Phase)
			etcdRuns = etcdRuns || ps.EtcdRunning
		}
		parts = append(parts, inst.ID+" "+phase)
	}
	switch {
	case len(parts) == 0:
		return "no appliance answers yet"
	case etcdRuns:
		return "no member list right now (electing a leader?): " + strings.Join(parts, ", ")
	default:
		return "no cluster yet: " + strings.Join(parts, ", ")
	}
}

func demoKey(i int) string   { return fmt.Sprintf("%skey-%03d", keyPrefix, i) }
func demoValue(i int) string { return fmt.Sprintf("value %d", i) }

func seconds(d time.Duration) float64 {
	return float64(d.Round(10*time.Millisecond)) / float64(time.Second)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// lockedWriter serializes the tour's lines and its progress lines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
