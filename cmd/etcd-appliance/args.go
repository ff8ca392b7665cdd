package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/etcd-appliance/etcd-appliance/internal/config"
)

// flagListArg is the one argument that makes a command print its flags, one
// per line, and exit 0 before it reads anything else: the completion
// scripts ask the binary itself, so they list the flags of the version
// installed.
const flagListArg = "__flags"

// newFlagSet is a subcommand's flag set. Errors are returned, never printed
// with the whole usage: parseFlags reports them in one line.
func newFlagSet(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}

// parseFlags parses a subcommand's arguments, which are flags only: a
// positional argument (a typo such as `--keep true`, or a stray word) is
// refused with one line on fs's output rather than ignored, as is a bad
// flag or value. --help prints the flags on stdout, each with its
// environment variables. ok is false when the command is to exit with code:
// 0 after --help, 2 otherwise.
func parseFlags(fs *pflag.FlagSet, args []string) (code int, ok bool) {
	if len(args) == 1 && args[0] == flagListArg {
		printFlagNames(os.Stdout, fs)
		return 0, false
	}
	fs.Usage = func() { printHelp(os.Stdout, fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0, false
		}
		fmt.Fprintf(fs.Output(), "etcd-appliance %s: %s\n", fs.Name(), flagError(fs, err))
		return 2, false
	}
	if fs.NArg() > 0 {
		takes := "flags only"
		if !fs.HasFlags() {
			takes = "none"
		}
		fmt.Fprintf(fs.Output(), "etcd-appliance %s: unexpected argument %q: it takes %s (see --help)\n",
			fs.Name(), fs.Arg(0), takes)
		return 2, false
	}
	return 0, true
}

// flagError is the one line that says what of the command line is wrong:
// the flag, and the value it refused.
func flagError(fs *pflag.FlagSet, err error) string {
	var invalid *pflag.InvalidValueError
	var missing *pflag.NotExistError
	var noValue *pflag.ValueRequiredError
	switch {
	case errors.As(err, &invalid):
		return fmt.Sprintf("invalid argument %q for %q: %v", invalid.GetValue(), "--"+invalid.GetFlag().Name, errors.Unwrap(invalid))
	case errors.As(err, &missing) && missing.GetSpecifiedShortnames() != "":
		// The flag package took -name; pflag reads it as shorthands.
		given := missing.GetSpecifiedShortnames()
		name, _, _ := strings.Cut(given, "=")
		if fs.Lookup(name) != nil {
			return fmt.Sprintf("unknown flag %q: flags take two dashes: --%s", "-"+given, given)
		}
		return fmt.Sprintf("unknown flag %q (see --help)", "-"+given)
	case errors.As(err, &missing):
		return fmt.Sprintf("unknown flag %q (see --help)", "--"+missing.GetSpecifiedName())
	case errors.As(err, &noValue):
		return fmt.Sprintf("flag %q needs a value", "--"+noValue.GetSpecifiedName())
	}
	return err.Error()
}

// printHelp writes a command's usage: each flag, its default, and the
// environment variables that set it when it is not given.
func printHelp(w io.Writer, fs *pflag.FlagSet) {
	if !fs.HasFlags() {
		fmt.Fprintf(w, "Usage: etcd-appliance %s\n", fs.Name())
	} else {
		fmt.Fprintf(w, "Usage: etcd-appliance %s [flags]\n", fs.Name())
	}
	if about := commandSummary(fs.Name()); about != "" {
		fmt.Fprintf(w, "\n%s.\n", about)
	}
	if fs.HasFlags() {
		fmt.Fprintf(w, "\nFlags:\n%s", flagUsages(fs))
	}
}

// flagUsages are pflag's lines of the flags, each usage followed by the
// flag's environment variables (config.EnvAnnotation), one line a flag so
// that grep finds a flag with its variable and default. fs is left as is.
func flagUsages(fs *pflag.FlagSet) string {
	shown := pflag.NewFlagSet(fs.Name(), pflag.ContinueOnError)
	fs.VisitAll(func(f *pflag.Flag) {
		g := *f
		if env := f.Annotations[config.EnvAnnotation]; len(env) > 0 {
			g.Usage += " (env " + strings.Join(env, ", or ") + ")"
		}
		shown.AddFlag(&g)
	})
	return shown.FlagUsagesWrapped(0)
}

// printFlagNames writes the flags of fs, sorted, one per line, for the
// completion scripts.
func printFlagNames(w io.Writer, fs *pflag.FlagSet) {
	var names []string
	fs.VisitAll(func(f *pflag.Flag) { names = append(names, "--"+f.Name) })
	sort.Strings(names)
	fmt.Fprintln(w, strings.Join(names, "\n"))
}

// setEnvOf marks a flag that a command reads from the environment itself
// (not through config.ApplyEnv) with its variables, for --help.
func setEnvOf(fs *pflag.FlagSet, flagName string, env ...string) {
	_ = fs.SetAnnotation(flagName, config.EnvAnnotation, env)
}

// warnUnknownEnv prints one line on w for each ETCD_APPLIANCE_* variable of
// environ that sets no flag of fs; for a command whose configuration is
// then refused, so that the typo shows next to the error it explains.
func warnUnknownEnv(w io.Writer, fs *pflag.FlagSet, environ []string) {
	for _, u := range config.UnknownEnv(fs, environ) {
		fmt.Fprintf(w, "etcd-appliance %s: warning: %s\n", fs.Name(), u)
	}
}

// logUnknownEnv logs each ETCD_APPLIANCE_* variable of environ that sets no
// flag of fs, once, at Warn.
func logUnknownEnv(logger *slog.Logger, fs *pflag.FlagSet, environ []string) {
	for _, u := range config.UnknownEnv(fs, environ) {
		attrs := []any{"variable", u.Name}
		if u.Likely != "" {
			attrs = append(attrs, "did_you_mean", u.Likely)
		}
		logger.Warn("unknown environment variable ignored", attrs...)
	}
}
