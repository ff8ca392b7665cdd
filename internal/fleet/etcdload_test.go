package fleet

import (
	"strings"
	"testing"
)

// TestParseEtcdLoad: the requests are etcd's received gRPC messages by
// service and method, whatever the order of the labels; the CPU is the
// process's.
func TestParseEtcdLoad(t *testing.T) {
	text := `# HELP grpc_server_msg_received_total Total number of RPC stream messages received on the server.
# TYPE grpc_server_msg_received_total counter
grpc_server_msg_received_total{grpc_method="Status",grpc_service="etcdserverpb.Maintenance",grpc_type="unary"} 240
grpc_server_msg_received_total{grpc_method="LeaseKeepAlive",grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"} 12
grpc_server_msg_received_total{grpc_service="etcdserverpb.KV",grpc_type="unary",grpc_method="Range"} 3
grpc_server_msg_sent_total{grpc_method="Status",grpc_service="etcdserverpb.Maintenance",grpc_type="unary"} 240
process_cpu_seconds_total 1.5
`
	load, err := parseEtcdLoad(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"etcdserverpb.Maintenance/Status": 240, "etcdserverpb.Lease/LeaseKeepAlive": 12,
		"etcdserverpb.KV/Range": 3}
	if len(load.Requests) != len(want) {
		t.Errorf("requests %v, want %v", load.Requests, want)
	}
	for m, v := range want {
		if load.Requests[m] != v {
			t.Errorf("requests of %s = %v, want %v", m, load.Requests[m], v)
		}
	}
	if load.CPUSeconds != 1.5 || load.Total() != 255 {
		t.Errorf("cpu %v, total %v; want 1.5, 255", load.CPUSeconds, load.Total())
	}
	later := EtcdLoad{Requests: map[string]float64{"etcdserverpb.Maintenance/Status": 260,
		"etcdserverpb.Lease/LeaseKeepAlive": 12, "etcdserverpb.KV/Range": 3}, CPUSeconds: 2}
	if d := later.Since(load); d.Total() != 20 || len(d.Requests) != 1 || d.CPUSeconds != 0.5 {
		t.Errorf("since = %+v, want 20 Status requests and 0.5 s", d)
	}
	if _, err := parseEtcdLoad(strings.NewReader("up 1\n")); err == nil {
		t.Error("metrics without process_cpu_seconds_total were read")
	}
}
