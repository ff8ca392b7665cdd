// Command bench measures the figures of SPEC §7 on this machine with real
// appliance processes on loopback addresses, and writes them as Markdown
// (docs/BENCHMARKS.md via `make bench`).
//
// Each figure is the median (with min and max) of -runs runs. The limit the
// appliance is compared with is a plain static etcd cluster of the same size
// started by hand: the bundled etcd with a fixed --initial-cluster.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// settle is how long the cluster runs untouched before each replacement.
const settle = 6 * time.Second

// applianceArgs are the flags the appliance runs with in every benchmark:
// the defaults users run (SPEC §7), with JSON logs, which the bench reads.
var applianceArgs = []string{"--log-format=json"}

func main() {
	binary := flag.String("binary", "bin/etcd-appliance", "the etcd-appliance binary to measure")
	out := flag.String("out", "docs/BENCHMARKS.md", "where to write the results")
	runs := flag.Int("runs", 5, "runs per figure")
	figures := flag.String("figures", strings.Join(allFigures, ","), "which figures to measure: local (local provider), aws (moto-backed Auto Scaling group), recovery (snapshots and disaster recovery), gaps (longest client write gaps of a rolling upgrade and of the leader's termination and drain), idle (what an idle group costs its etcd members), multiregion (leader elections across regions on the faithful network), tls (bootstrap and write latency with --tls auto next to plaintext), tlsmove (a running plaintext group moved to TLS, next to a plain rolling restart), comma-separated; a partial list replaces only its own rows of -out")
	window := flag.Duration("aws-window", cluster.DNSRecheck, "how long the steady-state AWS calls are counted; at least the DNS recheck period (5m), or its reads are missed")
	idleWindow := flag.Duration("idle-window", time.Minute, "how long the idle cost is counted")
	multiWindow := flag.Duration("multiregion-window", 5*time.Minute, "how long the elections of each multi-region group are counted")
	flag.StringVar(&multiRegionOnly, "multiregion-only", "", "measure only the multi-region wires whose label contains this (e.g. \"loss\")")
	flag.Parse()
	if err := run(*binary, *out, *runs, strings.Split(*figures, ","), windows{aws: *window, idle: *idleWindow, multi: *multiWindow}); err != nil {
		log.Fatalf("bench: %v", err)
	}
}

type figure struct {
	name    string
	target  string
	samples []float64
	unit    string
	note    string
}

func (f figure) row() string {
	if len(f.samples) == 0 {
		return fmt.Sprintf("| %s | %s | no sample | | | %s |", f.name, f.target, f.note)
	}
	s := slices.Clone(f.samples)
	slices.Sort(s)
	return fmt.Sprintf("| %s | %s | **%.2f %s** | %.2f – %.2f | %d | %s |", f.name, f.target, median(s), f.unit, s[0], s[len(s)-1], len(s), f.note)
}

// median is the median of samples, the mean of the middle two for an even
// count; 0 for none.
func median(samples []float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// allFigures are the figure sets a full run measures.
var allFigures = []string{"local", "aws", "recovery", "gaps", "idle", "multiregion", "tls", "tlsmove"}

// windows are how long the figures that count over a window count.
type windows struct {
	aws, idle, multi time.Duration
}

func run(binary, out string, runs int, figures []string, w windows) error {
	for _, f := range figures {
		if !slices.Contains(allFigures, f) {
			return fmt.Errorf("-figures: unknown figure set %q (want some of %s)", f, strings.Join(allFigures, ", "))
		}
	}
	binary, err := filepath.Abs(binary)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var figs []figure
	if slices.Contains(figures, "local") {
		if figs, err = measureLocal(ctx, binary, runs); err != nil {
			return err
		}
	}
	if slices.Contains(figures, "aws") {
		aws, err := measureAWS(ctx, binary, runs, w.aws)
		if err != nil {
			return err
		}
		figs = append(figs, aws...)
	}
	if slices.Contains(figures, "recovery") {
		rec, err := measureRecovery(ctx, binary, runs)
		if err != nil {
			return err
		}
		figs = append(figs, rec...)
	}
	if slices.Contains(figures, "gaps") {
		gaps, err := measureGaps(ctx, binary, runs)
		if err != nil {
			return err
		}
		figs = append(figs, gaps...)
	}
	if slices.Contains(figures, "idle") {
		idle, err := measureIdle(ctx, binary, w.idle)
		if err != nil {
			return err
		}
		figs = append(figs, idle...)
	}
	if slices.Contains(figures, "multiregion") {
		multi, err := measureMultiRegion(ctx, binary, w.multi)
		if err != nil {
			return err
		}
		figs = append(figs, multi...)
	}
	if slices.Contains(figures, "tls") {
		tls, err := measureTLS(ctx, binary, runs)
		if err != nil {
			return err
		}
		figs = append(figs, tls...)
	}
	if slices.Contains(figures, "tlsmove") {
		move, err := measureTLSMove(ctx, binary, runs)
		if err != nil {
			return err
		}
		figs = append(figs, move...)
	}
	partial := ""
	if len(figures) < len(allFigures) {
		partial = strings.Join(figures, ",")
	}
	return write(out, figs, runs, partial)
}

// measureLocal measures the figures of the local provider.
func measureLocal(ctx context.Context, binary string, runs int) ([]figure, error) {
	var figs []figure
	for _, n := range []int{3, 5} {
		target := "≤ 5 s"
		if n == 5 {
			target = "≤ 8 s"
		}
		boot := figure{name: fmt.Sprintf("fresh group of %d → %d healthy voters", n, n), target: target, unit: "s"}
		static := figure{name: fmt.Sprintf("limit: static etcd cluster of %d started by hand → healthy", n), target: "—", unit: "s"}
		for i := range runs {
			d, err := measureBootstrap(ctx, binary, n)
			if err != nil {
				return nil, fmt.Errorf("bootstrap of %d, run %d: %w", n, i, err)
			}
			boot.samples = append(boot.samples, d.Seconds())
			d, err = measureStatic(ctx, binary, n)
			if err != nil {
				return nil, fmt.Errorf("static etcd of %d, run %d: %w", n, i, err)
			}
			static.samples = append(static.samples, d.Seconds())
			log.Printf("bootstrap %d: run %d done", n, i)
		}
		figs = append(figs, boot, static)
	}
	crash, replace, rss, err := measureGroupFigures(ctx, binary, runs)
	if err != nil {
		return nil, err
	}
	return append(figs, crash, replace, rss), nil
}

func newGroup(binary string) (*fleet.Group, func(), error) {
	return newGroupWith(fleet.Options{Binary: binary, Args: applianceArgs})
}

// newGroupWith is newGroup with opts, in a directory of its own (Dir).
func newGroupWith(opts fleet.Options) (*fleet.Group, func(), error) {
	dir, err := os.MkdirTemp("", "etcd-appliance-bench-")
	if err != nil {
		return nil, nil, err
	}
	opts.Dir = dir
	g, err := fleet.New(opts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return g, func() { g.Close(); os.RemoveAll(dir) }, nil
}

// measureBootstrap times a fresh group from the start of its processes to
// n healthy voters.
func measureBootstrap(ctx context.Context, binary string, n int) (time.Duration, error) {
	g, done, err := newGroup(binary)
	if err != nil {
		return 0, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	start := time.Now()
	if _, err := g.LaunchN(ctx, n); err != nil {
		return 0, err
	}
	if _, err := g.WaitConverged(ctx, n); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// measureGroupFigures runs one group of 3 and, runs times each, kills an
// etcd child and replaces an instance; it samples the appliances' RSS.
func measureGroupFigures(ctx context.Context, binary string, runs int) (figure, figure, figure, error) {
	crash := figure{name: "etcd child SIGKILLed → member healthy again", target: "≤ 2 s", unit: "s"}
	replace := figure{name: "instance terminated and replaced → new voter healthy, stale member gone",
		target: "≤ 5 s", unit: "s", note: "timed from the replacement's process start"}
	rss := figure{name: "appliance RSS (etcd child excluded), group of 3 after the runs", target: "≤ 50 MB", unit: "MB"}
	g, done, err := newGroup(binary)
	if err != nil {
		return crash, replace, rss, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if _, err := g.LaunchN(ctx, 3); err != nil {
		return crash, replace, rss, err
	}
	if _, err := g.WaitConverged(ctx, 3); err != nil {
		return crash, replace, rss, err
	}
	for i := range runs {
		victim := g.Running()[i%3]
		oldPID, err := g.KillEtcd(victim.ID)
		if err != nil {
			return crash, replace, rss, err
		}
		start := time.Now()
		if err := waitEtcdBack(ctx, victim, oldPID); err != nil {
			return crash, replace, rss, fmt.Errorf("crash run %d: %w", i, err)
		}
		crash.samples = append(crash.samples, time.Since(start).Seconds())
		if _, err := g.WaitConverged(ctx, 3); err != nil {
			return crash, replace, rss, err
		}
		log.Printf("crash restart: run %d done", i)
	}
	for i := range runs {
		// A replacement in production meets a settled cluster: etcd's
		// --strict-reconfig-check refuses membership changes until the
		// members have been connected for 5 s, which back-to-back runs
		// would otherwise measure instead of the appliance.
		time.Sleep(settle)
		victim := g.Running()[0]
		if err := g.Terminate(ctx, victim.ID); err != nil {
			return crash, replace, rss, err
		}
		start := time.Now()
		if _, err := g.Launch(ctx); err != nil {
			return crash, replace, rss, err
		}
		if _, err := g.WaitConverged(ctx, 3); err != nil {
			return crash, replace, rss, fmt.Errorf("replacement run %d: %w", i, err)
		}
		replace.samples = append(replace.samples, time.Since(start).Seconds())
		log.Printf("replacement: run %d done", i)
	}
	var fileKB int
	for _, inst := range g.Running() {
		if kb, err := statusKB(inst.PID(), "VmRSS"); err == nil {
			rss.samples = append(rss.samples, float64(kb)/1024)
		}
		if kb, err := statusKB(inst.PID(), "RssFile"); err == nil {
			fileKB = max(fileKB, kb)
		}
	}
	rss.note = fmt.Sprintf("of which up to %.0f MB are file-backed pages of the executable, shared with the etcd child (the same binary)",
		float64(fileKB)/1024)
	return crash, replace, rss, nil
}

// waitEtcdBack polls until a new etcd child of the instance serves as a
// voter that knows its leader.
func waitEtcdBack(ctx context.Context, inst *fleet.Instance, oldPID int) error {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{inst.ClientURL()}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer c.Close()
	return fleet.Poll(ctx, 10*time.Millisecond, func() (bool, string) {
		pid, err := inst.EtcdPID()
		if err != nil || pid == 0 || pid == oldPID {
			return false, fmt.Sprintf("etcd not restarted (pid %d, err %v)", pid, err)
		}
		sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		st, err := c.Status(sctx, inst.ClientURL())
		cancel()
		if err != nil || st.Leader == 0 || st.IsLearner || len(st.Errors) > 0 {
			return false, fmt.Sprintf("etcd pid %d not serving yet: %v", pid, err)
		}
		return true, ""
	})
}

// measureStatic starts a static etcd cluster of n by hand with the bundled
// etcd and times it to n healthy members: the limit of any appliance.
func measureStatic(ctx context.Context, binary string, n int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	sc, err := startStatic(binary, n, false)
	if err != nil {
		return 0, err
	}
	defer sc.close()
	if err := sc.waitHealthy(ctx, sc.endpoints()...); err != nil {
		return 0, err
	}
	return time.Since(sc.started), nil
}

// staticCluster is a static etcd cluster started by hand with the bundled
// etcd: a fixed --initial-cluster, no appliance.
type staticCluster struct {
	dir     string
	group   func() // releases the addresses borrowed from a harness group
	members []*staticMember
	client  *clientv3.Client
	// started is when the first etcd process was started.
	started time.Time
}

// staticMember is one etcd process of a staticCluster.
type staticMember struct {
	name      string
	clientURL string
	logPath   string // "" when its logs are discarded
	// id is the member id, known once roles asked.
	id     uint64
	cmd    *exec.Cmd
	exited chan struct{}
}

// startStatic starts the n etcd processes of a static cluster at once,
// logging errors only, or with logs everything etcd logs at info into a
// file per member. close stops them.
func startStatic(binary string, n int, logs bool) (sc *staticCluster, err error) {
	dir, err := os.MkdirTemp("", "etcd-static-bench-")
	if err != nil {
		return nil, err
	}
	sc = &staticCluster{dir: dir}
	defer func() {
		if err != nil {
			sc.close()
		}
	}()
	// Borrow free addresses from a harness group that starts nothing.
	g, done, err := newGroup(binary)
	if err != nil {
		return sc, err
	}
	sc.group = done
	insts, err := g.Add(n)
	if err != nil {
		return sc, err
	}
	var initial []string
	for _, inst := range insts {
		initial = append(initial, inst.ID+"="+cluster.DefaultPorts.PeerURL("http", inst.Address))
	}
	sc.started = time.Now()
	for _, inst := range insts {
		client := cluster.DefaultPorts.ClientURL("http", inst.Address)
		cmd := exec.Command(binary, "etcd",
			"--name="+inst.ID, "--data-dir="+filepath.Join(dir, inst.ID),
			"--listen-client-urls="+client, "--advertise-client-urls="+client,
			"--listen-peer-urls="+cluster.DefaultPorts.PeerURL("http", inst.Address),
			"--initial-advertise-peer-urls="+cluster.DefaultPorts.PeerURL("http", inst.Address),
			"--initial-cluster="+strings.Join(initial, ","), "--initial-cluster-state=new",
			"--initial-cluster-token=static-bench", "--log-level=error")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		m := &staticMember{name: inst.ID, clientURL: client, cmd: cmd, exited: make(chan struct{})}
		if logs {
			m.logPath = filepath.Join(dir, inst.ID+".log")
			f, err := os.Create(m.logPath)
			if err != nil {
				return sc, err
			}
			defer f.Close() // the child has its own descriptor once started
			cmd.Args = append(cmd.Args, "--log-level=info")
			cmd.Stdout, cmd.Stderr = f, f
		}
		if err := cmd.Start(); err != nil {
			return sc, err
		}
		go func() {
			_ = cmd.Wait()
			close(m.exited)
		}()
		sc.members = append(sc.members, m)
	}
	sc.client, err = clientv3.New(clientv3.Config{Endpoints: sc.endpoints(), DialTimeout: time.Second, Logger: zap.NewNop()})
	return sc, err
}

// endpoints are the client URLs of every member, running or not.
func (sc *staticCluster) endpoints() []string {
	var out []string
	for _, m := range sc.members {
		out = append(out, m.clientURL)
	}
	return out
}

// waitHealthy polls until each of endpoints answers a status request with
// a leader and no error.
func (sc *staticCluster) waitHealthy(ctx context.Context, endpoints ...string) error {
	return fleet.Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		for _, ep := range endpoints {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := sc.client.Status(sctx, ep)
			cancel()
			if err != nil || st.Leader == 0 || len(st.Errors) > 0 {
				return false, fmt.Sprintf("%s not healthy: %v", ep, err)
			}
		}
		return true, ""
	})
}

// signal sends sig to the member's process group and waits until it exits.
func (sc *staticCluster) signal(ctx context.Context, m *staticMember, sig syscall.Signal) error {
	if err := syscall.Kill(-m.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("signalling etcd %s: %w", m.name, err)
	}
	select {
	case <-m.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("etcd %s did not exit on %v: %w", m.name, sig, ctx.Err())
	}
}

func (sc *staticCluster) close() {
	if sc.client != nil {
		sc.client.Close()
	}
	for _, m := range sc.members {
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		<-m.exited
	}
	if sc.group != nil {
		sc.group()
	}
	os.RemoveAll(sc.dir)
}

// statusKB reads a field in kB of /proc/<pid>/status: VmRSS, RssFile, ...
func statusKB(pid int, field string) (int, error) {
	if pid == 0 {
		return 0, errors.New("not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	return 0, fmt.Errorf("no %s", field)
}

func write(path string, figs []figure, runs int, partial string) error {
	rows := make([]string, 0, len(figs))
	for _, f := range figs {
		rows = append(rows, f.row())
	}
	header := fmt.Sprintf("# Benchmarks\n\nWritten by `make bench` on %s (%d cores, %s/%s, %s). "+
		"Local provider unless a figure names moto (the AWS provider against moto_server), real appliance processes "+
		"and the bundled etcd on 127.x loopback addresses; "+
		"each figure is the median of %d runs, with the range. Appliance flags: the defaults (`%s`).\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(),
		runs, strings.Join(applianceArgs, " "))
	if partial != "" {
		// Keep the rows of the figures this run did not measure, in place.
		old, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("a partial run (-figures %s) updates %s, which cannot be read: %w", partial, path, err)
		}
		rows = mergeRows(tableRows(string(old)), figs)
		header, _, _ = strings.Cut(string(old), "\n| figure")
		header = partialHeader(strings.TrimRight(header, "\n"), partial, time.Now().UTC())
	}
	var b strings.Builder
	b.WriteString(header)
	b.WriteString("\n| figure (SPEC §7) | target | median | range | runs | note |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	b.WriteString(notes)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// tableRows are the figure rows of a written file.
func tableRows(doc string) []string {
	var rows []string
	in := false
	for _, line := range strings.Split(doc, "\n") {
		switch {
		case strings.HasPrefix(line, "|---"):
			in = true
		case in && strings.HasPrefix(line, "| "):
			rows = append(rows, line)
		case in:
			return rows
		}
	}
	return rows
}

// mergeRows replaces the rows of figs among rows, by figure name, and adds
// the others at the end.
func mergeRows(rows []string, figs []figure) []string {
	name := func(row string) string {
		cells := strings.SplitN(row, " | ", 2)
		return strings.TrimPrefix(cells[0], "| ")
	}
	out := slices.Clone(rows)
	for _, f := range figs {
		if i := slices.IndexFunc(out, func(r string) bool { return name(r) == f.name }); i >= 0 {
			out[i] = f.row()
		} else {
			out = append(out, f.row())
		}
	}
	return out
}

// partialHeader says in header that the rows of -figures partial were
// measured again on day, replacing what an earlier run of the same figures
// said.
func partialHeader(header, partial string, day time.Time) string {
	sentence := fmt.Sprintf(" The rows of `-figures %s` were measured again on ", partial)
	for {
		i := strings.Index(header, sentence)
		if i < 0 {
			break
		}
		end := strings.Index(header[i+len(sentence):], ".")
		if end < 0 {
			break
		}
		header = header[:i] + header[i+len(sentence)+end+1:]
	}
	return header + sentence + day.Format("2006-01-02") + ".\n"
}
