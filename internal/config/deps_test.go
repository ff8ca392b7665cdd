package config

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestConfigLinksNoAWSSDK: config is flags and their checks. It checks
// --store and --retain-* through internal/snapshot/spec, never through the
// stores themselves, so it links no AWS SDK.
func TestConfigLinksNoAWSSDK(t *testing.T) {
	// go test puts its own go first in PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("finding the go command: %v", err)
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		var stderr string
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list -deps: %v\n%s", err, stderr)
	}
	var sdk []string
	for pkg := range strings.FieldsSeq(string(out)) {
		if strings.HasPrefix(pkg, "github.com/aws/") {
			sdk = append(sdk, pkg)
		}
	}
	if len(sdk) > 0 {
		t.Errorf("internal/config depends on the AWS SDK (%s, ...): check flags with dependency-free code like internal/snapshot/spec, not with the stores or the provider", sdk[0])
	}
}
