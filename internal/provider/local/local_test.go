package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

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
		{"bad json", `{"name": "demo", "instances": [`, "parsing group file"},
		{"not an object", `[1, 2]`, "parsing group file"},
		{"wrong field type", `{"instances": [{"id": 7}]}`, "parsing group file"},
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

	got, err := New(path, "i-b").Self(ctx)
	if err != nil {
		t.Fatalf("Self: %v", err)
	}
	if want := sampleFile().Instances[1]; got != want {
		t.Errorf("Self = %+v, want %+v", got, want)
	}

	_, err = New(path, "i-z").Self(ctx)
	if err == nil || !strings.Contains(err.Error(), `"i-z"`) || !strings.Contains(err.Error(), path) {
		t.Errorf("Self of an absent instance: error %v, want one naming i-z and the file", err)
	}

	if _, err := New(filepath.Join(t.TempDir(), "nope.json"), "i-a").Self(ctx); err == nil {
		t.Error("Self on a missing group file succeeded")
	}
}

func TestProviderInstances(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "group.json")
	if err := Write(path, sampleFile()); err != nil {
		t.Fatal(err)
	}
	got, err := New(path, "i-a").Instances(ctx)
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
			insts, err := New(p, "i-a").Instances(ctx)
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
			if got := New(tt.path, "i-a").Name(); got != tt.want {
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
	got, err := New(path, "i-1").Instances(context.Background())
	if !errors.Is(err, provider.ErrGroupUnknown) || got != nil {
		t.Fatalf("Instances() = %v, %v; want ErrGroupUnknown for an empty listing", got, err)
	}
}
