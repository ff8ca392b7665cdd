package local

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

func sampleFile() File {
	return File{
		Name: "demo",
		Instances: []cluster.Instance{
			{ID: "i-a", Address: "127.0.0.2", State: cluster.InstanceRunning, Region: "local", Zone: "local-a"},
			{ID: "i-b", Address: "127.0.0.3", State: cluster.InstancePending},
			{ID: "i-c", Address: "127.0.0.4", State: cluster.InstanceTerminated},
			{ID: "i-d", Address: "fd00::5", State: cluster.InstanceStopped},
			{ID: "i-e", Address: "127.0.0.6", State: cluster.InstanceStopping},
		},
	}
}

func writeRaw(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "group.json")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestWriteReadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "group.json")
	want := sampleFile()
	if err := Write(path, want); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Read = %+v, want %+v", got, want)
	}

	// Write replaces the file and leaves no temporary file behind.
	want.Instances = want.Instances[:1]
	if err := Write(path, want); err != nil {
		t.Fatalf("second Write: %v", err)
	}
	if got, err := Read(path); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("after rewrite Read = %+v, %v; want %+v", got, err, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "group.json" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only group.json", names)
	}
}

func TestWriteIsReadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "group.json")
	if err := Write(path, sampleFile()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The demo and tests edit this file by hand: it is indented JSON with the
	// documented field names.
	for _, want := range []string{`"name": "demo"`, `"id": "i-a"`, `"address": "127.0.0.2"`, `"state": "running"`, `"region": "local"`, `"zone": "local-a"`, "\n  "} {
		if !strings.Contains(string(b), want) {
			t.Errorf("file does not contain %q:\n%s", want, b)
		}
	}
	if !strings.HasSuffix(string(b), "}\n") {
		t.Errorf("file does not end with a newline")
	}
}

func TestWriteToMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "group.json")
	if err := Write(path, sampleFile()); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
}

// TestReadDuringWrites checks that readers never see half a file while the
// file is rewritten, as the demo does while appliances read it.
func TestReadDuringWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "group.json")
	small, big := sampleFile(), sampleFile()
	small.Instances = small.Instances[:1]
	for i := 0; i < 50; i++ {
		big.Instances = append(big.Instances, cluster.Instance{
			ID: "i-extra-" + strings.Repeat("x", i), Address: "127.0.1.1", State: cluster.InstanceRunning})
	}
	if err := Write(path, small); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f := small
			if i%2 == 0 {
				f = big
			}
			if err := Write(path, f); err != nil {
				t.Errorf("Write: %v", err)
				return
			}
		}
	}()
	for i := 0; i < 200; i++ {
		f, err := Read(path)
		if err != nil {
			t.Errorf("Read during writes: %v", err)
			break
		}
		if n := len(f.Instances); n != len(small.Instances) && n != len(big.Instances) {
			t.Errorf("read %d instances, a mix of two versions", n)
		}
	}
	close(stop)
	wg.Wait()
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		wantHas string
	}{
		{"bad json", `{"name": "demo", "instances": [`, "does not parse"},
		{"not an object", `[1, 2]`, "does not parse"},
		{"wrong field type", `{"instances": [{"id": 7}]}`, "does not parse"},
		{"missing id", `{"instances": [{"address": "127.0.0.2", "state": "running"}]}`, "instance 0 has no id"},
		{"duplicate id", `{"instances": [
			{"id": "i-a", "address": "127.0.0.2", "state": "running"},
			{"id": "i-a", "address": "127.0.0.3", "state": "running"}]}`, `"i-a" is listed twice`},
		{"bad address", `{"instances": [{"id": "i-a", "address": "127.0.0.300", "state": "running"}]}`, "127.0.0.300"},
		{"hostname address", `{"instances": [{"id": "i-a", "address": "localhost", "state": "running"}]}`, "not an IP address"},
		{"missing address", `{"instances": [{"id": "i-a", "state": "running"}]}`, "not an IP address"},
		{"unknown state", `{"instances": [{"id": "i-a", "address": "127.0.0.2", "state": "rebooting"}]}`, `unknown state "rebooting"`},
		{"missing state", `{"instances": [{"id": "i-a", "address": "127.0.0.2"}]}`, "unknown state"},
		{"state in capitals", `{"instances": [{"id": "i-a", "address": "127.0.0.2", "state": "Running"}]}`, "unknown state"},
		{"second instance bad", `{"instances": [
			{"id": "i-a", "address": "127.0.0.2", "state": "running"},
			{"id": "", "address": "127.0.0.3", "state": "running"}]}`, "instance 1 has no id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeRaw(t, tt.content)
			_, err := Read(path)
			if err == nil {
				t.Fatal("Read accepted the file")
			}
			if !strings.Contains(err.Error(), tt.wantHas) {
				t.Errorf("error %q does not mention %q", err, tt.wantHas)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestReadMissingFile(t *testing.T) {
	_, err := Read(filepath.Join(t.TempDir(), "nope.json"))
	if err == nil {
		t.Fatal("Read of a missing file succeeded")
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v does not wrap os.ErrNotExist", err)
	}
}

func TestReadAcceptsMinimalFile(t *testing.T) {
	path := writeRaw(t, `{"instances": [{"id": "i-a", "address": "127.0.0.2", "state": "running"}]}`)
	f, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	want := File{Instances: []cluster.Instance{{ID: "i-a", Address: "127.0.0.2", State: cluster.InstanceRunning}}}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("Read = %+v, want %+v", f, want)
	}
}

func TestProviderSelf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "group.json")
	if err := Write(path, sampleFile()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	got, err := New(path, "i-b", nil).Self(ctx)
	if err != nil {
		t.Fatalf("Self: %v", err)
	}
	if want := sampleFile().Instances[1]; got != want {
		t.Errorf("Self = %+v, want %+v", got, want)
	}

	_, err = New(path, "i-z", nil).Self(ctx)
	if err == nil || !strings.Contains(err.Error(), `"i-z"`) || !strings.Contains(err.Error(), path) {
		t.Errorf("Self of an absent instance: error %v, want one naming i-z and the file", err)
	}

	if _, err := New(filepath.Join(t.TempDir(), "nope.json"), "i-a", nil).Self(ctx); err == nil {
		t.Error("Self on a missing group file succeeded")
	}
}

func TestProviderInstances(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "group.json")
	if err := Write(path, sampleFile()); err != nil {
		t.Fatal(err)
	}
	got, err := New(path, "i-a", nil).Instances(ctx)
	if err != nil {
		t.Fatalf("Instances: %v", err)
	}
	// Terminated and stopped instances are listed too: their state tells.
	if want := sampleFile().Instances; !reflect.DeepEqual(got, want) {
		t.Errorf("Instances = %+v, want %+v", got, want)
	}

	for name, p := range map[string]string{
		"missing file": filepath.Join(t.TempDir(), "nope.json"),
		"bad json":     writeRaw(t, "{"),
		"invalid file": writeRaw(t, `{"instances": [{"id": "i-a", "address": "x", "state": "running"}]}`),
	} {
		t.Run(name, func(t *testing.T) {
			insts, err := New(p, "i-a", nil).Instances(ctx)
			if !errors.Is(err, provider.ErrGroupUnknown) {
				t.Errorf("error %v does not wrap provider.ErrGroupUnknown", err)
			}
			if insts != nil {
				t.Errorf("instances %v returned with an error", insts)
			}
		})
	}
}

func TestProviderName(t *testing.T) {
	dir := t.TempDir()
	named := filepath.Join(dir, "group.json")
	if err := Write(named, sampleFile()); err != nil {
		t.Fatal(err)
	}
	unnamed := filepath.Join(dir, "my-cluster.json")
	f := sampleFile()
	f.Name = ""
	if err := Write(unnamed, f); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"name from the file", named, "demo"},
		{"file without a name: its base name", unnamed, "my-cluster"},
		{"unreadable file: its base name", filepath.Join(dir, "staging.group.json"), "staging.group"},
		{"no extension", filepath.Join(dir, "prod"), "prod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(tt.path, "i-a", nil).Name(); got != tt.want {
				t.Errorf("Name() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEmptyGroupIsUnknownNotEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "group.json")
	if err := Write(path, File{Name: "g"}); err != nil {
		t.Fatal(err)
	}
	got, err := New(path, "i-1", nil).Instances(context.Background())
	if !errors.Is(err, provider.ErrGroupUnknown) || got != nil {
		t.Fatalf("Instances() = %v, %v; want ErrGroupUnknown for an empty listing", got, err)
	}
}

// TestCheckNamesTheFileAndTheProblem: what a start refuses, in one line
// naming the file.
func TestCheckNamesTheFileAndTheProblem(t *testing.T) {
	good := filepath.Join(t.TempDir(), "group.json")
	if err := Write(good, sampleFile()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, id, wantHas string
	}{
		{"missing file", filepath.Join(t.TempDir(), "nope.json"), "i-a", "no such file or directory"},
		{"garbled", writeRaw(t, "garbage{"), "i-a", "does not parse: invalid character 'g'"},
		{"invalid", writeRaw(t, `{"instances": [{"id": "i-a", "address": "x", "state": "running"}]}`), "i-a", "not an IP address"},
		{"nobody listed", writeRaw(t, `{"name": "g", "instances": []}`), "i-a", "lists no instances"},
		{"instance not listed", good, "i-z", `does not list instance "i-z"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.path, tt.id)
			if err == nil {
				t.Fatal("Check accepted it")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantHas) || !strings.HasPrefix(msg, "group file "+tt.path) ||
				strings.Count(msg, tt.path) != 1 || strings.Contains(msg, "\n") {
				t.Errorf("Check = %q, want one line starting with the file and saying %q", msg, tt.wantHas)
			}
		})
	}
	if err := Check(good, "i-b"); err != nil {
		t.Errorf("Check of a good file listing the instance = %v", err)
	}
}

// watched is a provider over a group file whose clock the test moves, and
// whose log it reads.
type watched struct {
	*Provider
	now  time.Time
	logs bytes.Buffer
}

func newWatched(t *testing.T, path string) *watched {
	t.Helper()
	w := &watched{now: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	w.Provider = New(path, "i-a", slog.New(slog.NewTextHandler(&w.logs, nil)))
	w.Provider.now = func() time.Time { return w.now }
	return w
}

// count is how many logged lines contain s.
func (w *watched) count(s string) int { return strings.Count(w.logs.String(), s) }

// listEvery lists n times, the clock moving by step before each, and
// checks each answer is want.
func (w *watched) listEvery(t *testing.T, n int, step time.Duration, want []cluster.Instance) {
	t.Helper()
	for range n {
		w.now = w.now.Add(step)
		got, err := w.Instances(context.Background())
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("Instances = %v, %v; want %v", got, err, want)
		}
	}
}

// TestUnusableFileKeepsTheLastListing: while the group file is garbled or
// missing, the provider answers with the last usable listing and logs each
// change of state once, and an unchanged problem once a minute.
func TestUnusableFileKeepsTheLastListing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "group.json")
	if err := Write(path, sampleFile()); err != nil {
		t.Fatal(err)
	}
	w := newWatched(t, path)
	w.listEvery(t, 1, 0, sampleFile().Instances)

	if err := os.WriteFile(path, []byte("garbage{"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Twice a second for half a minute: one warning.
	w.listEvery(t, 60, 500*time.Millisecond, sampleFile().Instances)
	if n := w.count("level=WARN"); n != 1 || w.count("does not parse") != 1 {
		t.Fatalf("garbled file: %d warnings, want 1:\n%s", n, w.logs.String())
	}
	if !strings.Contains(w.logs.String(), "keeping its last usable listing") {
		t.Errorf("the warning does not say the last listing is kept:\n%s", w.logs.String())
	}
	if got := w.Name(); got != "demo" {
		t.Errorf("Name() of a garbled file = %q, want the last usable file's %q", got, "demo")
	}
	// Past a minute the unchanged problem is said again.
	w.listEvery(t, 70, 500*time.Millisecond, sampleFile().Instances)
	if n := w.count("level=WARN"); n != 2 {
		t.Errorf("after another 35 s: %d warnings, want 2 (once a minute):\n%s", n, w.logs.String())
	}
	// Another problem is a change of state: said at once.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	w.listEvery(t, 3, 500*time.Millisecond, sampleFile().Instances)
	if n := w.count("no such file or directory"); n != 1 {
		t.Errorf("missing file: said %d times, want once:\n%s", n, w.logs.String())
	}
	// Usable again: the new listing, said once.
	f := sampleFile()
	f.Instances = f.Instances[:2]
	if err := Write(path, f); err != nil {
		t.Fatal(err)
	}
	w.listEvery(t, 5, 500*time.Millisecond, f.Instances)
	if n := w.count("group file usable again"); n != 1 || w.count("level=WARN") != 3 {
		t.Errorf("usable again: %d infos, %d warnings; want 1 and 3:\n%s", n, w.count("level=WARN"), w.logs.String())
	}
}

// TestNeverUsableFileIsUnknown: without a usable listing ever read there
// is nothing to keep; the group is unknown, and said so once.
func TestNeverUsableFileIsUnknown(t *testing.T) {
	w := newWatched(t, writeRaw(t, "garbage{"))
	for range 10 {
		w.now = w.now.Add(500 * time.Millisecond)
		if got, err := w.Instances(context.Background()); !errors.Is(err, provider.ErrGroupUnknown) || got != nil {
			t.Fatalf("Instances = %v, %v; want ErrGroupUnknown", got, err)
		}
	}
	if n := w.count("level=WARN"); n != 1 || w.count("the group is unknown") != 1 {
		t.Errorf("%d warnings, want 1 saying the group is unknown:\n%s", n, w.logs.String())
	}
}
