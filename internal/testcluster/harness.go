// Package testcluster is the test harness around internal/fleet: what only
// the tests and the benchmarks use, and the shipped binary must not link.
// It builds the binary under test (BuildBinary), stands a FaultProxy
// between the appliances and moto (NewAWSWithFaults), and has the helpers
// that take a testing.TB. Only _test.go files and cmd/bench import it.
//
// The local and moto-backed groups themselves, moto and the per-instance
// IMDS are the fleet's; the names below let the provider and snapshot tests
// use them through the harness.
package testcluster

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// Moto is a running moto_server (see fleet.Moto).
type Moto = fleet.Moto

// StartMoto starts moto_server (see fleet.StartMoto).
func StartMoto(ctx context.Context, dir string) (*Moto, error) { return fleet.StartMoto(ctx, dir) }

// IMDS is the metadata service of one instance (see fleet.IMDS).
type IMDS = fleet.IMDS

// InstanceMetadata is what an IMDS tells about its instance.
type InstanceMetadata = fleet.InstanceMetadata

// StartIMDS serves the metadata of one instance on a free port of
// 127.0.0.1. Like an httptest server it panics when it cannot listen: a
// test cannot go on without it.
func StartIMDS(m InstanceMetadata) *IMDS {
	s, err := fleet.StartIMDS(m)
	if err != nil {
		panic(fmt.Sprintf("testcluster: %v", err))
	}
	return s
}

// NewAWSWithFaults is fleet.NewAWS with a FaultProxy between the appliances
// and moto, which the group stops on Close; the fleet's own calls go to
// moto directly. opts.Proxy is replaced.
func NewAWSWithFaults(ctx context.Context, opts fleet.AWSOptions) (*fleet.AWSGroup, *FaultProxy, error) {
	var proxy *FaultProxy
	opts.Proxy = func(moto string) (string, func(), error) {
		p, err := StartFaultProxy(moto)
		if err != nil {
			return "", nil, err
		}
		proxy = p
		return p.URL, p.Close, nil
	}
	g, err := fleet.NewAWS(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	return g, proxy, nil
}

// FreePort is a TCP port of 127.0.0.1 that was free a moment ago, for a
// test's own etcd.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
