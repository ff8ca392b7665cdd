package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// requestTimeout bounds every call to an appliance API.
const requestTimeout = 6 * time.Second

var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// get calls the appliance API of inst and returns the status code and body.
func (g *Group) get(ctx context.Context, inst *Instance, path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, inst.APIURL()+path, nil)
	if err != nil {
		return 0, nil, err
	}
	hc := httpClient
	if !inst.plain.Load() {
		// A plaintext instance of a TLS group needs no credentials.
		if hc, err = g.apiClient(ctx, path); err != nil {
			return 0, nil, err
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, b, err
}

func (g *Group) getJSON(ctx context.Context, id, path string, v any) error {
	inst, err := g.lookup(id)
	if err != nil {
		return err
	}
	code, b, err := g.get(ctx, inst, path)
	if err != nil {
		return fmt.Errorf("GET %s of %s: %w", path, inst, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s of %s: status %d: %s", path, inst, code, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s of %s: decoding %q: %w", path, inst, b, err)
	}
	return nil
}

// Peer returns what an instance publishes on GET /v1/peer.
func (g *Group) Peer(ctx context.Context, id string) (cluster.PeerState, error) {
	var ps cluster.PeerState
	err := g.getJSON(ctx, id, "/v1/peer", &ps)
	return ps, err
}

// StatusOf returns an instance's whole-cluster view, GET /v1/status.
func (g *Group) StatusOf(ctx context.Context, id string) (cluster.ClusterStatus, error) {
	var st cluster.ClusterStatus
	err := g.getJSON(ctx, id, "/v1/status", &st)
	return st, err
}

// Status returns the whole-cluster view of the first running instance that
// can read the member list; failing that, the last answer or error.
func (g *Group) Status(ctx context.Context) (cluster.ClusterStatus, error) {
	var last cluster.ClusterStatus
	lastErr := fmt.Errorf("fleet: no appliance %w", ErrNotRunning)
	for _, inst := range g.Running() {
		st, err := g.StatusOf(ctx, inst.ID)
		if err != nil {
			lastErr = err
			continue
		}
		if st.Error == "" {
			return st, nil
		}
		last, lastErr = st, nil
	}
	return last, lastErr
}

// Ready reports whether an instance's GET /readyz answers 200.
func (g *Group) Ready(ctx context.Context, id string) (bool, error) {
	inst, err := g.lookup(id)
	if err != nil {
		return false, err
	}
	code, _, err := g.get(ctx, inst, "/readyz")
	if err != nil {
		return false, err
	}
	return code == http.StatusOK, nil
}

// Get calls any path of an instance's appliance API (for /metrics and the
// like) and returns the status code and body.
func (g *Group) Get(ctx context.Context, id, path string) (int, []byte, error) {
	inst, err := g.lookup(id)
	if err != nil {
		return 0, nil, err
	}
	return g.get(ctx, inst, path)
}

// WaitConverged polls until the cluster is exactly the running instances of
// the group: every one of them reports, on /v1/status, the same cluster with
// exactly voters members, all started, healthy voters in the group, one
// leader, and member names equal to the running instances' ids. It returns
// the status of the first instance. When ctx ends first, the error
// describes what each instance reported last.
func (g *Group) WaitConverged(ctx context.Context, voters int) (cluster.ClusterStatus, error) {
	return g.waitConvergedAmong(ctx, voters, g.RunningInGroup)
}

// waitConvergedAmong is WaitConverged over the instances that members
// returns at each look: the running instances that the group counts in.
func (g *Group) waitConvergedAmong(ctx context.Context, voters int, members func() ([]*Instance, error)) (cluster.ClusterStatus, error) {
	var last convergence
	err := Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		last = g.converged(ctx, voters, members)
		return last.ok, last.reason
	})
	if err != nil {
		return last.first, fmt.Errorf("fleet: group %s did not converge to %d healthy voters: %s\nlast views:\n  %s",
			g.opts.Name, voters, last.reason, strings.Join(last.views, "\n  "))
	}
	return last.first, nil
}

// convergence is one look at the group by WaitConverged.
type convergence struct {
	ok     bool
	reason string
	first  cluster.ClusterStatus
	// views has one line per running instance: its status or its error.
	views []string
}

// converged checks the convergence condition of WaitConverged once, asking
// every instance that members returns.
func (g *Group) converged(ctx context.Context, voters int, members func() ([]*Instance, error)) convergence {
	var c convergence
	running, err := members()
	if err != nil {
		c.reason = err.Error()
		return c
	}
	want := ids(running)
	slices.Sort(want)
	if len(want) != voters {
		c.reason = fmt.Sprintf("%d instances run in the group (%s), want %d", len(want), strings.Join(want, ", "), voters)
	}
	// Ask everyone concurrently: a slow answer must not hide the others.
	statuses := make([]cluster.ClusterStatus, len(running))
	errs := make([]error, len(running))
	var wg sync.WaitGroup
	for k, inst := range running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[k], errs[k] = g.StatusOf(ctx, inst.ID)
		}()
	}
	wg.Wait()
	for k, inst := range running {
		st, err := statuses[k], errs[k]
		if err != nil {
			c.views = append(c.views, fmt.Sprintf("%s: %v", inst.ID, err))
			if c.reason == "" {
				c.reason = err.Error()
			}
			continue
		}
		c.views = append(c.views, Summarize(st))
		if k == 0 {
			c.first = st
		}
		if c.reason != "" {
			continue
		}
		if why := checkStatus(st, want); why != "" {
			c.reason = fmt.Sprintf("%s reports: %s", inst.ID, why)
		} else if st.ClusterID != statuses[0].ClusterID {
			c.reason = fmt.Sprintf("%s reports cluster %s but %s reports cluster %s",
				inst.ID, st.ClusterID, running[0].ID, statuses[0].ClusterID)
		}
	}
	c.ok = c.reason == ""
	return c
}

func checkStatus(st cluster.ClusterStatus, want []string) string {
	if st.Error != "" {
		return "error: " + st.Error
	}
	if st.ClusterID == 0 {
		return "no cluster id"
	}
	var names []string
	leaders := 0
	for _, m := range st.Members {
		switch {
		case m.Role != cluster.RoleVoter:
			return fmt.Sprintf("member %s (%s) is a %s", m.ID, m.Name, m.Role)
		case !m.Healthy:
			return fmt.Sprintf("member %s (%s) is unhealthy: %s", m.ID, m.Name, m.Error)
		case !m.InGroup:
			return fmt.Sprintf("member %s (%s) is not in the group", m.ID, m.Name)
		}
		if m.Leader {
			leaders++
		}
		names = append(names, m.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		return fmt.Sprintf("members are [%s], want [%s]", strings.Join(names, ", "), strings.Join(want, ", "))
	}
	if leaders != 1 || st.Leader == 0 {
		return fmt.Sprintf("%d members say they lead, leader field %s", leaders, st.Leader)
	}
	return ""
}

// Summarize renders a status on one line for errors and progress output.
func Summarize(st cluster.ClusterStatus) string {
	if st.Reporter == "" && st.ClusterID == 0 && len(st.Members) == 0 {
		return "(none)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "from %s: cluster %s, leader %s", st.Reporter, st.ClusterID, st.Leader)
	if st.Error != "" {
		fmt.Fprintf(&b, ", error %q", st.Error)
	}
	for _, m := range st.Members {
		health := "unhealthy"
		if m.Healthy {
			health = "healthy"
		}
		fmt.Fprintf(&b, "; %s %s %s %s rev %d", m.Name, m.ID, m.Role, health, m.Revision)
		if m.Leader {
			b.WriteString(" leader")
		}
		if !m.InGroup {
			b.WriteString(" not-in-group")
		}
		if m.Error != "" {
			fmt.Fprintf(&b, " (%s)", m.Error)
		}
	}
	return b.String()
}

// Client returns an etcd client over the client URLs of the given
// instances, or of every running instance of the group when none is given.
// The caller closes it.
func (g *Group) Client(ctx context.Context, ids ...string) (*clientv3.Client, error) {
	var endpoints []string
	if len(ids) == 0 {
		running, err := g.RunningInGroup()
		if err != nil {
			return nil, err
		}
		for _, inst := range running {
			endpoints = append(endpoints, inst.ClientURL())
		}
	}
	for _, id := range ids {
		inst, err := g.lookup(id)
		if err != nil {
			return nil, err
		}
		endpoints = append(endpoints, inst.ClientURL())
	}
	if len(endpoints) == 0 {
		return nil, errors.New("fleet: no running instance to connect to")
	}
	tc, err := g.ClientTLS(ctx)
	if err != nil {
		return nil, err
	}
	c, err := clientv3.New(clientv3.Config{
		TLS:         tc,
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		Context:     context.WithoutCancel(ctx),
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: etcd client for %v: %w", endpoints, err)
	}
	return c, nil
}
