package testcluster

import (
	"os"
	"path/filepath"
	"testing"
)

func TestBuildBinaryHonoursEnv(t *testing.T) {
	t.Setenv(BinaryEnv, os.Args[0])
	got, err := BuildBinary(t.Context(), t.TempDir())
	if err != nil || got != os.Args[0] {
		t.Fatalf("BuildBinary = %q, %v; want %q", got, err, os.Args[0])
	}
	t.Setenv(BinaryEnv, filepath.Join(t.TempDir(), "missing"))
	if _, err := BuildBinary(t.Context(), t.TempDir()); err == nil {
		t.Fatal("BuildBinary accepted a missing binary")
	}
}
