package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadGroupFileRefusesTheStart: a missing or garbled group file, or one
// that does not list the instance, is a configuration error: exit 2 with
// one line naming the file and the problem, no retries.
func TestBadGroupFileRefusesTheStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), refusalTimeout)
	defer cancel()
	dir := t.TempDir()
	garbled := filepath.Join(dir, "garbled.json")
	other := filepath.Join(dir, "other.json")
	for path, content := range map[string]string{
		garbled: "garbage{",
		other:   `{"name": "g", "instances": [{"id": "i-2", "address": "127.0.0.2", "state": "running"}]}`,
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ file, says string }{
		{filepath.Join(dir, "missing.json"), "no such file or directory"},
		{garbled, "does not parse"},
		{other, `does not list instance "i-1"`},
	} {
		for _, cmd := range []string{"run", "backup"} {
			args := []string{cmd, "--instance-id", "i-1", "--group-file", c.file, "--data-dir", t.TempDir(),
				"--store", "file://" + t.TempDir()}
			var code int
			out := stderrOf(t, func() { code = run(ctx, args) })
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if code != badConfigExit(args) || len(lines) != 1 || !strings.Contains(lines[0], c.file) || !strings.Contains(lines[0], c.says) {
				t.Errorf("%s with %s: exit %d, stderr:\n%s\nwant exit %d and one line naming the file and saying %q",
					cmd, filepath.Base(c.file), code, out, badConfigExit(args), c.says)
			}
		}
	}
}
