package testcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// BinaryEnv names the environment variable that points the harness at a
// prebuilt etcd-appliance binary, so that CI builds it once.
const BinaryEnv = "ETCD_APPLIANCE_BIN"

// modulePath is the module whose cmd/etcd-appliance BuildBinary builds.
const modulePath = "github.com/etcd-appliance/etcd-appliance"

// BuildBinary returns the etcd-appliance binary to run: $ETCD_APPLIANCE_BIN
// when it names an existing file, otherwise a fresh `go build` of
// ./cmd/etcd-appliance into outDir. The module root is found by walking up
// from the working directory, then from this source file.
func BuildBinary(ctx context.Context, outDir string) (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("%s=%q: %w", BinaryEnv, p, err)
		}
		if fi.IsDir() {
			return "", fmt.Errorf("%s=%q is a directory, not the etcd-appliance binary", BinaryEnv, p)
		}
		return filepath.Abs(p)
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("building etcd-appliance: %w", err)
	}
	out, err := filepath.Abs(filepath.Join(outDir, "etcd-appliance"))
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/etcd-appliance")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/etcd-appliance in %s: %w\n%s", root, err, b)
	}
	return out, nil
}

// moduleRoot finds the directory holding this module's go.mod.
func moduleRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if isOurModule(filepath.Join(dir, "go.mod")) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("module " + modulePath + " not found above the working directory: set " + BinaryEnv + " to a built etcd-appliance")
}

func isOurModule(goMod string) bool {
	f, err := os.Open(goMod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`) == modulePath
		}
	}
	return false
}
