package e2e

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/demo"
)

// TestDemoAWS runs `etcd-appliance demo --aws`: on an Auto Scaling group in
// moto it must succeed and end with one JSON line of figures whose
// dns_records list the 3 members (an SRV record of each kind with 3
// targets, the cluster's A record with 3 addresses, one A record each).
func TestDemoAWS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts moto and real appliance processes")
	}
	ctx := testContext(t, 4*time.Minute)
	var out bytes.Buffer
	err := demo.Run(ctx, demo.Options{Binary: binary, Members: 3, Out: &out, AWS: true})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("demo --aws failed: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var res demo.Result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line %q is not the JSON result: %v", lines[len(lines)-1], err)
	}
	if !res.OK || res.Members != 3 || res.Healthy != 3 || res.KeysLost != 0 || res.KeysWritten != 100 ||
		res.BootstrapSeconds <= 0 || res.ReplaceSeconds <= 0 {
		t.Fatalf("demo result %+v: want ok, 3 healthy members, 100 keys written, none lost, both durations", res)
	}
	if res.Dir != "" {
		t.Errorf("demo kept its directory %s without --keep", res.Dir)
	}
	kinds := map[string]int{}
	for _, r := range res.DNSRecords {
		switch {
		case r.Type == cluster.RecordSRV && strings.HasPrefix(r.Name, "_etcd-server._tcp."):
			kinds["server"] = len(r.Values)
		case r.Type == cluster.RecordSRV && strings.HasPrefix(r.Name, "_etcd-client._tcp."):
			kinds["client"] = len(r.Values)
		case r.Type == cluster.RecordA && len(r.Values) == 3:
			kinds["cluster"]++
		case r.Type == cluster.RecordA && len(r.Values) == 1:
			kinds["member"]++
		}
	}
	if len(res.DNSRecords) != 6 || kinds["server"] != 3 || kinds["client"] != 3 || kinds["cluster"] != 1 || kinds["member"] != 3 {
		t.Fatalf("dns_records %v: want 2 SRV records of 3 targets, the cluster's A record of 3 addresses and 3 member A records", res.DNSRecords)
	}
}
