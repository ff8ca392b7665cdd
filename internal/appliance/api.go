package appliance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// peerViewWait bounds how long /v1/peer waits for a fresh listing of the
// group (groupLister.freshen) while the instance's etcd runs: peers ask
// with a 1 s deadline. The wait never lengthens a round trip that raft
// timing is derived from: a running member publishes its timing, which a
// planning peer takes instead of deriving one. (An instance without etcd
// plans, and lists the group every second, itself.)
const peerViewWait = 300 * time.Millisecond

// api is the appliance's HTTP API: what peers read to plan (/v1/peer) and
// what operators and load balancers read.
type api struct {
	*node
	etcdVersion string
}

// serve starts the appliance API on the instance's address.
func (a *api) serve() (*http.Server, error) {
	addr := apiAddress(a.bindAddress(), a.ports.API)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for the appliance API: %w", apiListenError(addr, err))
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	if a.tls != nil {
		ln = tls.NewListener(ln, pki.APIServerTLS(a.tls.creds))
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("appliance API stopped", "err", err)
		}
	}()
	return srv, nil
}

// Handler serves /v1/peer, /v1/status, /healthz, /readyz and /metrics.
func (a *Appliance) Handler() http.Handler { return a.api.handler() }

func (a *api) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/peer", func(w http.ResponseWriter, r *http.Request) {
		wait := time.Duration(0)
		if a.peerState().EtcdRunning {
			wait = peerViewWait
		}
		a.groups.freshen(r.Context(), cluster.SteadyListEvery, wait)
		writeJSON(w, http.StatusOK, a.peerState())
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		writeJSON(w, http.StatusOK, a.status(ctx))
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
	return a.authorize(mux)
}

// authorize admits requests by path when TLS is on (SPEC §4.8): /v1/peer,
// and any other /v1/ path, only from a member of the cluster, since its
// answers decide bootstraps and recoveries; /v1/status from any certificate
// of the cluster CA, a user's too, since it is read-only and operators need
// it; /metrics, /healthz and /readyz from anyone who speaks TLS, so that
// Prometheus and load balancers need no client certificate. The TLS layer
// verified the certificate shown, if any (pki.APIServerTLS).
func (a *api) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.tls == nil || !strings.HasPrefix(r.URL.Path, "/v1/") {
			next.ServeHTTP(w, r)
			return
		}
		var chains [][]*x509.Certificate
		if r.TLS != nil {
			chains = r.TLS.VerifiedChains
		}
		trust := a.tls.creds.Trust()
		switch {
		case r.URL.Path == "/v1/status" && pki.IsClusterCertificate(chains, trust):
		case pki.IsMemberCertificate(chains, trust):
		case r.URL.Path == "/v1/status":
			http.Error(w, "a certificate of the cluster CA is required", http.StatusForbidden)
			return
		default:
			http.Error(w, "a member certificate of the cluster CA is required", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// peerStatusWait bounds how long the status of an instance whose etcd does
// not run waits for its peers' etcd.
const peerStatusWait = 2 * time.Second

// Status is the whole-cluster health view: the member list from the local
// etcd when it runs, else from the group's instances, each member's status,
// and whether its instance is in the group.
func (a *Appliance) Status(ctx context.Context) cluster.ClusterStatus { return a.api.status(ctx) }

func (a *api) status(ctx context.Context) cluster.ClusterStatus {
	st := cluster.ClusterStatus{Reporter: a.self.ID, ObservedAt: a.now().UTC(), TLS: a.tlsStatus()}
	peer := a.peerState()
	st.LastExit = peer.LastExit
	if !peer.HasLeader {
		st.Waiting, st.Unanswered = a.waitingFor()
	}
	group, gerr := a.groups.list(ctx, a.cfg.ReconcileInterval)
	st.GroupKnown, st.Group = gerr == nil, group

	endpoints := []string{a.clientURL()}
	skipped := 0
	if !peer.EtcdRunning {
		// The peers' etcd, read for an instance whose own does not run:
		// a live cluster answers within milliseconds, and one that does
		// not (a scheme this instance does not speak, a lost quorum) must
		// not hold the status for the requests' timeouts.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, peerStatusWait)
		defer cancel()
		endpoints = nil
		// A peer whose API speaks the other scheme runs its etcd in it
		// too: not worth a dial that cannot succeed.
		otherScheme := map[string]bool{}
		_, unanswered := a.waitingFor()
		for _, u := range unanswered {
			otherScheme[u.Instance] = u.Ignored == cluster.PeerRunsTLS || u.Ignored == cluster.PeerRunsPlaintext
		}
		for _, inst := range group {
			switch {
			case !inst.State.InGroup(), inst.ID == a.self.ID:
				// Its own etcd does not run.
			case otherScheme[inst.ID]:
				skipped++
			default:
				endpoints = append(endpoints, a.ports.ClientURL(a.peerScheme(), inst.Address))
			}
		}
	}
	if len(endpoints) == 0 {
		st.Error = "no etcd endpoint known"
		if skipped > 0 {
			st.Error = "no etcd endpoint this instance can read: its peers run with another --tls"
		}
		return st
	}
	c, err := a.dial(endpoints)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	defer c.Close()
	view, err := c.Members(ctx)
	if err != nil {
		// Without quorum, a serializable list still tells who the members are.
		local, lerr := c.LocalMembers(ctx)
		if lerr != nil {
			st.Error = err.Error()
			return st
		}
		st.Error = "no quorum: " + err.Error()
		view = local
	}
	st.ClusterID = view.ClusterID
	health := memberHealth(ctx, c, view.Members, group)
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
