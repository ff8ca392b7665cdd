// Package etcdflags checks the extra flags the appliance passes to etcd
// (--etcd-flag) before etcd starts: that they leave alone what the appliance
// sets itself, and, for the bundled etcd, that etcd knows each one and takes
// its value. A flag etcd refuses would otherwise show as etcd exiting with
// its usage at every restart, and one that overrides the appliance's would
// break how members bootstrap, join and recover.
//
// It is apart from package config because it links etcd's server
// configuration, the one source of the bundled etcd's flag names.
package etcdflags

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	etcdversion "go.etcd.io/etcd/api/v3/version"
	cconfig "go.etcd.io/etcd/server/v3/config"
	"go.etcd.io/etcd/server/v3/embed"
)

// Check checks args, the extra etcd arguments in the order they are passed.
// bundled says that they go to the bundled etcd, whose flags they are then
// checked against; an external etcd binary, of another version, may know
// other flags, so only the appliance's own are refused then. Each problem
// names the argument and the fix.
func Check(args []string, bundled bool) error {
	var known *flag.FlagSet
	if bundled {
		known = BundledFlags()
	}
	var errs []error
	bad := func(given, format string, a ...any) {
		errs = append(errs, fmt.Errorf("--etcd-flag %q: %s", given, fmt.Sprintf(format, a...)))
	}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-"), "=")
		if !strings.HasPrefix(arg, "-") || name == "" || strings.HasPrefix(name, "-") {
			bad(arg, "is not a flag: etcd takes flags only, as --flag=value or --flag value")
			continue
		}
		// The next argument may be this flag's value (--flag value).
		takesNext := !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-")
		var f *flag.Flag
		if known != nil {
			f = known.Lookup(name)
		}
		if reason := refusedReason(name); reason != "" {
			bad(arg, "%s", reason)
			if takesNext && (f == nil || !isBool(f)) {
				i++
			}
			continue
		}
		if known == nil {
			if takesNext { // perhaps its value: the external etcd's flags are unknown
				i++
			}
			continue
		}
		if f == nil {
			bad(arg, "the bundled etcd %s has no flag --%s (see `etcd-appliance etcd --help`)", etcdversion.Version, name)
			if takesNext {
				i++
			}
			continue
		}
		if !hasValue {
			switch {
			case isBool(f):
				value = "true"
			case i+1 < len(args):
				i++
				value = args[i]
				arg += " " + value
			default:
				bad(arg, "etcd's --%s needs a value", name)
				continue
			}
		}
		if err := f.Value.Set(value); err != nil {
			// etcd's flag package says only "parse error": its default
			// shows what the flag takes.
			bad(arg, "etcd's --%s does not take %q: %v (its default: %q)", name, value, err, f.DefValue)
		}
	}
	return errors.Join(errs...)
}

// refusedReason says why an extra etcd flag is refused whatever its
// value, or "": the appliance sets the flags that make an instance the
// member it decided it is, and some flags would keep etcd from serving.
func refusedReason(name string) string {
	owned := func(why string) string { return "the appliance sets --" + name + " itself: " + why }
	switch {
	case name == "name":
		return owned("each member is named after its instance's id")
	case name == "data-dir":
		return owned("etcd's data lives under the appliance's --data-dir, which it sets aside and restores")
	case strings.HasPrefix(name, "initial-cluster"), name == "initial-advertise-peer-urls":
		return owned("it decides whether a member bootstraps a cluster or joins one, and with which peers")
	case strings.HasPrefix(name, "listen-"):
		return owned("etcd listens on the appliance's --address, --client-port, --peer-port and --metrics-port")
	case strings.HasPrefix(name, "advertise-"):
		return owned("peers and clients reach a member at its instance's address, which the appliance advertises")
	case name == "force-new-cluster":
		return owned("only its recovery of a lost quorum may force a new cluster")
	case name == "config-file":
		return "etcd would ignore its command line, which the appliance writes: pass the settings as --etcd-flag"
	case name == "version", name == "help", name == "h":
		return "etcd would print and exit instead of serving"
	}
	return ""
}

// BundledFlags is the bundled etcd's flag set, as `etcd-appliance etcd`
// parses it: embed's flags and those etcdmain adds to them.
func BundledFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	embed.NewConfig().AddFlags(fs)
	// etcdmain's newConfig registers these on top of embed's.
	fs.String("config-file", "", "")
	fs.Var(oneOf{"exit", "proxy"}, "discovery-fallback", "")
	fs.Var(oneOf{embed.ClusterStateFlagNew, embed.ClusterStateFlagExisting}, "initial-cluster-state", "")
	fs.Var(oneOf{string(cconfig.V2Depr1WriteOnly), string(cconfig.V2Depr1WriteOnlySkipCheck),
		string(cconfig.V2Depr1WriteOnlyDrop), string(cconfig.V2Depr2Gone)}, "v2-deprecation", "")
	fs.Bool("version", false, "")
	return fs
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// oneOf is a flag of etcdmain's that takes one of a few values.
type oneOf []string

func (o oneOf) String() string { return "" }

func (o oneOf) Set(v string) error {
	if !slices.Contains(o, v) {
		return fmt.Errorf("use one of %s", strings.Join(o, ", "))
	}
	return nil
}
