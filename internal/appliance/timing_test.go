package appliance

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// TestDecideTiming: the raft timing of a plan comes from the flags, then a
// bootstrap offer, the running members, the data's record, and in
// multi-region mode the round trips to the peers; else etcd's defaults.
func TestDecideTiming(t *testing.T) {
	published := cluster.Timing{HeartbeatMS: 300, ElectionMS: 3000}
	running := map[string]cluster.PeerAnswer{"i-2": {Reachable: true, RTT: 80 * time.Millisecond,
		State: cluster.PeerState{EtcdRunning: true, Timing: &published}}}
	silent := map[string]cluster.PeerAnswer{"i-2": {Reachable: true, RTT: 80 * time.Millisecond}}
	offer := &cluster.BootstrapOffer{Timing: cluster.Timing{HeartbeatMS: 200, ElectionMS: 2000}}
	for _, tc := range []struct {
		name     string
		flags    cluster.Timing
		multi    bool
		recorded *cluster.Timing
		action   cluster.StartupAction
		peers    map[string]cluster.PeerAnswer
		want     cluster.Timing
	}{
		{name: "one region, nothing set: etcd's defaults", action: cluster.Bootstrap, peers: silent},
		{name: "the flags win", flags: cluster.Timing{HeartbeatMS: 50, ElectionMS: 500}, action: cluster.Join,
			peers: running, want: cluster.Timing{HeartbeatMS: 50, ElectionMS: 500}},
		{name: "a member of an offer takes its timing", action: cluster.BootstrapMember, peers: running, want: offer.Timing},
		{name: "a joiner takes the running members'", multi: true, action: cluster.Join, peers: running, want: published},
		{name: "a restart takes the data's", action: cluster.StartOnData, peers: silent,
			recorded: &cluster.Timing{HeartbeatMS: 150, ElectionMS: 1500}, want: cluster.Timing{HeartbeatMS: 150, ElectionMS: 1500}},
		{name: "multi-region seeder derives it from the round trips", multi: true, action: cluster.Bootstrap, peers: silent,
			recorded: &cluster.Timing{HeartbeatMS: 150, ElectionMS: 1500}, want: cluster.DeriveTiming(80 * time.Millisecond)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testAppliance(t)
			a.cfg.HeartbeatInterval = time.Duration(tc.flags.HeartbeatMS) * time.Millisecond
			a.cfg.ElectionTimeout = time.Duration(tc.flags.ElectionMS) * time.Millisecond
			if tc.multi {
				a.cfg.Regions = []string{"eu-west-1", "us-east-1"}
			}
			if tc.recorded != nil {
				if err := writeFileJSON(a.data.timingFile(), *tc.recorded); err != nil {
					t.Fatal(err)
				}
			}
			in := cluster.StartupInputs{Peers: tc.peers}
			plan := cluster.StartupPlan{Action: tc.action}
			if tc.action == cluster.BootstrapMember {
				plan.Offer = offer
			}
			if got := a.starter.decideTiming(in, plan); got != tc.want {
				t.Errorf("decideTiming = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestLaunchRecordsAndPublishesTiming: etcd gets the timing as flags, the
// data records it and /v1/peer publishes it.
func TestLaunchRecordsAndPublishesTiming(t *testing.T) {
	a := testAppliance(t)
	timing := cluster.Timing{HeartbeatMS: 120, ElectionMS: 1200}
	a.setTiming(timing)
	l := &launcher{node: a.node, etcdCmd: []string{"/bin/true"},
		current: etcdRelease{Version: "3.6.16", Command: []string{"/bin/true"}}}
	spec := l.spec(cluster.Launch{Timing: timing})
	if spec.HeartbeatMS != 120 || spec.ElectionMS != 1200 {
		t.Fatalf("spec timing %d/%d", spec.HeartbeatMS, spec.ElectionMS)
	}
	proc, err := l.launch(context.Background(), cluster.LaunchOnData(a.self.ID, a.peerURL(), "tok"))
	if err != nil {
		t.Fatal(err)
	}
	<-proc.Done()
	// The launch keeps a copy of the etcd in the data dir in the
	// background: wait for it, so the test's temp dir goes cleanly.
	waitFor(t, func() bool {
		r, ok, _ := a.data.lastRelease()
		return ok && len(r.Command) > 0
	})
	if got, ok := a.data.recordedTiming(); !ok || got != timing {
		t.Errorf("recorded %+v, %v; want %+v", got, ok, timing)
	}
	if p := a.peerState(); p.Timing == nil || *p.Timing != timing {
		t.Errorf("published %+v, want %+v", p.Timing, timing)
	}
}

// TestAskPeerTimesTheRoundTrip: the round trip excludes the connection's
// setup and is within the request's duration.
func TestAskPeerTimesTheRoundTrip(t *testing.T) {
	a := testAppliance(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"instance_id":"i-2"}`))
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	a.ports.API = n
	start := time.Now()
	st, rtt, err := a.starter.world.askPeer(context.Background(), host)
	took := time.Since(start)
	if err != nil || st.InstanceID != "i-2" {
		t.Fatalf("askPeer = %+v, %v", st, err)
	}
	if rtt <= 0 || rtt > took {
		t.Errorf("rtt %s, want within (0, %s]", rtt, took)
	}
}
