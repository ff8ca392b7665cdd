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
	runDemo(t, "demo", demo.Options{})
}

// runDemo runs the demo (name in messages) of 3 members with the test's
// binary and returns its result, having checked the figures of every tour:
// ok, 3 healthy members, 100 keys written, none lost, both durations, and
// no directory kept.
func runDemo(t *testing.T, name string, opts demo.Options) demo.Result {
	t.Helper()
	ctx := testContext(t, 4*time.Minute)
	var out bytes.Buffer
	opts.Binary, opts.Members, opts.Out = binary, 3, &out
	err := demo.Run(ctx, opts)
	t.Logf("%s output:\n%s", name, out.String())
	if err != nil {
		t.Fatalf("%s failed: %v", name, err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var res demo.Result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line %q is not the JSON result: %v", lines[len(lines)-1], err)
	}
	if !res.OK || res.Members != 3 || res.Healthy != 3 || res.KeysLost != 0 || res.KeysWritten != 100 ||
		res.BootstrapSeconds <= 0 || res.ReplaceSeconds <= 0 {
		t.Fatalf("%s result %+v: want ok, 3 healthy members, 100 keys written, none lost, both durations", name, res)
	}
	if res.Dir != "" {
		t.Errorf("%s kept its directory %s without --keep", name, res.Dir)
	}
	return res
}
