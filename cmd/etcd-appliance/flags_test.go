package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// stdoutOf runs f with os.Stdout going to a file, and returns what f wrote.
func stdoutOf(t *testing.T, f func()) string {
	t.Helper()
	file, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	saved := os.Stdout
	os.Stdout = file
	defer func() { os.Stdout = saved }()
	f()
	b, err := os.ReadFile(file.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBadFlagIsOneLine: a bad flag or value is refused with exit 2 and one
// line naming the flag and the value, never the whole usage.
func TestBadFlagIsOneLine(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), refusalTimeout)
	defer cancel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--stale-grace", "5x"},
			`etcd-appliance run: invalid argument "5x" for "--stale-grace": time: unknown unit "x" in duration "5x"`},
		{[]string{"run", "--client-port=http"}, `invalid argument "http" for "--client-port"`},
		{[]string{"run", "-stale-grace=5s"}, `unknown flag "-stale-grace=5s": flags take two dashes: --stale-grace=5s`},
		{[]string{"run", "-x"}, `unknown flag "-x"`},
		{[]string{"run", "--no-such-flag"}, `unknown flag "--no-such-flag"`},
		{[]string{"backup", "--dns-ttl", "1m"}, `invalid argument "1m" for "--dns-ttl"`},
		{[]string{"restore", "--yes=perhaps"}, `invalid argument "perhaps" for "--yes"`},
		{[]string{"status", "--timeout"}, `flag "--timeout" needs a value`},
		{[]string{"status", "--wait-healthy=soon"}, `invalid argument "soon" for "--wait-healthy"`},
		{[]string{"demo", "--members", "three"}, `invalid argument "three" for "--members"`},
		{[]string{"demo", "--members", "1"}, `--members 1 is out of range: give 3 to 9`},
		{[]string{"demo", "--members", "2"}, `--members 2 is out of range: give 3 to 9`},
		{[]string{"demo", "--members", "10"}, `--members 10 is out of range: give 3 to 9`},
		{[]string{"status", "--api", "ftp://10.0.1.5:2378"}, `--api "ftp://10.0.1.5:2378": scheme "ftp": want http:// or https://`},
		{[]string{"status", "--api", "10.0.1.5:api"}, `--api "10.0.1.5:api": not a URL`},
		{[]string{"status", "--api", "http://"}, `--api "http://": no host`},
		{[]string{"restore", "--list", "--store", "file:///x"}, "the cluster's name is unknown: set --cluster-name, or --group-file"},
		{[]string{"restore", "--set-aside", "--store", "ftp://x"}, `--store`},
		{[]string{"version", "--verbose"}, `unknown flag "--verbose"`},
		{[]string{"iam-policy", "--lifecycle-hooks=maybe"}, `invalid argument "maybe" for "--lifecycle-hooks"`},
		{[]string{"completion", "fish"}, "completion bash or completion zsh"},
		{[]string{"completion"}, "completion bash or completion zsh"},
	} {
		var code int
		out := stderrOf(t, func() { code = run(ctx, tt.args) })
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != badConfigExit(tt.args) || len(lines) != 1 || !strings.Contains(lines[0], tt.want) {
			t.Errorf("%q = exit %d, stderr:\n%s\nwant exit %d and one line with %q", tt.args, code, out, badConfigExit(tt.args), tt.want)
		}
	}
}

// TestHelpNamesEachFlagsVariable: --help lists the flags with two dashes,
// each with the variables that set it, on stdout, and exits 0.
func TestHelpNamesEachFlagsVariable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), refusalTimeout)
	defer cancel()
	for _, tt := range []struct {
		args    []string
		want    []string
		envLess string // a flag of no variable
	}{
		{[]string{"run", "--help"}, []string{
			"Usage: etcd-appliance run [flags]",
			"--stale-grace duration how long a member's instance may be absent from the group before removal (env ETCD_APPLIANCE_STALE_GRACE) (default 30s)",
			"(env ETCD_APPLIANCE_HOSTED_ZONE, or HOSTED_ZONE)",
			"(env ETCD_APPLIANCE_REGIONS, or ACTIVE_REGIONS)",
		}, ""},
		{[]string{"restore", "-h"}, []string{"--from string", "(env ETCD_APPLIANCE_STORE)"}, ""},
		{[]string{"status", "--help"}, []string{"--api string", "(env ETCD_APPLIANCE_API)"}, "--timeout"},
		{[]string{"iam-policy", "--help"}, []string{"(env ETCD_APPLIANCE_HOSTED_ZONE, or HOSTED_ZONE)"}, "--store-bucket"},
		{[]string{"demo", "--help"}, []string{"--members int", "(default 3)"}, "--members"},
		{[]string{"completion", "--help"}, []string{"Usage: etcd-appliance completion bash|zsh"}, ""},
		{[]string{"version", "--help"}, []string{"Usage: etcd-appliance version", "print the appliance and bundled etcd versions."}, ""},
	} {
		var code int
		var stderr string
		stdout := stdoutOf(t, func() { stderr = stderrOf(t, func() { code = run(ctx, tt.args) }) })
		flat := strings.Join(strings.Fields(stdout), " ") // as if unwrapped
		if code != 0 || stderr != "" {
			t.Errorf("%q = exit %d, stderr %q; want 0 and help on stdout only", tt.args, code, stderr)
		}
		for _, want := range tt.want {
			if !strings.Contains(flat, strings.Join(strings.Fields(want), " ")) {
				t.Errorf("%q lacks %q:\n%s", tt.args, want, stdout)
			}
		}
		if tt.envLess == "" {
			continue
		}
		for _, line := range strings.Split(stdout, "\n") {
			if strings.Contains(line, tt.envLess+" ") && strings.Contains(line, "(env ") {
				t.Errorf("%q shows a variable for %s, which has none: %s", tt.args, tt.envLess, line)
			}
		}
	}

	// Every flag of run shows its variable.
	stdout := stdoutOf(t, func() { run(ctx, []string{"run", "--help"}) })
	flags := strings.Count(stdout, "\n      --")
	if env := strings.Count(strings.Join(strings.Fields(stdout), " "), "(env ETCD_APPLIANCE_"); flags < 30 || env != flags {
		t.Errorf("run --help shows %d flags and %d variables, want one for each:\n%s", flags, env, stdout)
	}
}

// TestFlagListIsWhatCompletionOffers: `<command> __flags` lists the
// command's flags and nothing else, and runs nothing.
func TestFlagListIsWhatCompletionOffers(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), refusalTimeout)
	defer cancel()
	for cmd, want := range map[string][]string{
		"run":        {"--stale-grace", "--etcd-flag", "--provider"},
		"restore":    {"--from", "--set-aside", "--store"},
		"status":     {"--api", "--wait-healthy"},
		"demo":       {"--members", "--keep"},
		"iam-policy": {"--store-bucket"},
	} {
		var code int
		out := stdoutOf(t, func() { code = run(ctx, []string{cmd, flagListArg}) })
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for _, w := range want {
			if !strings.Contains(out, w+"\n") {
				t.Errorf("%s %s lacks %s:\n%s", cmd, flagListArg, w, out)
			}
		}
		for _, l := range lines {
			if !strings.HasPrefix(l, "--") || strings.ContainsAny(l, " =") {
				t.Errorf("%s %s printed %q, not a flag", cmd, flagListArg, l)
			}
		}
		if code != 0 {
			t.Errorf("%s %s = exit %d, want 0", cmd, flagListArg, code)
		}
	}
}

// TestBashCompletion runs the bash script's function against a stand-in
// binary that lists two flags, as `<command> __flags` does.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash, which the completion script is for, is missing: %v", err)
	}
	dir := t.TempDir()
	script := stdoutOf(t, func() {
		if code := runCompletion([]string{"bash"}, os.Stdout); code != 0 {
			t.Errorf("completion bash = exit %d", code)
		}
	})
	fake := filepath.Join(dir, "etcd-appliance")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n[ \"$2\" = __flags ] && printf -- '--stale-grace\\n--store\\n--data-dir\\n'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) string {
		t.Helper()
		prog := script + `
COMP_WORDS=(` + strings.Join(words, " ") + `)
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_etcd_appliance
echo "${COMPREPLY[*]}"`
		out, err := exec.Command(bash, "--norc", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, tt := range []struct {
		words []string
		want  string
	}{
		{[]string{fake, "re"}, "restore"},
		{[]string{fake, "co"}, "completion"},
		{[]string{fake, "cl"}, "client-cert"},
		{[]string{fake, "run", "--st"}, "--stale-grace --store"},
		{[]string{fake, "backup", "--data-dir", "/x", "--d"}, "--data-dir"},
		{[]string{fake, "completion", "z"}, "zsh"},
	} {
		if got := complete(tt.words...); got != tt.want {
			t.Errorf("completing %q = %q, want %q", tt.words[1:], got, tt.want)
		}
	}
}

// TestZshCompletionScript checks the zsh script's shape: the machines of
// the tests have no zsh to parse it, so its syntax is not checked here.
func TestZshCompletionScript(t *testing.T) {
	var b strings.Builder
	if code := runCompletion([]string{"zsh"}, &b); code != 0 || !strings.HasPrefix(b.String(), "#compdef etcd-appliance") ||
		!strings.Contains(b.String(), "compadd -- run etcd status") || !strings.Contains(b.String(), flagListArg) {
		t.Fatalf("completion zsh = exit %d:\n%s", code, b.String())
	}
}

// TestBadEtcdFlagRefusesTheStart: an extra etcd flag the bundled etcd does
// not know or take, or one the appliance sets itself, is refused with exit
// 2 and one line naming it, before anything starts; several may come in
// one variable.
func TestBadEtcdFlagRefusesTheStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), refusalTimeout)
	defer cancel()
	external := filepath.Join(t.TempDir(), "etcd")
	if err := os.WriteFile(external, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		env  string // ETCD_APPLIANCE_ETCD_FLAG
		args []string
		want []string
	}{
		{"--snapshot-count=5000 --max-txn-ops=lots", nil,
			[]string{`--etcd-flag "--max-txn-ops=lots": etcd's --max-txn-ops does not take "lots"`}},
		{"--snapshot-cnt=5000", nil, []string{`--etcd-flag "--snapshot-cnt=5000": the bundled etcd`, "has no flag --snapshot-cnt"}},
		{"", []string{"--etcd-flag=--name=x"}, []string{`--etcd-flag "--name=x": the appliance sets --name itself`}},
		{"--listen-client-urls=http://0.0.0.0:2379 --force-new-cluster", nil,
			[]string{"sets --listen-client-urls itself", "sets --force-new-cluster itself"}},
		// Good flags pass: the next check, of the group file, refuses.
		{"--snapshot-count=5000 --max-txn-ops=256", []string{"--etcd-flag", "--heartbeat-interval 200"},
			[]string{`g.json`}},
		// An external etcd may know other flags, not the appliance's own.
		{"--flag-of-another-etcd=1 --data-dir=/x", []string{"--etcd-binary", external},
			[]string{"sets --data-dir itself"}},
	} {
		t.Setenv("ETCD_APPLIANCE_ETCD_FLAG", tt.env)
		for _, cmd := range []string{"run", "backup"} {
			args := append([]string{cmd, "--instance-id", "i-1", "--group-file", "g.json", "--data-dir", t.TempDir(),
				"--store", "file://" + t.TempDir()}, tt.args...)
			var code int
			out := stderrOf(t, func() { code = run(ctx, args) })
			lines := strings.Split(strings.TrimSpace(out), "\n")
			ok := code == badConfigExit(args) && len(lines) == 1
			for _, w := range tt.want {
				ok = ok && strings.Contains(lines[0], w)
			}
			if !ok || strings.Contains(out, "flag-of-another-etcd") || strings.Contains(out, "snapshot-count") {
				t.Errorf("%s with ETCD_APPLIANCE_ETCD_FLAG=%q %q: exit %d, stderr:\n%s\nwant exit 2 and one line with %q",
					cmd, tt.env, tt.args, code, out, tt.want)
			}
		}
	}
}
