package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Durations read as Go writes them, in both formats, also in a group.
func TestDurationsAreReadable(t *testing.T) {
	for _, tt := range []struct {
		format string
		want   []string
	}{
		{"json", []string{`"took":"1.5s"`, `"grace":"20s"`, `"g":{"wait":"250ms"}`}},
		{"text", []string{`took=1.5s`, `grace=20s`, `g.wait=250ms`}},
	} {
		var out bytes.Buffer
		New(&out, tt.format, slog.LevelInfo).With("grace", 20*time.Second).
			Info("m", "took", 1500*time.Millisecond, slog.Group("g", "wait", 250*time.Millisecond))
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s: %q lacks %s", tt.format, out.String(), w)
			}
		}
	}
}

// A component given to a logger that has one replaces it; the line keeps
// one component key, first among the attributes given With.
func TestOneComponent(t *testing.T) {
	var out bytes.Buffer
	appliance := New(&out, "json", slog.LevelInfo).With("component", "appliance", "instance", "i-1")
	appliance.With("component", "etcd").Info("etcd started", "pid", 7)
	appliance.Info("appliance started")
	appliance.With("component", "etcd").WithGroup("g").With("component", "inner").Info("grouped")

	want := []string{
		`{"time":"T","level":"INFO","msg":"etcd started","component":"etcd","instance":"i-1","pid":7}`,
		`{"time":"T","level":"INFO","msg":"appliance started","component":"appliance","instance":"i-1"}`,
		`{"time":"T","level":"INFO","msg":"grouped","component":"etcd","instance":"i-1","g":{"component":"inner"}}`,
	}
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d lines:\n%s", len(got), out.String())
	}
	for i, l := range got {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		l = strings.Replace(l, m["time"].(string), "T", 1)
		if l != want[i] {
			t.Errorf("got  %s\nwant %s", l, want[i])
		}
	}
}

func TestLevel(t *testing.T) {
	var out bytes.Buffer
	l := New(&out, "text", slog.LevelWarn).With("component", "x")
	l.Info("dropped")
	l.Warn("kept")
	if s := out.String(); strings.Contains(s, "dropped") || !strings.Contains(s, "level=WARN msg=kept component=x") {
		t.Errorf("logged %q", s)
	}
}
