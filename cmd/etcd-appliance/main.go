// Command etcd-appliance turns the instances of a group (an EC2 Auto Scaling
// group, or a local group file) into a self-managing etcd cluster: it
// bootstraps or joins the cluster, supervises etcd, removes members whose
// instances are gone and leaves cleanly.
//
// Subcommands:
//
//	run      the daemon, one per instance
//	etcd     the bundled etcd server (what `run` executes as its child)
//	status   the cluster's members, roles and health, from the appliance API
//	demo     a local group of 3 on loopback addresses: bootstrap, replace, verify
//	iam-policy  the least-privilege IAM policy for the enabled features
//	backup   a snapshot of the cluster now, into --store
//	restore  a snapshot into this instance's data dir, by hand
//	client-cert  a user certificate of the cluster CA (--tls auto), for etcdctl
//	ca       the cluster CA's rotation (--tls auto): shown, or one step taken when
//	         it is safe: ca --step introduce|promote|retire (docs/operations.md, TLS)
//	version  the appliance's and the bundled etcd's versions
//	completion  a bash or zsh completion script (completion bash|zsh)
//
// Flags take two dashes (--flag value or --flag=value); a bad flag or value
// is refused with one line naming it, and exit 2. No subcommand takes
// positional arguments: one is refused likewise. `<command> --help` lists a
// command's flags, each with its environment variable.
//
// Flags of `run` (each also as the environment variable ETCD_APPLIANCE_<FLAG>,
// dashes as underscores, used when the flag is not on the command line; an
// ETCD_APPLIANCE_* variable that sets no flag is warned of, as etcd does):
//
//	--provider local                  where identity and group come from: local or aws
//	--instance-id ""                  local provider: this instance's id in the group file
//	--group-file ""                   local provider: JSON file listing the group's instances
//	--cluster-name ""                 name of the cluster (default: the group's name)
//	--data-dir /var/lib/etcd-appliance
//	--address ""                      IP to serve on (default: the instance's address)
//	--client-port 2379 --peer-port 2380 --metrics-port 2381 --api-port 2378
//	--etcd-binary ""                  external etcd instead of the bundled one (its version: `<binary> --version`)
//	--etcd-flag ""                    extra etcd flags, space-separated, repeatable; checked before start against
//	                                  the bundled etcd's flags (only the appliance's own when --etcd-binary is set)
//	--reconcile-interval 5s           leader housekeeping period
//	--startup-interval 500ms          how often a starting instance looks again
//	--stale-grace 30s                 absence from the group before a member is removed
//	--learner-timeout 2m              an added member that never started is removed after this
//	--stop-timeout 20s                etcd's grace after SIGTERM before SIGKILL
//	--leave-on-shutdown never         never: keep membership on SIGTERM; always: remove this member first
//	--launch-timeout 15m              aws: a new instance not a healthy voter by then abandons the group's launch hook
//	--quota-backend-bytes 2147483648
//	--auto-compaction-retention 1h
//	--hosted-zone ""                  Route53 zone for the SRV/A records (aws; the seed's HOSTED_ZONE works too)
//	--dns-name ""                     records' name under the zone (default: the cluster name)
//	--dns-ttl 60
//	--regions ""                      multi-region mode over these regions, e.g. eu-west-1,eu-central-1 (aws; the seed's ACTIVE_REGIONS works too)
//	--cluster-tag-key ""              multi-region: the tag naming the cluster (default: aws:cloudformation:stack-name)
//	--multi-region-network public     multi-region: public (public names, rules by public IP) or private (peered VPCs)
//	--heartbeat-interval 0 --election-timeout 0
//	                                  etcd's raft timing on every member (0: etcd's 100ms/1s; multi-region: derived from the round trips)
//	--tls ""                          off (plaintext), auto (a cluster CA the appliance keeps; every instance issues
//	                                  itself a short-lived certificate and renews it) or files (the operator's);
//	                                  default: auto with a CA source, else off. A plaintext cluster restarted with
//	                                  TLS moves to it member by member
//	--tls-plaintext-clients false     tls on: etcd's client port serves plaintext clients too (clients moving to TLS)
//	--tls-plaintext-peers false       tls on: the way back, each member switching its peer URL to http in turn
//	--tls-ca-dir ""                   tls auto: the CA's directory, shared by every instance
//	--tls-ca-secret ""                tls auto, aws: the CA's AWS Secrets Manager secret (created by the first instance)
//	--tls-cert-lifetime 168h          tls auto: each instance's certificate, renewed after two thirds (at least 2m)
//	--tls-ca-refresh-interval 5m      tls auto: how often the CA store is read again to roll out a CA rotation's
//	                                  step (with --tls-ca-secret, one GetSecretValue per instance each time)
//	--tls-cert-file "" --tls-key-file "" --tls-trusted-ca-file ""
//	                                  tls files: the member's certificate and key, and the CA bundle
//	--etcd-auth false                 etcd's RBAC on (auth enable), the appliance as a user with the root role through its
//	                                  certificate's common name (etcd-appliance with tls auto); needs --tls auto or files
//	--log-format json|text            default: json unless stderr is a terminal; etcd's lines re-encoded into it
//	--log-level info                  for etcd's lines too
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "etcd" {
		// etcd installs its own signal handling; ours must not intercept it.
		os.Exit(runEtcd(os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// commands are the subcommands, in the order usage lists them, with what
// each does.
func commands() []struct{ name, summary string } {
	return []struct{ name, summary string }{
		{"run", "run the appliance daemon on this instance"},
		{"etcd", "run the bundled etcd server (flags are etcd's)"},
		{"status", "show the cluster's members and health"},
		{"demo", "run a local 3-instance demo (no AWS needed)"},
		{"iam-policy", "print the least-privilege IAM policy for the enabled features"},
		{"backup", "take a snapshot of the cluster now and store it (--store)"},
		{"restore", "restore a snapshot into this instance (--from OBJECT --yes), list them (--list)"},
		{"client-cert", "issue a client certificate of the cluster CA (--tls auto) for etcdctl and programs"},
		{"ca", "rotate the cluster CA (--tls auto): show, or --step introduce|promote|retire when safe"},
		{"version", "print the appliance and bundled etcd versions"},
		{"completion", "print a bash or zsh completion script: completion bash|zsh"},
	}
}

// commandSummary is what a subcommand does, or "".
func commandSummary(name string) string {
	for _, c := range commands() {
		if c.name == name {
			return c.summary
		}
	}
	return ""
}

func usage() {
	var b strings.Builder
	b.WriteString("etcd-appliance: a self-managing etcd cluster on a group of instances\n\n")
	b.WriteString("Usage: etcd-appliance <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-11s %s\n", c.name, c.summary)
	}
	b.WriteString("\nFlags are --flag or --flag=value. Run 'etcd-appliance <command> --help' for a command's flags.\n")
	fmt.Fprint(os.Stderr, b.String())
}

// Exit codes: exitUsage for a bad command line, environment or
// configuration; `run` says exitConfig (sysexits' EX_CONFIG) instead, which
// the systemd unit does not restart (RestartPreventExitStatus), while a
// crash, a panic's 2 included, is restarted.
const (
	exitUsage  = 2
	exitConfig = 78
)

// run dispatches a subcommand and returns the exit code.
func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		usage()
		return 2
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		if code := runDaemon(ctx, rest); code != exitUsage {
			return code
		}
		// Under systemd, a configuration error must not look like a Go
		// panic (which exits 2 too) and must not be restarted.
		return exitConfig
	case "etcd":
		return runEtcd(rest)
	case "status":
		return runStatus(ctx, rest)
	case "demo":
		return runDemo(ctx, rest)
	case "iam-policy":
		return runIAMPolicy(rest, os.Stdout)
	case "backup":
		return runBackup(ctx, rest, os.Stdout)
	case "restore":
		return runRestore(ctx, rest, os.Stdout)
	case "client-cert":
		return runClientCert(ctx, rest, os.Stdout)
	case "ca":
		return runCA(ctx, rest, os.Stdout, os.Stderr)
	case "version", "--version":
		if code, ok := parseFlags(newFlagSet("version"), rest); !ok {
			return code
		}
		printVersion(os.Stdout)
		return 0
	case "completion":
		return runCompletion(rest, os.Stdout)
	case "help", "-h", "--help":
		usage()
		return 0
	default:
		fmt.Fprintf(os.Stderr, "etcd-appliance: unknown command %q\n\n", cmd)
		usage()
		return 2
	}
}
