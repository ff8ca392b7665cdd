package e2e

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/demo"
)

// TestDemo runs `etcd-appliance demo` as a newcomer would: it must succeed
// and end with one JSON line of figures.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts real appliance processes")
	}
	ctx := testContext(t, 4*time.Minute)
	var out bytes.Buffer
	err := demo.Run(ctx, demo.Options{Binary: binary, Members: 3, Out: &out})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("demo failed: %v", err)
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
}
