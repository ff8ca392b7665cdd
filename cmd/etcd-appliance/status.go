package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// Exit codes of `etcd-appliance status`, for scripts and runbooks.
const (
	statusHealthy     = 0 // every member a healthy voter, a leader, nothing waited for
	statusDegraded    = 1 // an answer, with problems (the cluster may still serve)
	statusUnreachable = 2 // no appliance API answered (or the command line is wrong)
)

// statusPoll is how often --wait-healthy asks again.
const statusPoll = time.Second

// runStatus is `etcd-appliance status`.
func runStatus(ctx context.Context, args []string) int {
	return statusCommand(ctx, args, os.Stdout, os.Stderr)
}

func statusCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status")
	fs.SetOutput(stderr)
	api := fs.String("api", os.Getenv("ETCD_APPLIANCE_API"), "appliance API, e.g. 10.0.1.5:2378 or http://10.0.1.5:2378 (default: this host's addresses on port 2378)")
	setEnvOf(fs, "api", "ETCD_APPLIANCE_API")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for an answer")
	waitHealthy := fs.Duration("wait-healthy", 0, "ask again every second until the cluster is healthy, for at most this long (exit 0 once healthy)")
	var stls statusTLS
	stls.register(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code // 2 is statusUnreachable, as for any bad command line
	}
	hc, err := stls.client(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "etcd-appliance status: %v\n", err)
		return statusUnreachable // as for any bad command line
	}
	var candidates []string
	if *api == "" {
		candidates = stls.withScheme(localAPIs(defaultAPIPort))
	} else {
		if stls.on() && !strings.Contains(*api, "://") {
			*api = "https://" + *api
		}
		base, err := apiBase(*api)
		if err != nil {
			fmt.Fprintf(stderr, "etcd-appliance status: --api %q: %v\n", *api, err)
			return statusUnreachable // as for any bad command line
		}
		candidates = []string{base}
	}
	deadline := time.Now().Add(*waitHealthy)
	for {
		st, err := askStatus(ctx, hc, candidates, *timeout)
		code := statusCode(st, err)
		if code == statusHealthy || !time.Now().Before(deadline) || !sleepCtx(ctx, statusPoll) {
			reportStatus(stdout, stderr, st, err, *asJSON)
			return code
		}
	}
}

// defaultAPIPort is the appliance API's port when --api-port is not set.
const defaultAPIPort = 2378

// apiBase is the URL of the appliance API that --api names: a URL, or a
// host (or host:port) without a scheme, as etcdctl's endpoints may be
// given; a missing port is the default one.
func apiBase(api string) (string, error) {
	if !strings.Contains(api, "://") {
		api = "http://" + api
	}
	u, err := url.Parse(api)
	switch {
	case err != nil:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("not a URL (%v): want host:port or http://host:port", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("scheme %q: want http:// or https://", u.Scheme)
	case u.Hostname() == "":
		return "", errors.New("no host: want host:port or http://host:port")
	case u.Port() == "":
		u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(defaultAPIPort))
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

// askStatus asks the candidates in turn; the first answer wins.
func askStatus(ctx context.Context, hc *http.Client, candidates []string, timeout time.Duration) (cluster.ClusterStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var errs []error
	for _, base := range candidates {
		st, err := fetchStatus(ctx, hc, base)
		if err == nil {
			return st, nil
		}
		errs = append(errs, err)
	}
	return cluster.ClusterStatus{}, fmt.Errorf("no appliance API answered (tried %s): %w", strings.Join(candidates, ", "), errors.Join(errs...))
}

func statusCode(st cluster.ClusterStatus, err error) int {
	switch {
	case err != nil:
		return statusUnreachable
	case len(st.Problems()) > 0:
		return statusDegraded
	default:
		return statusHealthy
	}
}

func reportStatus(stdout, stderr io.Writer, st cluster.ClusterStatus, err error, asJSON bool) {
	if err != nil {
		fmt.Fprintf(stderr, "etcd-appliance status: %v\n", err)
		return
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	} else {
		printStatus(stdout, st)
	}
	if problems := st.Problems(); len(problems) > 0 {
		fmt.Fprintf(stderr, "degraded: %s\n", strings.Join(problems, "; "))
	}
}

// sleepCtx waits d, or less when ctx ends first (then it reports false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func countVoters(st cluster.ClusterStatus) int {
	n := 0
	for _, m := range st.Members {
		if m.Role == cluster.RoleVoter {
			n++
		}
	}
	return n
}

// localAPIs lists the API URLs on this host's own addresses.
func localAPIs(port int) []string {
	var out, loopback []string
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		u := "http://" + net.JoinHostPort(ipn.IP.String(), fmt.Sprint(port))
		if ipn.IP.IsLoopback() {
			loopback = append(loopback, u)
		} else {
			out = append(out, u)
		}
	}
	return append(out, loopback...)
}

func fetchStatus(ctx context.Context, hc *http.Client, base string) (cluster.ClusterStatus, error) {
	var st cluster.ClusterStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/v1/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s: %s", req.URL, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("%s: %w", req.URL, err)
	}
	return st, nil
}

// printStatus writes the human table of a cluster status.
func printStatus(w io.Writer, st cluster.ClusterStatus) {
	fmt.Fprintf(w, "cluster %s, reported by %s at %s\n", st.ClusterID, st.Reporter, st.ObservedAt.Format(time.RFC3339))
	if st.Error != "" {
		fmt.Fprintf(w, "warning: %s\n", st.Error)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tNAME\tROLE\tHEALTH\tLEADER\tREVISION\tRAFT INDEX\tIN GROUP\tCLIENT URL")
	for _, m := range st.Members {
		health := "healthy"
		if !m.Healthy {
			health = "unhealthy"
		}
		if len(m.Alarms) > 0 {
			health = "alarm: " + strings.Join(m.Alarms, ",")
		}
		leader := ""
		if m.Leader {
			leader = "*"
		}
		name := m.Name
		if name == "" {
			name = "(unstarted)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%t\t%s\n", m.ID, name, m.Role, health, leader, m.Revision, m.RaftIndex, m.InGroup, m.ClientURL)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d of %d voters healthy\n", st.HealthyVoters(), countVoters(st))
	if st.LastExit != "" {
		fmt.Fprintf(w, "etcd on %s last exited: %s\n", st.Reporter, st.LastExit)
	}
	if st.Waiting != "" {
		fmt.Fprintf(w, "%s waits: %s\n", st.Reporter, st.Waiting)
	}
	if t := st.TLS; t != nil {
		fmt.Fprintf(w, "TLS of %s: trusts CAs %s, its etcd %s, serves a certificate of %s (until %s)", st.Reporter,
			strings.Join(shortAll(t.Trusted), ","), strings.Join(shortAll(t.EtcdTrusted), ","),
			cluster.ShortFingerprint(t.CertificateIssuer), t.CertificateNotAfter.Format(time.RFC3339))
		if t.Rotation != "" {
			fmt.Fprintf(w, "; CA rotation: %s", t.Rotation)
		}
		fmt.Fprintln(w)
	}
	for _, u := range st.Unanswered {
		if u.Ignored != "" {
			fmt.Fprintf(w, "instance %s (%s) answers and is ignored (for %s): it %s\n", u.Instance, u.Address,
				st.ObservedAt.Sub(u.Since).Round(time.Second), u.Ignored)
			continue
		}
		fmt.Fprintf(w, "instance %s (%s) has not answered for %s\n", u.Instance, u.Address, st.ObservedAt.Sub(u.Since).Round(time.Second))
	}
}
