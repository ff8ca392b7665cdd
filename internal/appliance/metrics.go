package appliance

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the appliance's own; etcd exports its own on the metrics port.
type metrics struct {
	registry     *prometheus.Registry
	etcdRestarts *prometheus.CounterVec
	plans        *prometheus.CounterVec
	removals     prometheus.Counter
	members      *prometheus.GaugeVec
	leader       prometheus.Gauge
	housekeeping prometheus.Counter
	dnsChanges   prometheus.Counter
}

func newMetrics(registry *prometheus.Registry) *metrics {
	if registry == nil {
		registry = prometheus.NewRegistry()
	}
	m := &metrics{
		registry: registry,
		etcdRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_appliance_etcd_restarts_total",
			Help: "Exits of the etcd child that the appliance restarted from, by why etcd exited.",
		}, []string{"kind"}),
		plans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_appliance_startup_plans_applied_total",
			Help: "Startup plans applied, by action.",
		}, []string{"action"}),
		removals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_appliance_member_removals_total",
			Help: "Members removed by this appliance (stale members, its own old member, itself when leaving).",
		}),
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "etcd_appliance_members",
			Help: "Cluster members by role, as the leader saw them in its last housekeeping cycle.",
		}, []string{"role"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcd_appliance_is_leader",
			Help: "1 when this instance's etcd is the leader.",
		}),
		housekeeping: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_appliance_housekeeping_cycles_total",
			Help: "Housekeeping cycles run as the leader.",
		}),
		dnsChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_appliance_dns_changes_total",
			Help: "DNS change batches sent because the started, healthy members changed.",
		}),
	}
	m.registry.MustRegister(m.etcdRestarts, m.plans, m.removals, m.members, m.leader, m.housekeeping, m.dnsChanges,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
