package etcdflags

import (
	"flag"
	"strings"
	"testing"
)

func TestCheckAcceptsEtcdsOwnFlags(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"--snapshot-count=5000", "--max-txn-ops=256"},
		{"--snapshot-count", "5000", "--heartbeat-interval=200", "--election-timeout", "2000"},
		{"-snapshot-count=5000"},                // etcd's flag package takes one dash too
		{"--enable-pprof", "--log-level=debug"}, // a bool flag without a value
		{"--enable-pprof=false", "--quota-backend-bytes=1024"},
		{"--discovery-fallback=proxy", "--v2-deprecation=write-only"}, // etcdmain's, not embed's
		{"--feature-gates=StopGRPCServiceOnDefrag=true"},
	} {
		if err := Check(args, true); err != nil {
			t.Errorf("Check(%q) = %v, want nil", args, err)
		}
	}
}

// TestCheckRefuses: each bad extra flag is refused with a message naming
// it, the value when that is at fault, and why.
func TestCheckRefuses(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"--snapshot-cnt=5000"}, []string{`--etcd-flag "--snapshot-cnt=5000"`, "has no flag --snapshot-cnt", "bundled etcd 3."}},
		{[]string{"--snapshot-count=many"}, []string{`"--snapshot-count=many"`, `etcd's --snapshot-count does not take "many"`}},
		{[]string{"--max-txn-ops", "-1"}, []string{`"--max-txn-ops -1"`, `does not take "-1"`}},
		{[]string{"--snapshot-count=5", "--max-txn-ops"}, []string{`"--max-txn-ops"`, "needs a value"}},
		{[]string{"--max-txn-ops", "lots"}, []string{`"--max-txn-ops lots"`, `does not take "lots"`}},
		{[]string{"--enable-pprof=perhaps"}, []string{`does not take "perhaps"`}},
		{[]string{"--discovery-fallback=retry"}, []string{`does not take "retry"`, "exit, proxy"}},
		{[]string{"--feature-gates=NoSuchGate=true"}, []string{"--feature-gates", "NoSuchGate"}},
		{[]string{"--snapshot-count=5", "stray"}, []string{`"stray": is not a flag`}},
		{[]string{"--enable-pprof", "false"}, []string{`"false": is not a flag`}},
		{[]string{"---x"}, []string{"is not a flag"}},
		{[]string{"--name=x"}, []string{`"--name=x"`, "the appliance sets --name itself", "instance's id"}},
		{[]string{"--name", "x"}, []string{`"--name"`, "the appliance sets --name itself"}},
		{[]string{"--data-dir=/x"}, []string{"sets --data-dir itself"}},
		{[]string{"--initial-cluster=a=http://a:2380"}, []string{"sets --initial-cluster itself", "bootstraps"}},
		{[]string{"--initial-cluster-state=new"}, []string{"sets --initial-cluster-state itself"}},
		{[]string{"--initial-cluster-token=t"}, []string{"sets --initial-cluster-token itself"}},
		{[]string{"--initial-advertise-peer-urls=http://x:2380"}, []string{"sets --initial-advertise-peer-urls itself"}},
		{[]string{"--listen-client-urls=http://0.0.0.0:2379"}, []string{"sets --listen-client-urls itself", "--client-port"}},
		{[]string{"--listen-metrics-urls=http://x:1"}, []string{"sets --listen-metrics-urls itself"}},
		{[]string{"--advertise-client-urls=http://x:2379"}, []string{"sets --advertise-client-urls itself"}},
		{[]string{"--force-new-cluster"}, []string{"sets --force-new-cluster itself", "lost quorum"}},
		{[]string{"--config-file=/etc/etcd.yaml"}, []string{"ignore its command line"}},
		{[]string{"--version"}, []string{"print and exit"}},
	} {
		err := Check(tt.args, true)
		if err == nil {
			t.Errorf("Check(%q) = nil, want an error", tt.args)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Check(%q) = %q, lacks %q", tt.args, err, w)
			}
		}
	}
}

// TestCheckReportsEveryProblemOnce: a flag and its value are one problem.
func TestCheckReportsEveryProblemOnce(t *testing.T) {
	err := Check([]string{"--snapshot-cnt", "5000", "--name", "x", "--max-txn-ops=lots", "--snapshot-count=1"}, true)
	if err == nil {
		t.Fatal("Check = nil")
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != 3 {
		t.Errorf("Check = %d problems, want 3 (--snapshot-cnt, --name, --max-txn-ops):\n%v", len(lines), err)
	}
}

// TestCheckOfAnExternalEtcd: another version may know other flags; the
// appliance's own are refused all the same.
func TestCheckOfAnExternalEtcd(t *testing.T) {
	if err := Check([]string{"--flag-of-etcd-3.8=x", "--other", "value", "--snapshot-count=many"}, false); err != nil {
		t.Errorf("Check of an external etcd's flags = %v, want nil", err)
	}
	err := Check([]string{"--unknown", "v", "--data-dir", "/x", "--listen-peer-urls=http://x:1"}, false)
	if err == nil || strings.Count(err.Error(), "\n") != 1 || !strings.Contains(err.Error(), "--data-dir itself") ||
		!strings.Contains(err.Error(), "--listen-peer-urls itself") {
		t.Errorf("Check of an external etcd's flags = %v, want --data-dir and --listen-peer-urls refused", err)
	}
}

// TestBundledFlagsAreEtcds: the flag set is the bundled etcd's, etcdmain's
// additions included.
func TestBundledFlagsAreEtcds(t *testing.T) {
	fs := BundledFlags()
	for _, name := range []string{"name", "data-dir", "snapshot-count", "max-txn-ops", "heartbeat-interval",
		"quota-backend-bytes", "initial-cluster-state", "discovery-fallback", "version", "feature-gates"} {
		if fs.Lookup(name) == nil {
			t.Errorf("--%s is missing", name)
		}
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n < 80 {
		t.Errorf("only %d flags: not etcd's flag set", n)
	}
}
