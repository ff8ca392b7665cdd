package testcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// etcdMain is the whole main package of an etcd built by BuildEtcd: the
// server module's etcdmain is what etcd's own binary runs.
const etcdMain = `package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
`

// BuildEtcd returns an etcd server binary of the release version ("3.5.36"),
// built from the module proxy (go.etcd.io/etcd/server/v3@v<version>) into
// a tiny main module, once: the binary is cached under the user's cache
// dir (etcd-appliance-test/etcd-<version>/etcd) and reused while it
// reports that version. The first build downloads etcd's modules and takes
// minutes.
func BuildEtcd(ctx context.Context, version string) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("building etcd %s: no cache dir: %w", version, err)
	}
	dir := filepath.Join(cache, "etcd-appliance-test", "etcd-"+version)
	bin := filepath.Join(dir, "etcd")
	if got, err := etcdVersion(ctx, bin); err == nil && got == version {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("building etcd %s: %w", version, err)
	}
	// Built in a directory of its own and renamed into place: concurrent
	// test binaries never see half a binary.
	src, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("building etcd %s: %w", version, err)
	}
	defer os.RemoveAll(src)
	goMod := "module etcdbuild\n\ngo 1.23\n"
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte(goMod), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(etcdMain), 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(src, "etcd")
	for _, args := range [][]string{
		{"get", "go.etcd.io/etcd/server/v3@v" + version},
		{"build", "-o", out, "."},
	} {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = src
		// Outside any workspace, resolving the module's own requirements.
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"))
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("building etcd %s: go %s: %w\n%s", version, strings.Join(args, " "), err, b)
		}
	}
	if got, err := etcdVersion(ctx, out); err != nil || got != version {
		return "", fmt.Errorf("building etcd %s: the binary built reports version %q (%v)", version, got, err)
	}
	if err := os.Rename(out, bin); err != nil {
		return "", fmt.Errorf("building etcd %s: %w", version, err)
	}
	return bin, nil
}

// etcdVersion is the version etcd's --version prints.
func etcdVersion(ctx context.Context, bin string) (string, error) {
	b, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "etcd Version:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("%s --version printed no version", bin)
}
