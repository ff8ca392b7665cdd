package etcd

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// versionTimeout bounds `etcd --version`, which answers at once.
const versionTimeout = 10 * time.Second

// BinaryVersion is the version of the etcd that command (program and
// leading arguments, as the appliance runs it) runs, as `--version` prints
// it: the version gate needs it before that etcd ever starts.
func BinaryVersion(ctx context.Context, command []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	argv := append(append([]string(nil), command[1:]...), "--version")
	out, err := exec.CommandContext(ctx, command[0], argv...).Output()
	if err != nil {
		return "", fmt.Errorf("running %s --version: %w", strings.Join(command, " "), err)
	}
	v, ok := parseVersionOutput(string(out))
	if !ok {
		return "", fmt.Errorf("%s --version printed no \"etcd Version:\" line", strings.Join(command, " "))
	}
	return v, nil
}

// parseVersionOutput reads the version from etcd's --version output
// ("etcd Version: 3.5.21" among other lines).
func parseVersionOutput(out string) (string, bool) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "etcd Version:"); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}
