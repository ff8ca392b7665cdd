package etcd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/logging"
)

// shutdownSignal is the line etcd logs when it gets SIGTERM; in the
// fixtures, the appliance's Stop comes just before it.
const shutdownSignal = "received signal; shutting down"

// replay logs the lines of fixture as a Process would, through the
// appliance's handler in format at level, and returns what was written.
// With stoppedByUs, the appliance asked for the stop the fixture shows.
func replay(t *testing.T, fixture, format string, level slog.Level, stoppedByUs bool) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	stopping := false
	// Start gives etcd's lines component=etcd on the logger it is given,
	// which the appliance has already given its own component.
	appliance := logging.New(&out, format, level).With("component", "appliance")
	l := newEtcdLog(appliance.With("component", "etcd"), func() bool { return stopping })
	for _, line := range strings.SplitAfter(string(raw), "\n") {
		if stoppedByUs && strings.Contains(line, shutdownSignal) {
			stopping = true
		}
		l.Write([]byte(line))
	}
	l.flush()
	return out.String()
}

// jsonLines parses every line of out, failing the test on one that is not
// a JSON object or has a key twice.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		if keys := topLevelKeys(t, sc.Bytes()); len(keys) != len(l) {
			t.Errorf("line has a key twice: %s", sc.Text())
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading log lines: %v", err)
	}
	return lines
}

// topLevelKeys are the keys of the JSON object line, duplicates included.
func topLevelKeys(t *testing.T, line []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// fixtureLines are the zap lines of a fixture, decoded.
func fixtureLines(t *testing.T, fixture string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	return jsonLines(t, string(raw))
}

var stopFixtures = []string{"log/stop-single-member-3.7.3.log", "log/stop-member-of-three-3.7.3.log"}

// Every zap line becomes one line of the appliance's schema: its time from
// ts, its level, message, component=etcd once, caller and fields in their
// order, nested values as JSON.
func TestEtcdLogJSONSchema(t *testing.T) {
	for _, fixture := range stopFixtures {
		t.Run(filepath.Base(fixture), func(t *testing.T) {
			in := fixtureLines(t, fixture)
			out := jsonLines(t, replay(t, fixture, "json", slog.LevelDebug, true))
			if len(out) != len(in) {
				t.Fatalf("%d lines out of %d", len(out), len(in))
			}
			for i, l := range out {
				z := in[i]
				ts, _ := time.Parse(time.RFC3339Nano, z["ts"].(string))
				got, err := time.Parse(time.RFC3339Nano, l["time"].(string))
				if err != nil || !got.Equal(ts) {
					t.Errorf("line %d: time %v, want etcd's ts %v", i, l["time"], z["ts"])
				}
				if l["msg"] != z["msg"] || l["component"] != "etcd" || l["caller"] != z["caller"] {
					t.Errorf("line %d: %v, want msg %q, component etcd, caller %q", i, l, z["msg"], z["caller"])
				}
				if _, ok := l["ts"]; ok {
					t.Errorf("line %d keeps etcd's ts: %v", i, l)
				}
				for k, v := range z {
					switch k {
					case "ts", "level", "msg", "caller":
						continue
					case "stacktrace":
						if l["etcd_level"] != nil {
							continue // dropped from shutdown noise
						}
					}
					if !jsonEqual(t, l[k], v) {
						t.Errorf("line %d: %s = %v, want etcd's %v", i, k, l[k], v)
					}
				}
			}
		})
	}
}

// The fields keep etcd's order after the appliance's own keys.
func TestEtcdLogKeepsFieldOrder(t *testing.T) {
	var out bytes.Buffer
	l := newEtcdLog(logging.New(&out, "json", slog.LevelInfo).With("component", "etcd"), func() bool { return false })
	l.Write([]byte(`{"level":"info","ts":"2026-12-06T13:56:35.684937Z","caller":"embed/etcd.go:422","msg":"closing etcd server","name":"n1","data-dir":"/d","advertise-peer-urls":["http://127.13.77.1:2380"],"n":3,"f":1.5,"ok":true,"nothing":null,"obj":{"b":1,"a":[2]}}` + "\n"))
	want := `{"time":"2026-12-06T13:56:35.684937Z","level":"INFO","msg":"closing etcd server","component":"etcd","caller":"embed/etcd.go:422","name":"n1","data-dir":"/d","advertise-peer-urls":["http://127.13.77.1:2380"],"n":3,"f":1.5,"ok":true,"nothing":null,"obj":{"b":1,"a":[2]}}` + "\n"
	if out.String() != want {
		t.Errorf("got  %s\nwant %s", out.String(), want)
	}
}

// The text handler gets the same record: component once, nested values as
// their JSON text.
func TestEtcdLogText(t *testing.T) {
	out := replay(t, stopFixtures[0], "text", slog.LevelDebug, true)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if n := len(fixtureLines(t, stopFixtures[0])); len(lines) != n {
		t.Fatalf("%d lines out of %d", len(lines), n)
	}
	schema := regexp.MustCompile(`^time=\S+ level=(DEBUG|INFO|WARN|ERROR) msg=.* component=etcd caller=\S+`)
	for _, l := range lines {
		if !schema.MatchString(l) || strings.Count(l, " component=") != 1 {
			t.Errorf("line not in the schema: %s", l)
		}
		if strings.Contains(l, "level=ERROR") {
			t.Errorf("ERROR in a stop the appliance asked for: %s", l)
		}
	}
	if !strings.Contains(out, `advertise-peer-urls="[\"http://127.13.77.1:2380\"]"`) {
		t.Errorf("nested value not kept as JSON text:\n%s", out)
	}
}

// A stop the appliance asked for logs no error: the listeners' "failed"
// lines are INFO with etcd's level beside them and no stack trace. The same
// lines after an exit nobody asked for keep their level and stack trace.
func TestEtcdLogCleanStop(t *testing.T) {
	for _, fixture := range stopFixtures {
		t.Run(filepath.Base(fixture), func(t *testing.T) {
			demoted := 0
			for _, l := range jsonLines(t, replay(t, fixture, "json", slog.LevelDebug, true)) {
				if l["level"] == "ERROR" {
					t.Errorf("ERROR in a stop the appliance asked for: %v", l)
				}
				if l["etcd_level"] == "error" {
					demoted++
					if l["level"] != "INFO" || l["stacktrace"] != nil {
						t.Errorf("shutdown noise logged as %v, want INFO without stacktrace", l)
					}
				}
			}
			if demoted != 5 {
				t.Errorf("%d error lines made INFO, want etcd's 5", demoted)
			}

			errs := 0
			for _, l := range jsonLines(t, replay(t, fixture, "json", slog.LevelDebug, false)) {
				if l["level"] == "ERROR" {
					errs++
					if l["stacktrace"] == nil || l["etcd_level"] != nil {
						t.Errorf("error of an unasked stop logged as %v, want its stacktrace, no etcd_level", l)
					}
				}
			}
			if errs != 5 {
				t.Errorf("an unasked stop logged %d errors, want etcd's 5", errs)
			}
		})
	}
}

// The appliance's --log-level applies to etcd's lines too.
func TestEtcdLogLevel(t *testing.T) {
	for _, tt := range []struct {
		level slog.Level
		want  map[string]bool
	}{
		{slog.LevelDebug, map[string]bool{"INFO": true, "WARN": true}},
		{slog.LevelWarn, map[string]bool{"WARN": true}},
		{slog.LevelError, map[string]bool{}},
	} {
		got := map[string]bool{}
		for _, l := range jsonLines(t, replay(t, stopFixtures[1], "json", tt.level, true)) {
			got[l["level"].(string)] = true
		}
		if !jsonEqual(t, got, tt.want) {
			t.Errorf("--log-level %v: levels %v, want %v", tt.level, got, tt.want)
		}
	}
}

func TestEtcdLogLevels(t *testing.T) {
	now := time.Date(2026, 12, 6, 14, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		zap       string
		want      slog.Level
		etcdLevel string // "": none
	}{
		{"debug", slog.LevelDebug, ""},
		{"info", slog.LevelInfo, ""},
		{"warn", slog.LevelWarn, ""},
		{"error", slog.LevelError, ""},
		{"dpanic", slog.LevelError, "dpanic"},
		{"panic", slog.LevelError, "panic"},
		{"fatal", slog.LevelError, "fatal"},
		{"chatty", slog.LevelInfo, "chatty"},
	} {
		r, ok := logRecord([]byte(`{"level":"`+tt.zap+`","ts":"2026-12-06T13:56:35.5Z","caller":"x.go:1","msg":"m"}`), now, true)
		if !ok || r.Level != tt.want || etcdLevel(r) != tt.etcdLevel {
			t.Errorf("zap level %q: record at %v with etcd_level %q, want %v with %q", tt.zap, r.Level, etcdLevel(r), tt.want, tt.etcdLevel)
		}
	}
}

func etcdLevel(r slog.Record) string {
	var l string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == etcdLevelKey {
			l = a.Value.String()
		}
		return true
	})
	return l
}

// Lines that are not zap's (a Go panic, a usage text) are logged one record
// each, as they are, at ERROR, at the time they were read; a fatal or panic
// line is ERROR and says which it was.
func TestEtcdLogNotZap(t *testing.T) {
	out := jsonLines(t, replay(t, "exit/db-invalid.log", "json", slog.LevelDebug, false))
	raw, _ := os.ReadFile(filepath.Join("testdata", "exit", "db-invalid.log"))
	var plain []string
	for _, l := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
		if strings.TrimSpace(l) != "" && !strings.HasPrefix(l, "{") {
			plain = append(plain, l)
		}
	}
	var gotPlain []string
	var panics int
	for _, l := range out {
		if l["component"] != "etcd" {
			t.Errorf("line without component=etcd: %v", l)
		}
		if l["caller"] == nil {
			gotPlain = append(gotPlain, l["msg"].(string))
			if l["level"] != "ERROR" {
				t.Errorf("plain line at %v, want ERROR: %v", l["level"], l)
			}
		}
		if l["etcd_level"] == "panic" {
			panics++
			if l["level"] != "ERROR" || l["msg"] != "failed to open database" {
				t.Errorf("panic line logged as %v", l)
			}
		}
	}
	if strings.Join(gotPlain, "\n") != strings.Join(plain, "\n") {
		t.Errorf("plain lines logged:\n%s\nwant:\n%s", strings.Join(gotPlain, "\n"), strings.Join(plain, "\n"))
	}
	if panics != 1 {
		t.Errorf("%d panic lines, want 1", panics)
	}
}

// Lines arrive in pieces; one without a newline is logged at the end.
func TestEtcdLogPartialWrites(t *testing.T) {
	var out bytes.Buffer
	l := newEtcdLog(logging.New(&out, "json", slog.LevelInfo), func() bool { return false })
	line := `{"level":"info","ts":"2026-12-06T13:56:35.5Z","caller":"x.go:1","msg":"one"}` + "\n" + `{"level":"warn","ts":"2026-12-06T13:56:35.6Z","caller":"x.go:2","msg":"two"}` + "\n\nlast words"
	for i := 0; i < len(line); i += 7 {
		l.Write([]byte(line[i:min(i+7, len(line))]))
	}
	if n := strings.Count(out.String(), "\n"); n != 2 {
		t.Errorf("%d lines before the flush, want 2:\n%s", n, out.String())
	}
	l.flush()
	var msgs []string
	for _, r := range jsonLines(t, out.String()) {
		msgs = append(msgs, r["level"].(string)+" "+r["msg"].(string))
	}
	if got, want := strings.Join(msgs, ", "), "INFO one, WARN two, ERROR last words"; got != want {
		t.Errorf("logged %q, want %q", got, want)
	}
}

// etcd's fields named like the appliance's keys are renamed, so that no
// line has a key twice; zap's epoch-seconds ts is read too.
func TestEtcdLogReservedKeys(t *testing.T) {
	var out bytes.Buffer
	l := newEtcdLog(logging.New(&out, "json", slog.LevelInfo).With("component", "etcd"), func() bool { return false })
	l.Write([]byte(`{"level":"info","ts":1796565395.5,"caller":"x.go:1","msg":"m","component":"raft","time":"t","etcd_level":"x"}` + "\n"))
	lines := jsonLines(t, out.String())
	if len(lines) != 1 {
		t.Fatalf("%d lines", len(lines))
	}
	got := lines[0]
	if got["component"] != "etcd" || got["etcd_component"] != "raft" || got["etcd_time"] != "t" || got["etcd_etcd_level"] != "x" {
		t.Errorf("logged %v", got)
	}
	if got["time"] != "2026-12-06T13:56:35.5Z" {
		t.Errorf("time %v, want ts's 2026-12-06T13:56:35.5Z", got["time"])
	}
}

func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	return bytes.Equal(must(json.Marshal(a)), must(json.Marshal(b)))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// gRPC's own logger writes plain lines with a severity; they keep it.
func TestEtcdLogGRPCLines(t *testing.T) {
	now := time.Date(2026, 12, 6, 14, 7, 53, 254e6, time.UTC)
	for _, tt := range []struct {
		line      string
		want      slog.Level
		msg       string
		etcdLevel string
	}{
		{`2026/12/06 14:07:53 WARNING: [core] [Server #2] grpc: Server.processUnaryRPC failed to write status: connection error: desc = "transport is closing"`,
			slog.LevelWarn, `[core] [Server #2] grpc: Server.processUnaryRPC failed to write status: connection error: desc = "transport is closing"`, ""},
		{`2026/12/06 14:07:53 INFO: [core] x`, slog.LevelInfo, "[core] x", ""},
		{`2026/12/06 14:07:53.123456 ERROR: [transport] y`, slog.LevelError, "[transport] y", ""},
		{`2026/12/06 14:07:53 FATAL: z`, slog.LevelError, "z", "fatal"},
		{`2026/12/06 14:07:53 NOTICE: not gRPC's`, slog.LevelError, "2026/12/06 14:07:53 NOTICE: not gRPC's", ""},
	} {
		r, ok := logRecord([]byte(tt.line), now, false)
		if !ok || r.Level != tt.want || r.Message != tt.msg || !r.Time.Equal(now) || etcdLevel(r) != tt.etcdLevel {
			t.Errorf("%q: record %v %q at %v, etcd_level %q; want %v %q at %v, etcd_level %q",
				tt.line, r.Level, r.Message, r.Time, etcdLevel(r), tt.want, tt.msg, now, tt.etcdLevel)
		}
	}
}

// A listener closed before its mux served (a stop right after the start)
// is shutdown noise too; seen once in CI with etcd 3.7.3.
func TestEtcdLogListenerClosedIsShutdownNoise(t *testing.T) {
	line := []byte(`{"level":"error","ts":"2026-12-06T16:40:01.5Z","caller":"embed/etcd.go:908",` +
		`"msg":"setting up serving from embedded etcd failed.","error":"mux: listener closed","stacktrace":"x"}`)
	for _, tc := range []struct {
		stopping bool
		want     slog.Level
	}{{true, slog.LevelInfo}, {false, slog.LevelError}} {
		r, ok := logRecord(line, time.Now(), tc.stopping)
		if !ok || r.Level != tc.want {
			t.Errorf("stopping=%v: level %v (ok %v), want %v", tc.stopping, r.Level, ok, tc.want)
		}
	}
}
