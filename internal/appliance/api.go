package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// serveAPI starts the appliance API on the instance's address.
func (a *Appliance) serveAPI() (*http.Server, error) {
	addr := net.JoinHostPort(a.bindAddress(), portString(a.ports.API))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for the appliance API on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("appliance API stopped", "err", err)
		}
	}()
	return srv, nil
}

// Handler serves /v1/peer, /v1/status, /healthz, /readyz and /metrics.
func (a *Appliance) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/peer", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.peerState())
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		writeJSON(w, http.StatusOK, a.Status(ctx))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !a.isReady() {
			http.Error(w, "etcd member not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.registry, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Status is the whole-cluster health view: the member list from the local
// etcd when it runs, else from the group's instances, each member's status,
// and whether its instance is in the group.
func (a *Appliance) Status(ctx context.Context) cluster.ClusterStatus {
	st := cluster.ClusterStatus{Reporter: a.self.ID, ObservedAt: a.now().UTC()}
	group, gerr := a.listGroup(ctx, a.cfg.ReconcileInterval)
	st.GroupKnown, st.Group = gerr == nil, group

	endpoints := []string{a.clientURL()}
	if !a.peerState().EtcdRunning {
		endpoints = nil
		for _, inst := range group {
			if inst.State.InGroup() {
				endpoints = append(endpoints, a.ports.ClientURL("http", inst.Address))
			}
		}
	}
	if len(endpoints) == 0 {
		st.Error = "no etcd endpoint known"
		return st
	}
	c, err := newClient(endpoints)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	defer c.Close()
	view, err := clusterView(ctx, c)
	if err != nil {
		// Without quorum, a serializable list still tells who the members are.
		lctx, cancel := context.WithTimeout(ctx, requestTimout)
		resp, serr := c.MemberList(lctx, clientv3.WithSerializable())
		cancel()
		if serr != nil {
			st.Error = err.Error()
			return st
		}
		st.Error = "no quorum: " + err.Error()
		view = &cluster.ClusterView{ClusterID: cluster.ID(resp.Header.ClusterId), Members: members(resp.Members)}
	}
	st.ClusterID = view.ClusterID
	health := memberHealth(ctx, c, view.Members)
	inGroup := map[string]bool{}
	for _, inst := range group {
		if inst.State.InGroup() {
			inGroup[inst.ID] = true
		}
	}
	for _, m := range view.Members {
		ms := health[m.ID]
		ms.InGroup = inGroup[m.Name]
		if ms.Leader {
			st.Leader = m.ID
		}
		st.Members = append(st.Members, ms)
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Name < st.Members[j].Name })
	return st
}
