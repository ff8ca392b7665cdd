package e2e

import (
	"strings"
	"testing"

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
	res := runDemo(t, "demo --aws", demo.Options{AWS: true})
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
