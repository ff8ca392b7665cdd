package main

import (
	"context"
	"debug/elf"
	"debug/gosym"
	"fmt"
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
	funcs, err := goFunctions(binary)
	if err != nil {
		t.Fatal(err)
	}
	if len(funcs) < 1000 {
		t.Fatalf("%s has %d functions: not the appliance's function table", binary, len(funcs))
	}
	found := map[string][]string{}
	for _, name := range funcs {
		line := strings.ToLower(name)
		for _, s := range harnessSymbols {
			if strings.Contains(line, s) && len(found[s]) < 5 {
				found[s] = append(found[s], name)
			}
		}
	}
	for _, s := range harnessSymbols {
		if len(found[s]) > 0 {
			t.Errorf("%s links test harness code (%q), e.g.:\n  %s", binary, s, strings.Join(found[s], "\n  "))
		}
	}
}

// goFunctions lists the functions of a Go ELF binary from its pclntab.
func goFunctions(binary string) ([]string, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pcln, text := f.Section(".gopclntab"), f.Section(".text")
	if pcln == nil || text == nil {
		return nil, fmt.Errorf("%s has no .gopclntab or .text section: not a Go binary", binary)
	}
	data, err := pcln.Data()
	if err != nil {
		return nil, fmt.Errorf("reading %s's .gopclntab: %w", binary, err)
	}
	table, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return nil, fmt.Errorf("reading %s's function table: %w", binary, err)
	}
	names := make([]string, 0, len(table.Funcs))
	for _, fn := range table.Funcs {
		names = append(names, fn.Name)
	}
	return names, nil
}
