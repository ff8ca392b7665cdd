package aws_test

import (
	"testing"

	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// startFaultProxy puts a testcluster.FaultProxy in front of backend with
// faults injected, in that order, for the test.
func startFaultProxy(t *testing.T, backend string, faults ...testcluster.Fault) *testcluster.FaultProxy {
	t.Helper()
	p, err := testcluster.StartFaultProxy(backend)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	for _, f := range faults {
		p.Inject(f)
	}
	return p
}

// injected is how many requests the proxy's faults hit.
func injected(p *testcluster.FaultProxy) int {
	n := 0
	for _, c := range p.Injected() {
		n += c
	}
	return n
}
