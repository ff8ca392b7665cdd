package appliance

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// buildInfo is what etcd_appliance_build_info says of the running binary.
type buildInfo struct {
	// Version is the appliance's; EtcdVersion that of the etcd it runs.
	Version, EtcdVersion string
}

// The outcomes etcd_appliance_snapshots_total counts.
const (
	snapshotOK      = "ok"
	snapshotFailed  = "failed"
	snapshotSkipped = "skipped"
)

// The sources etcd_appliance_recoveries_total counts.
const (
	recoveredLocalData = "local-data"
	recoveredSnapshot  = "snapshot"
)

// launchHookFailed is the launch hook's result when completing it kept failing.
const launchHookFailed = "failed"

// metrics are the appliance's own; etcd exports its own on the metrics port.
type metrics struct {
	registry     *prometheus.Registry
	etcdRestarts *prometheus.CounterVec
	plans        *prometheus.CounterVec
	removals     prometheus.Counter
	members      *prometheus.GaugeVec
	leader       prometheus.Gauge
	housekeeper  prometheus.Gauge
	housekeeping prometheus.Counter
	dnsChanges   prometheus.Counter
	drainHeld    prometheus.Gauge
	launchHook   *prometheus.CounterVec
	// versionRefused is 1 while the version gate refuses this instance's join.
	versionRefused prometheus.Gauge
	// swaps counts in-place upgrades of this member's etcd by outcome;
	// swapPending is 1 while it runs an older etcd than configured.
	swaps       *prometheus.CounterVec
	swapPending prometheus.Gauge

	recoveries      *prometheus.CounterVec
	lostRevisions   prometheus.Gauge
	badSnapshots    prometheus.Counter
	snapshots       *prometheus.CounterVec
	snapshotLast    prometheus.Gauge
	snapshotSize    prometheus.Gauge
	snapshotSeconds prometheus.Gauge
	// backupInterval is --backup-interval, for the snapshot alert's threshold.
	backupInterval prometheus.Gauge

	waiting waitMetrics
	// cluster are the cluster-level facts every member exports alike.
	cluster *clusterCollector
}

func newMetrics(registry *prometheus.Registry, build buildInfo) *metrics {
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
			Help: "Cluster members by role, as the housekeeper saw them in its last housekeeping cycle.",
		}, []string{"role"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcd_appliance_is_leader",
			Help: "1 when this instance's etcd is the leader.",
		}),
		housekeeper: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcd_appliance_housekeeper",
			Help: "1 when this appliance holds the housekeeper role (an etcd lease election, §4.4).",
		}),
		housekeeping: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_appliance_housekeeping_cycles_total",
			Help: "Housekeeping cycles run as the housekeeper.",
		}),
		dnsChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_appliance_dns_changes_total",
			Help: "DNS change batches sent because the started, healthy members changed.",
		}),
		drainHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcd_appliance_drain_held",
			Help: "1 while this terminating instance holds its lifecycle hook because the rest of the cluster is not at full strength (the drain budget).",
		}),
		versionRefused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcd_appliance_join_version_refused",
			Help: "1 while this instance's join is refused because its etcd is more than one minor ahead of the cluster version, or older than it (the version gate).",
		}),
		swaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_appliance_etcd_swaps_total",
			Help: "In-place upgrades of this member's etcd (the binary replaced, the appliance restarted): swapped, rolled_back (the new etcd did not become a healthy voter), refused (the version gate).",
		}, []string{"outcome"}),
		swapPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcd_appliance_etcd_swap_pending",
			Help: "1 while this member runs the etcd its data last ran with instead of the configured one: waiting for its turn, refused or rolled back.",
		}),
		launchHook: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_appliance_launch_hook_result",
			Help: "How this instance completed its group's launch hook: CONTINUE (a healthy voter), ABANDON (not one within --launch-timeout: the group terminates it), or failed (the call kept failing).",
		}, []string{"result"}),
	}
	m.registry.MustRegister(m.etcdRestarts, m.plans, m.removals, m.members, m.leader, m.housekeeper, m.housekeeping, m.dnsChanges, m.drainHeld,
		m.versionRefused, m.launchHook, m.swaps, m.swapPending,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.addSnapshotMetrics()
	m.waiting = newWaitMetrics(m.registry)
	m.cluster = newClusterCollector()
	m.registry.MustRegister(m.cluster)
	m.registry.MustRegister(buildInfoGauge(build))
	m.bornAtZero()
	return m
}

// buildInfoGauge is etcd_appliance_build_info: 1, with the versions as labels.
func buildInfoGauge(build buildInfo) prometheus.Gauge {
	version := build.Version
	if version == "" {
		version = "dev"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "etcd_appliance_build_info",
		Help: "1, labelled with the appliance's version, the version of the etcd it runs and the Go that built it.",
		ConstLabels: prometheus.Labels{"version": version, "etcd_version": build.EtcdVersion,
			"go_version": runtime.Version()},
	})
	g.Set(1)
	return g
}

// bornAtZero creates every series a labelled counter can count, at 0: a
// series born at its first increment hides that increment from rate() and
// increase(), and an alert on it has nothing to compare until then.
func (m *metrics) bornAtZero() {
	for _, k := range []etcd.ExitKind{etcd.ExitRemoved, etcd.ExitClusterMismatch, etcd.ExitDataCorrupt,
		etcd.ExitNoSpace, etcd.ExitOther} {
		m.etcdRestarts.WithLabelValues(string(k))
	}
	for _, a := range []cluster.StartupAction{cluster.StartMember, cluster.Rejoin, cluster.ReplaceStale,
		cluster.Join, cluster.ResumeJoin, cluster.StartOnData, cluster.Bootstrap, cluster.BootstrapMember,
		cluster.AbandonOffer, cluster.Recover, cluster.Restore} {
		m.plans.WithLabelValues(string(a))
	}
	for _, r := range []string{string(provider.LaunchContinue), string(provider.LaunchAbandon), launchHookFailed} {
		m.launchHook.WithLabelValues(r)
	}
	for _, o := range []string{snapshotOK, snapshotFailed, snapshotSkipped} {
		m.snapshots.WithLabelValues(o)
	}
	for _, s := range []string{recoveredLocalData, recoveredSnapshot} {
		m.recoveries.WithLabelValues(s)
	}
	for _, o := range []string{swapSwapped, swapRolledBack, swapRefused} {
		m.swaps.WithLabelValues(o)
	}
}

// addSnapshotMetrics registers the metrics of snapshots and recovery.
func (m *metrics) addSnapshotMetrics() {
	m.recoveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "etcd_appliance_recoveries_total",
		Help: "Clusters this instance recovered after a quorum loss or restored into a new group, by source (local-data, snapshot).",
	}, []string{"source"})
	m.lostRevisions = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "etcd_appliance_recovery_lost_revisions",
		Help: "Revisions the last recovery by this instance lost: the newest revision known minus the one recovered.",
	})
	m.badSnapshots = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "etcd_appliance_snapshots_unusable_total",
		Help: "Snapshots found corrupt or missing when this instance fetched them.",
	})
	m.snapshots = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "etcd_appliance_snapshots_total",
		Help: "Snapshots taken by this instance as the housekeeper, by outcome (ok, failed, skipped: nothing new to keep).",
	}, []string{"outcome"})
	m.snapshotLast = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "etcd_appliance_snapshot_last_success_timestamp_seconds",
		Help: "When the newest good snapshot this instance uploaded was taken (its age is time() minus this).",
	})
	m.snapshotSize = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "etcd_appliance_snapshot_size_bytes",
		Help: "Size of the newest snapshot this instance uploaded.",
	})
	m.snapshotSeconds = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "etcd_appliance_snapshot_duration_seconds",
		Help: "How long taking, checking and uploading the newest snapshot took.",
	})
	m.backupInterval = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "etcd_appliance_backup_interval_seconds",
		Help: "--backup-interval: a snapshot older than twice this while the revision moved past it is overdue.",
	})
	m.registry.MustRegister(m.recoveries, m.lostRevisions, m.badSnapshots, m.snapshots, m.snapshotLast, m.snapshotSize,
		m.snapshotSeconds, m.backupInterval)
}

// waitMetrics say what holds a startup plan: the group instances that do
// not answer, without which no cluster is created or recovered, and those
// whose answers are ignored because they run with another --tls or CA.
type waitMetrics struct {
	unanswered        prometheus.Gauge
	unansweredSeconds prometheus.Gauge
	ignored           *prometheus.GaugeVec
}

// ignoredLabels are the reason labels of etcd_appliance_peers_ignored.
var ignoredLabels = map[cluster.IgnoredAnswer]string{
	cluster.PeerRunsTLS:       "peer_tls",
	cluster.PeerRunsPlaintext: "peer_plaintext",
	cluster.PeerUntrusted:     "untrusted",
}

// setIgnored exports how many of the unanswered instances answered and
// were ignored, by why.
func (w waitMetrics) setIgnored(unanswered []cluster.Unanswered) {
	counts := map[string]int{}
	for _, u := range unanswered {
		if l, ok := ignoredLabels[u.Ignored]; ok {
			counts[l]++
		}
	}
	for _, l := range ignoredLabels {
		w.ignored.WithLabelValues(l).Set(float64(counts[l]))
	}
}

func newWaitMetrics(registry *prometheus.Registry) waitMetrics {
	w := waitMetrics{
		unanswered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcd_appliance_peers_unanswered",
			Help: "Group instances that did not answer this instance's last look at its peers; while any does not, no cluster is created or recovered.",
		}),
		unansweredSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcd_appliance_peer_unanswered_seconds",
			Help: "How long the longest-silent group instance has not answered (0: every instance answered).",
		}),
	}
	w.ignored = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "etcd_appliance_peers_ignored",
		Help: "Group instances, among the unanswered, whose answer this instance ignored in its last look at its peers, by reason: peer_tls (they run with TLS, this instance without), peer_plaintext (the opposite), untrusted (no member certificate of this instance's cluster CA). Above 0 for long: the instances do not run with the same --tls and CA, and this one joins no cluster across the difference.",
	}, []string{"reason"})
	for _, l := range ignoredLabels {
		w.ignored.WithLabelValues(l)
	}
	registry.MustRegister(w.unanswered, w.unansweredSeconds, w.ignored)
	return w
}
