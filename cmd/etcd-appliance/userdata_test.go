package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// userDataScript is the launch template's user data script, with its !Sub
// variables as written (${Name}).
func userDataScript(t *testing.T) string {
	t.Helper()
	lt, _ := resourceProperties(t, readTemplate(t), "LaunchTemplate")["LaunchTemplateData"].(map[any]any)
	userData, _ := lt["UserData"].(map[any]any)
	sub, _ := userData["Fn::Base64"].([]any)
	if len(sub) == 0 {
		t.Fatal("the launch template's UserData is not Fn::Base64 of !Sub [script, vars]")
	}
	return fmt.Sprint(sub[0])
}

// TestUserDataIsBash: the script parses as bash once CloudFormation has
// substituted its variables (bash -n; nothing runs).
func TestUserDataIsBash(t *testing.T) {
	script := regexp.MustCompile(`\$\{[A-Za-z0-9:]+\}`).ReplaceAllString(userDataScript(t), "x")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-n")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("the user data is no bash script: %v\n%s", err, out)
	}
}

// TestUserDataMountsTheDataVolumeBeforeTheUnit: with DedicatedDataVolume,
// the volume is formatted only when blank and mounted on the data dir
// through /etc/fstab before the appliance starts; the instance maps it
// encrypted, deleted with the instance.
func TestUserDataMountsTheDataVolumeBeforeTheUnit(t *testing.T) {
	script := userDataScript(t)
	const dataDir = "/var/lib/etcd-appliance"
	steps := []string{
		"if [ '${DedicatedDataVolume}' = true ]; then",
		`blkid -p "$dev" >/dev/null 2>&1 || mkfs.ext4`,
		"/etc/fstab",
		"mount " + dataDir + "\n",
		"systemctl enable --now etcd-appliance.service",
	}
	at := 0
	for _, step := range steps {
		i := strings.Index(script[at:], step)
		if i < 0 {
			t.Fatalf("the user data lacks %q after position %d (steps in order: %q):\n%s", step, at, steps, script)
		}
		at += i + len(step)
	}
	if !strings.Contains(script, "UUID=$uuid "+dataDir+" ext4 ") {
		t.Errorf("the user data does not mount the volume on %s by its UUID", dataDir)
	}

	lt, _ := resourceProperties(t, readTemplate(t), "LaunchTemplate")["LaunchTemplateData"].(map[any]any)
	// !If [HasDedicatedDataVolume, [root, data], [root]]
	var volume map[any]any
	if cond, ok := lt["BlockDeviceMappings"].([]any); ok && len(cond) == 3 && cond[0] == "HasDedicatedDataVolume" {
		if with, _ := cond[1].([]any); len(with) == 2 {
			volume, _ = with[1].(map[any]any)
		}
	}
	ebs, _ := volume["Ebs"].(map[any]any)
	if volume["DeviceName"] != "/dev/sdf" || ebs["Encrypted"] != true || ebs["DeleteOnTermination"] != true ||
		ebs["VolumeSize"] != "DataVolumeSize" {
		t.Errorf("the dedicated data volume is mapped as %v, want /dev/sdf, encrypted, of DataVolumeSize, deleted with the instance", volume)
	}
}
