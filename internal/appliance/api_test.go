package appliance

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/config"
)

// fakeGroup is a provider whose answers the test sets.
type fakeGroup struct {
	self      cluster.Instance
	instances []cluster.Instance
	err       error
	listings  int
}

func (f *fakeGroup) Name() string { return "fake" }
func (f *fakeGroup) Self(context.Context) (cluster.Instance, error) {
	return f.self, nil
}
func (f *fakeGroup) Instances(context.Context) ([]cluster.Instance, error) {
	f.listings++
	return f.instances, f.err
}

func testAppliance(t *testing.T) *Appliance {
	t.Helper()
	cfg := config.NewConfig()
	cfg.DataDir = t.TempDir()
	g := &fakeGroup{self: cluster.Instance{ID: "i-1", Address: "127.0.0.1", State: cluster.InstanceRunning}}
	a := New(Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Identity: g, Group: g,
		EtcdCommand: []string{"etcd"}, EtcdVersion: "3.6.16"})
	a.identified(g.self)
	// The fakes answer for any address: nothing is dialled.
	a.starter.world.reachable = func(_ context.Context, endpoints []string) []string { return endpoints }
	a.setPeer(func(p *cluster.PeerState) {
		p.InstanceID, p.Address, p.PeerURL = "i-1", "127.0.0.1", a.peerURL()
		p.GroupView = []string{"i-1", "i-2"}
	})
	return a
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestPeerEndpointPublishesTheInstanceState(t *testing.T) {
	a := testAppliance(t)
	a.groups.group.(*fakeGroup).instances = []cluster.Instance{
		{ID: "i-1", Address: "127.0.0.1", State: cluster.InstanceRunning},
		{ID: "i-2", Address: "127.0.0.2", State: cluster.InstanceRunning},
	}
	code, body := get(t, a.Handler(), "/v1/peer")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/peer = %d", code)
	}
	var st cluster.PeerState
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	if st.InstanceID != "i-1" || st.PeerURL != "http://127.0.0.1:2380" || len(st.GroupView) != 2 || st.EtcdRunning {
		t.Errorf("peer state = %+v", st)
	}
}

// TestPeerGroupViewFollowsTheListing: /v1/peer's group_view is the group
// as last listed, by any loop; a reader of a view older than
// cluster.SteadyListEvery gets it listed again (a running member that does
// not keep house lists the group for nobody else), and a recent one is
// served as it is.
func TestPeerGroupViewFollowsTheListing(t *testing.T) {
	a := testAppliance(t)
	g := a.groups.group.(*fakeGroup)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	running := func(ids ...string) []cluster.Instance {
		var out []cluster.Instance
		for _, id := range ids {
			out = append(out, cluster.Instance{ID: id, Address: "127.0.0.1", State: cluster.InstanceRunning})
		}
		return out
	}
	view := func() []string {
		t.Helper()
		_, body := get(t, a.Handler(), "/v1/peer")
		var st cluster.PeerState
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("decoding %q: %v", body, err)
		}
		return st.GroupView
	}

	// Housekeeping (or /v1/status) lists the group: the view follows.
	g.instances = running("i-1", "i-2", "i-3")
	if _, err := a.groups.list(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	if got := a.peerState().GroupView; !slices.Equal(got, []string{"i-1", "i-2", "i-3"}) {
		t.Fatalf("group view after a listing = %v", got)
	}

	// i-3 is replaced by i-4 while nobody on this instance lists the group.
	g.instances = running("i-1", "i-2", "i-4")
	if got := view(); !slices.Equal(got, []string{"i-1", "i-2", "i-3"}) || g.listings != 1 {
		t.Errorf("a reader of a recent view got %v after %d listings, want the view as listed once", got, g.listings)
	}
	now = now.Add(cluster.SteadyListEvery)
	waitFor(t, func() bool { return slices.Equal(view(), []string{"i-1", "i-2", "i-4"}) })
}

func TestReadyzFollowsTheMember(t *testing.T) {
	a := testAppliance(t)
	h := a.Handler()
	if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200 while the appliance runs", code)
	}
	if code, _ := get(t, h, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d before etcd runs, want 503", code)
	}
	a.setReady(true)
	if code, _ := get(t, h, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d with a ready member, want 200", code)
	}
}

func TestMetricsExportTheApplianceCounters(t *testing.T) {
	a := testAppliance(t)
	a.metrics.plans.WithLabelValues(string(cluster.Join)).Inc()
	a.metrics.etcdRestarts.WithLabelValues("other").Inc()
	code, body := get(t, a.Handler(), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`etcd_appliance_startup_plans_applied_total{action="join"} 1`,
		`etcd_appliance_etcd_restarts_total{kind="other"} 1`,
		"etcd_appliance_member_removals_total 0",
		"etcd_appliance_is_leader 0",
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestStatusWithoutAnyEndpointSaysSo(t *testing.T) {
	a := testAppliance(t)
	a.groups.group.(*fakeGroup).err = io.ErrUnexpectedEOF
	st := a.Status(context.Background())
	if st.GroupKnown || st.Error == "" || st.Reporter != "i-1" {
		t.Errorf("status = %+v; want an unknown group and an error saying why", st)
	}
}
