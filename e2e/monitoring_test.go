package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// monitoringDir is the monitoring pack, from e2e/.
const monitoringDir = "../deploy/monitoring"

// synthesized are the series Prometheus makes itself for every target:
// no /metrics shows them.
var synthesized = map[string]bool{"up": true}

// onlyWithTLS are exported by appliances with --tls on only: TestTLSBootstrap
// finds them, TestMonitoringPack's cluster runs without TLS.
var onlyWithTLS = map[string]bool{
	"etcd_appliance_tls_certificate_expiry_timestamp_seconds": true,
	"etcd_appliance_tls_certificate_issued_timestamp_seconds": true,
}

// rulesFile is what the pack's rule files hold.
type rulesFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// monitoringPack is what the rules and the dashboard ask of /metrics.
type monitoringPack struct {
	// uses are the metric names every query names, each with where.
	uses map[string][]string
	// recorded are the recording rules' outputs; alerts the alert names.
	recorded map[string]bool
	alerts   []string
}

// loadMonitoringPack reads every rule file and dashboard of the pack.
func loadMonitoringPack(t *testing.T) monitoringPack {
	t.Helper()
	p := monitoringPack{uses: map[string][]string{}, recorded: map[string]bool{}}
	use := func(expr, where string) {
		for _, name := range promqlMetricNames(expr) {
			p.uses[name] = append(p.uses[name], where)
		}
	}
	rules, err := filepath.Glob(filepath.Join(monitoringDir, "prometheus", "*.rules.yml"))
	if err != nil || len(rules) == 0 {
		t.Fatalf("no rule files in %s/prometheus (%v)", monitoringDir, err)
	}
	for _, path := range rules {
		var f rulesFile
		readYAML(t, path, &f)
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				where := fmt.Sprintf("%s: %s%s", filepath.Base(path), r.Record, r.Alert)
				if r.Expr == "" {
					t.Errorf("%s has no expr", where)
				}
				use(r.Expr, where)
				if r.Record != "" {
					p.recorded[r.Record] = true
				}
				if r.Alert != "" {
					p.alerts = append(p.alerts, r.Alert)
				}
			}
		}
	}
	dashboards, err := filepath.Glob(filepath.Join(monitoringDir, "grafana", "*.json"))
	if err != nil || len(dashboards) == 0 {
		t.Fatalf("no dashboards in %s/grafana (%v)", monitoringDir, err)
	}
	for _, path := range dashboards {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
			Templating struct {
				List []struct {
					Name       string `json:"name"`
					Definition string `json:"definition"`
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		queries := 0
		for _, panel := range d.Panels {
			for _, target := range panel.Targets {
				use(target.Expr, fmt.Sprintf("%s: panel %q", filepath.Base(path), panel.Title))
				queries++
			}
		}
		for _, v := range d.Templating.List {
			if m := labelValuesMetric.FindStringSubmatch(v.Definition); m != nil {
				p.uses[m[1]] = append(p.uses[m[1]], fmt.Sprintf("%s: variable %s", filepath.Base(path), v.Name))
			}
		}
		if queries == 0 {
			t.Errorf("%s has no query", path)
		}
	}
	return p
}

// labelValuesMetric is the metric of a Grafana label_values(metric, label).
var labelValuesMetric = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,`)

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// promqlKeywords are PromQL's words that are no metric, the aggregations
// among them (their "(" may come after a by or without list).
var promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "by": true, "without": true,
	"on": true, "ignoring": true, "group_left": true, "group_right": true, "offset": true, "bool": true,
	"inf": true, "nan": true, "sum": true, "min": true, "max": true, "avg": true, "count": true, "group": true,
	"stddev": true, "stdvar": true, "topk": true, "bottomk": true, "quantile": true, "count_values": true}

// promqlMetricNames lists the metric names a PromQL expression selects:
// its identifiers, less the functions and aggregations (followed by "("),
// the keywords, the label names of by/without/on/ignoring/group_* lists,
// and what stands inside {} (matchers), [] (ranges) and quotes.
func promqlMetricNames(expr string) []string {
	var names []string
	seen := map[string]bool{}
	skipLabelList := false
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end := strings.IndexByte(expr[i+1:], c)
			if end < 0 {
				return names
			}
			i += end + 2
		case c == '{' || c == '[':
			closing := map[byte]byte{'{': '}', '[': ']'}[c]
			j := i + 1
			for j < len(expr) && expr[j] != closing {
				if expr[j] == '"' {
					j += strings.IndexByte(expr[j+1:], '"') + 1
				}
				j++
			}
			i = j + 1
		case c == '(' && skipLabelList:
			i += strings.IndexByte(expr[i:], ')') + 1
			skipLabelList = false
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && (expr[k] == ' ' || expr[k] == '\n' || expr[k] == '\t') {
				k++
			}
			switch {
			case word == "by" || word == "without" || word == "on" || word == "ignoring" ||
				word == "group_left" || word == "group_right":
				skipLabelList = true
			case promqlKeywords[strings.ToLower(word)]:
			case k < len(expr) && expr[k] == '(':
				// a function or an aggregation
			case i > 0 && isDigit(expr[i-1]):
				// a duration's unit or an exponent
			default:
				if !seen[word] {
					seen[word] = true
					names = append(names, word)
				}
			}
			i = j
		case isDigit(c):
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		default:
			i++
		}
	}
	return names
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
func isIdent(c byte) bool { return isIdentStart(c) || isDigit(c) }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func TestPromQLMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`up{job="etcd-appliance"} == 0`, []string{"up"}},
		{`histogram_quantile(0.99, sum by (cluster, instance, le) (rate(etcd_disk_wal_fsync_duration_seconds_bucket[5m])))`,
			[]string{"etcd_disk_wal_fsync_duration_seconds_bucket"}},
		{`max by (cluster) (a_total) - on (cluster) max by (cluster) (b{state=~"x|y", cluster="$cluster"}) > 2 * 1e3`,
			[]string{"a_total", "b"}},
		{`cluster:x:max > 0 and on (cluster) y unless ignoring(instance) group_left(etcd_version) z offset 5m`,
			[]string{"cluster:x:max", "y", "z"}},
		{`sum by (action) (increase(c_total{cluster=~"$cluster"}[$__rate_interval])) > bool 0`, []string{"c_total"}},
		{`time() - max by (cluster) (ts)`, []string{"ts"}},
	} {
		if got := promqlMetricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("promqlMetricNames(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// TestMonitoringPackIsDocumented: every alert has its runbook section in
// docs/operations.md, and every recording rule's output is used.
func TestMonitoringPackIsDocumented(t *testing.T) {
	p := loadMonitoringPack(t)
	raw, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, alert := range p.alerts {
		if !strings.Contains(string(raw), "\n### "+alert+"\n") {
			t.Errorf("alert %s has no runbook section (### %s) in docs/operations.md", alert, alert)
		}
	}
	var used []string
	for name := range p.uses {
		used = append(used, name)
	}
	sort.Strings(used)
	t.Logf("%d metrics used: %s", len(used), strings.Join(used, " "))
	for name := range p.recorded {
		if len(p.uses[name]) == 0 {
			t.Errorf("recording rule %s is used by no alert and no panel", name)
		}
	}
}

// TestMonitoringPack: every metric the rules and the dashboard name is
// exported by a live cluster: the appliances on :2378, etcd on :2381. A
// recording rule's output counts when its rule is in the pack.
func TestMonitoringPack(t *testing.T) {
	p := loadMonitoringPack(t)
	ctx := testContext(t, 3*time.Minute)
	store := t.TempDir()
	g := newGroup(t, "--store", "file://"+store, "--backup-interval", "1s")
	startConverged(t, ctx, g, 3)
	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A written key: the snapshot the housekeeper then takes makes the
	// store's listing show one.
	if _, err := c.Put(ctx, "monitoring", "pack"); err != nil {
		t.Fatal(err)
	}

	var missing []string
	var exported map[string]bool
	err = fleet.Poll(ctx, 500*time.Millisecond, func() (bool, string) {
		exported = map[string]bool{}
		for _, inst := range g.Running() {
			for _, port := range []int{cluster.DefaultPorts.API, cluster.DefaultPorts.Metrics} {
				names, err := scrapeNames(fmt.Sprintf("http://%s/metrics", net.JoinHostPort(inst.Address, fmt.Sprint(port))))
				if err != nil {
					return false, err.Error()
				}
				for n := range names {
					exported[n] = true
				}
			}
		}
		missing = missing[:0]
		for name := range p.uses {
			if !exported[name] && !p.recorded[name] && !synthesized[name] && !onlyWithTLS[name] {
				missing = append(missing, name)
			}
		}
		sort.Strings(missing)
		return len(missing) == 0, fmt.Sprintf("not exported by the live cluster: %v", missing)
	})
	if err != nil {
		for _, name := range missing {
			t.Errorf("%s is not on any /metrics; used by %s", name, strings.Join(p.uses[name], "; "))
		}
		t.Fatal(err)
	}
	t.Logf("%d metric names used by the pack, all exported (%d names on the endpoints)", len(p.uses), len(exported))
	// The cluster facts are those of the cluster, the same on every member
	// once each gathered them (every 30 s).
	var facts map[string]string
	err = fleet.Poll(ctx, 500*time.Millisecond, func() (bool, string) {
		facts = map[string]string{}
		for _, inst := range g.Running() {
			v, err := scrapeValues(fmt.Sprintf("http://%s/metrics",
				net.JoinHostPort(inst.Address, fmt.Sprint(cluster.DefaultPorts.API))),
				"etcd_appliance_cluster_voters", "etcd_appliance_cluster_voters_healthy",
				"etcd_appliance_cluster_quorum_margin", `etcd_appliance_cluster_state{state="serving"}`,
				"etcd_appliance_cluster_snapshot_revision", "etcd_appliance_cluster_snapshot_timestamp_seconds")
			if err != nil {
				return false, err.Error()
			}
			facts[inst.String()] = v
		}
		why := fmt.Sprintf("voters, healthy voters, quorum margin, serving, newest snapshot's revision and time by instance: %v", facts)
		var first string
		for _, v := range facts {
			// A follower too reports the snapshot the housekeeper took.
			if !strings.HasPrefix(v, "3 3 1 1 ") || strings.Contains(v, " 0 ") || strings.HasSuffix(v, " 0") ||
				strings.Contains(v, "?") || first != "" && v != first {
				return false, why
			}
			first = v
		}
		return len(facts) == 3, why
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("voters, healthy voters, quorum margin, serving, newest snapshot's revision and time by instance: %v", facts)
}

// scrapeNames returns the sample names of a /metrics page (histograms'
// _bucket, _sum and _count as they appear).
func scrapeNames(url string) (map[string]bool, error) {
	body, err := scrape(url)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names, sc.Err()
}

// scrapeValues returns the values of the named series (name with its
// labels as exported), space-separated; "?" for one not exported.
func scrapeValues(url string, series ...string) (string, error) {
	body, err := scrape(url)
	if err != nil {
		return "", err
	}
	var out []string
	for _, s := range series {
		v := "?"
		for _, line := range strings.Split(body, "\n") {
			if rest, ok := strings.CutPrefix(line, s+" "); ok {
				v = rest
				break
			}
		}
		out = append(out, v)
	}
	return strings.Join(out, " "), nil
}

func scrape(url string) (string, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	raw, err := io.ReadAll(resp.Body)
	return string(raw), err
}
