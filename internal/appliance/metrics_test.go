package appliance

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestBuildInfoNamesTheVersions: one series at 1, an unset version "dev".
func TestBuildInfoNamesTheVersions(t *testing.T) {
	m := newMetrics(nil, buildInfo{Version: "v1.2.3", EtcdVersion: "3.6.16"})
	want := fmt.Sprintf(`# HELP etcd_appliance_build_info 1, labelled with the appliance's version, the version of the etcd it runs and the Go that built it.
# TYPE etcd_appliance_build_info gauge
etcd_appliance_build_info{etcd_version="3.6.16",go_version=%q,version="v1.2.3"} 1
`, runtime.Version())
	if err := testutil.GatherAndCompare(m.registry, strings.NewReader(want), "etcd_appliance_build_info"); err != nil {
		t.Error(err)
	}
	dev := newMetrics(nil, buildInfo{EtcdVersion: "3.6.16"})
	if err := testutil.GatherAndCompare(dev.registry, strings.NewReader(strings.Replace(want, "v1.2.3", "dev", 1)),
		"etcd_appliance_build_info"); err != nil {
		t.Errorf("without a version: %v", err)
	}
}

// TestLabelledCountersExistFromTheFirstScrape: every series a labelled
// counter can count is exported at 0 before anything happened.
func TestLabelledCountersExistFromTheFirstScrape(t *testing.T) {
	families, err := newMetrics(nil, buildInfo{}).registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		metric string
		labels []string
	}{
		{"etcd_appliance_etcd_restarts_total",
			[]string{"removed", "cluster-mismatch", "data-corrupt", "no-space", "other"}},
		{"etcd_appliance_startup_plans_applied_total",
			[]string{"start-member", "rejoin", "replace-stale", "join", "resume-join", "start-on-data", "bootstrap",
				"bootstrap-member", "abandon-offer", "recover", "restore"}},
		{"etcd_appliance_launch_hook_result", []string{"CONTINUE", "ABANDON", "failed"}},
		{"etcd_appliance_snapshots_total", []string{"ok", "failed", "skipped"}},
		{"etcd_appliance_recoveries_total", []string{"local-data", "snapshot"}},
	} {
		got := map[string]float64{}
		for _, f := range families {
			if f.GetName() != c.metric {
				continue
			}
			for _, s := range f.GetMetric() {
				got[s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
			}
		}
		if len(got) != len(c.labels) {
			t.Errorf("%s has %d series %v, want %d", c.metric, len(got), got, len(c.labels))
		}
		for _, l := range c.labels {
			if v, ok := got[l]; !ok || v != 0 {
				t.Errorf("%s{%s}: %v (exported: %v), want 0", c.metric, l, v, ok)
			}
		}
	}
}
