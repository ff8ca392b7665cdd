package main

// The systemd unit (deploy/systemd/etcd-appliance.service) is tested here,
// next to the template that inlines it: its sandbox as systemd itself rates
// it, and the figures it must agree with in the code.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/config"
)

// maxUnitExposure is the highest `systemd-analyze security` exposure the
// unit may have (0 safest, 10 unsafe; systemd calls up to 2 "OK").
const maxUnitExposure = 2.0

// leaveBudget is how long leaving the cluster may take on a stop
// (internal/appliance's leaveTimeout): TimeoutStopSec must cover it and
// etcd's --stop-timeout.
const leaveBudget = 15 * time.Second

// overallExposure is systemd-analyze's summary line.
var overallExposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9]+(?:\.[0-9]+)?)`)

// TestUnitExposureIsLow rates the unit with `systemd-analyze security
// --offline=true` (systemd 250 or newer), as an operator would. The tool is
// part of the Debian package systemd, which every machine that runs the
// tests has: its absence fails the test, as a skip would let the unit's
// sandbox rot unseen.
func TestUnitExposureIsLow(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is missing (%v): install it (apt-get install systemd) to rate %s", err, unitPath)
	}
	unit, err := filepath.Abs(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, "security", "--offline=true", "--no-pager", unit)
	cmd.Env = append(os.Environ(), "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s security --offline=true %s: %v\n%s%s", tool, unit, err, out, stderr.Bytes())
	}
	m := overallExposure.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze printed no overall exposure level:\n%s%s", out, stderr.Bytes())
	}
	score, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("systemd-analyze security: %s exposure %.1f", filepath.Base(unit), score)
	if score > maxUnitExposure {
		t.Errorf("the unit's exposure is %.1f, above %.1f; what systemd-analyze counts against it:\n%s",
			score, maxUnitExposure, exposed(out))
	}
}

// exposed are the lines of systemd-analyze's table that count against the
// unit (marked ✗).
func exposed(out []byte) string {
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "✗") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// unitSettings reads the unit's [Service] section: every value of each key,
// in order (an empty assignment resets, as in systemd).
func unitSettings(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	settings := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q is no key=value", unitPath, line)
			}
			if v == "" {
				settings[k] = []string{}
				continue
			}
			settings[k] = append(settings[k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return settings
}

// TestUnitAgreesWithTheCode: the unit gives a clean stop its time (leave +
// --stop-timeout), does not restart on a configuration error (exit 2, as
// TestBadConfigurationExitsNonZero shows), makes --data-dir's default its
// writable state directory and runs as no privileged user.
func TestUnitAgreesWithTheCode(t *testing.T) {
	s := unitSettings(t)
	last := func(k string) string {
		if v := s[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}

	stop, err := time.ParseDuration(last("TimeoutStopSec"))
	if err != nil {
		t.Errorf("TimeoutStopSec=%q is not a duration with a unit (e.g. 45s): %v", last("TimeoutStopSec"), err)
	}
	if need := leaveBudget + config.NewConfig().StopTimeout; stop <= need {
		t.Errorf("TimeoutStopSec=%s, want more than leaving (%s) + --stop-timeout (%s) = %s, with room for the appliance's own stop",
			stop, leaveBudget, config.NewConfig().StopTimeout, need)
	}
	prevented := strings.Fields(strings.Join(s["RestartPreventExitStatus"], " "))
	if !slices.Contains(prevented, strconv.Itoa(exitConfig)) || slices.Contains(prevented, "2") {
		t.Errorf("RestartPreventExitStatus=%v: want %d (a configuration error would restart forever) and not 2 (a panic must restart)",
			s["RestartPreventExitStatus"], exitConfig)
	}
	if n, err := strconv.Atoi(last("LimitNOFILE")); err != nil || n < 65536 {
		t.Errorf("LimitNOFILE=%q, want at least 65536 (etcd keeps a connection per client and peer)", last("LimitNOFILE"))
	}

	if dir := "/var/lib/" + last("StateDirectory"); dir != config.NewConfig().DataDir {
		t.Errorf("StateDirectory=%q is %s, want --data-dir's default %s: the sandbox makes the rest read-only",
			last("StateDirectory"), dir, config.NewConfig().DataDir)
	}
	if u := last("User"); u == "" || u == "root" || u == "0" {
		t.Errorf("User=%q: the appliance must run as its own user", u)
	}
	if last("ProtectSystem") != "strict" || last("NoNewPrivileges") != "yes" || last("PrivateTmp") != "yes" {
		t.Errorf("ProtectSystem=%q NoNewPrivileges=%q PrivateTmp=%q, want strict, yes, yes",
			last("ProtectSystem"), last("NoNewPrivileges"), last("PrivateTmp"))
	}
	for _, k := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		if v, ok := s[k]; !ok || len(v) != 0 {
			t.Errorf("%s=%v, want it set empty (etcd's ports are above 1024)", k, v)
		}
	}
}

// TestTemplateCreatesTheUnitsUser: the user data creates the user the unit
// runs as before it starts the unit (systemd refuses to start a unit whose
// user does not exist).
func TestTemplateCreatesTheUnitsUser(t *testing.T) {
	user := unitSettings(t)["User"]
	if len(user) != 1 {
		t.Fatalf("the unit sets User= %d times, want once: %v", len(user), user)
	}
	lt, _ := resourceProperties(t, readTemplate(t), "LaunchTemplate")["LaunchTemplateData"].(map[any]any)
	userData, _ := lt["UserData"].(map[any]any)
	sub, _ := userData["Fn::Base64"].([]any)
	if len(sub) == 0 {
		t.Fatal("the launch template's UserData is not Fn::Base64 of !Sub [script, vars]")
	}
	script := fmt.Sprint(sub[0])
	add := regexp.MustCompile(`(?m)^[^#\n]*useradd --system [^\n]*\\\n[^\n]* ` + regexp.QuoteMeta(user[0]) + `$`).FindStringIndex(script)
	start := strings.Index(script, "systemctl enable --now etcd-appliance.service")
	if add == nil || start < 0 || add[0] > start {
		t.Errorf("the user data does not create the system user %s (useradd --system …) before it starts the unit:\n%s", user[0], script)
	}
}
