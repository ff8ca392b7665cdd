package cluster

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/ from the current decisions")

// TestDecideStartupGolden decides on each testdata/startup/<case>/inputs.json
// and compares the plan with plan.golden.json next to it. The inputs read as
// the appliance logs them; run `go test ./internal/cluster -run Golden -update`
// after a deliberate change and review the diff.
func TestDecideStartupGolden(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "startup", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no golden cases under testdata/startup")
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, "inputs.json"))
			if err != nil {
				t.Fatal(err)
			}
			var in StartupInputs
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&in); err != nil {
				t.Fatalf("inputs.json: %v", err)
			}
			plan := DecideStartup(in)
			if plan.Reason == "" {
				t.Errorf("plan %+v has no reason", plan)
			}
			got, err := json.MarshalIndent(plan, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join(dir, "plan.golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("plan differs from %s\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}
