package fleet

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// EtcdLoad is what an etcd member counted of its own load since it
// started, from its /metrics.
type EtcdLoad struct {
	// Requests are the gRPC messages it received, by "Service/Method":
	// one per unary call, one per message of a stream (a lease keep-alive,
	// a watch request), as grpc_server_msg_received_total counts them.
	Requests map[string]float64
	// CPUSeconds is etcd's process_cpu_seconds_total.
	CPUSeconds float64
}

// Total is the requests of every method.
func (l EtcdLoad) Total() float64 {
	var n float64
	for _, v := range l.Requests {
		n += v
	}
	return n
}

// Since is the load between earlier and l.
func (l EtcdLoad) Since(earlier EtcdLoad) EtcdLoad {
	out := EtcdLoad{Requests: map[string]float64{}, CPUSeconds: l.CPUSeconds - earlier.CPUSeconds}
	for m, v := range l.Requests {
		if d := v - earlier.Requests[m]; d != 0 {
			out.Requests[m] = d
		}
	}
	return out
}

// MetricsURL is the instance's etcd metrics URL (/metrics, /health).
func (i *Instance) MetricsURL() string {
	return "http://" + net.JoinHostPort(i.Address, strconv.Itoa(cluster.DefaultPorts.Metrics))
}

// EtcdLoad reads the load the instance's etcd counted on its /metrics. It
// sends no request to etcd's gRPC API, so it counts none.
func (i *Instance) EtcdLoad(ctx context.Context) (EtcdLoad, error) {
	load, err := ReadEtcdLoad(ctx, i.MetricsURL()+"/metrics")
	if err != nil {
		return EtcdLoad{}, fmt.Errorf("%s: %w", i, err)
	}
	return load, nil
}

// ReadEtcdLoad reads the load an etcd member counted from its metrics at
// url.
func ReadEtcdLoad(ctx context.Context, url string) (EtcdLoad, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return EtcdLoad{}, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return EtcdLoad{}, fmt.Errorf("reading etcd's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return EtcdLoad{}, fmt.Errorf("reading etcd's metrics at %s: %s", url, resp.Status)
	}
	load, err := parseEtcdLoad(resp.Body)
	if err != nil {
		return EtcdLoad{}, fmt.Errorf("reading etcd's metrics at %s: %w", url, err)
	}
	return load, nil
}

// parseEtcdLoad reads the counters of EtcdLoad from the Prometheus text
// format.
func parseEtcdLoad(r io.Reader) (EtcdLoad, error) {
	load := EtcdLoad{Requests: map[string]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	cpu := false
	for sc.Scan() {
		line := sc.Text()
		name, rest, _ := strings.Cut(line, "{")
		switch {
		case strings.HasPrefix(line, "process_cpu_seconds_total "):
			v, err := strconv.ParseFloat(strings.TrimPrefix(line, "process_cpu_seconds_total "), 64)
			if err != nil {
				return load, fmt.Errorf("process_cpu_seconds_total: %w", err)
			}
			load.CPUSeconds, cpu = v, true
		case name == "grpc_server_msg_received_total":
			labels, value, ok := strings.Cut(rest, "} ")
			if !ok {
				return load, fmt.Errorf("unreadable line %q", line)
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				return load, fmt.Errorf("unreadable line %q: %w", line, err)
			}
			service, method := label(labels, "grpc_service"), label(labels, "grpc_method")
			load.Requests[service+"/"+method] += v
		}
	}
	if err := sc.Err(); err != nil {
		return load, err
	}
	if !cpu {
		return load, fmt.Errorf("no process_cpu_seconds_total")
	}
	return load, nil
}

// label is the value of the label name in the label list of a sample,
// "" when absent.
func label(labels, name string) string {
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k == name {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}
