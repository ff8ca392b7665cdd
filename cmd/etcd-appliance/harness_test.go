package main

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// harnessSymbols are substrings of symbol names (lower case) that only the
// test harness brings: the fault proxy, `go build` of the binary, httptest
// servers, the harness package itself, and the robustness recorder.
var harnessSymbols = []string{
	"faultproxy",
	"buildbinary",
	"net/http/httptest",
	"internal/testcluster",
	"internal/robustness",
}

// TestBinaryLeavesOutTheTestHarness reads the symbol table of the shipped
// binary ($ETCD_APPLIANCE_BIN when set, else a fresh build): the demo links
// internal/fleet, and nothing of the test harness may come with it.
func TestBinaryLeavesOutTheTestHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	binary, err := testcluster.BuildBinary(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "nm", binary).Output()
	if err != nil {
		t.Fatalf("go tool nm %s: %v", binary, err)
	}
	found := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	symbols := 0
	for sc.Scan() {
		symbols++
		line := strings.ToLower(sc.Text())
		for _, s := range harnessSymbols {
			if strings.Contains(line, s) && len(found[s]) < 5 {
				found[s] = append(found[s], strings.TrimSpace(sc.Text()))
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if symbols < 1000 {
		t.Fatalf("go tool nm %s listed %d symbols: not the appliance's symbol table", binary, symbols)
	}
	for _, s := range harnessSymbols {
		if len(found[s]) > 0 {
			t.Errorf("%s links test harness code (%q), e.g.:\n  %s", binary, s, strings.Join(found[s], "\n  "))
		}
	}
}
