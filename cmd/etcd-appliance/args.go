package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/etcd-appliance/etcd-appliance/internal/config"
)

// parseFlags parses a subcommand's arguments, which are flags only: a
// positional argument (a typo such as `--keep true`, or a stray word) is
// refused with one line on fs's output rather than ignored. ok is false
// when the command is to exit with code: 0 after --help, 2 otherwise.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "etcd-appliance %s: unexpected argument %q: it takes flags only (see --help)\n",
			fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}

// warnUnknownEnv prints one line on w for each ETCD_APPLIANCE_* variable of
// environ that sets no flag of fs; for a command whose configuration is
// then refused, so that the typo shows next to the error it explains.
func warnUnknownEnv(w io.Writer, fs *flag.FlagSet, environ []string) {
	for _, u := range config.UnknownEnv(fs, environ) {
		fmt.Fprintf(w, "etcd-appliance %s: warning: %s\n", fs.Name(), u)
	}
}

// logUnknownEnv logs each ETCD_APPLIANCE_* variable of environ that sets no
// flag of fs, once, at Warn.
func logUnknownEnv(logger *slog.Logger, fs *flag.FlagSet, environ []string) {
	for _, u := range config.UnknownEnv(fs, environ) {
		attrs := []any{"variable", u.Name}
		if u.Likely != "" {
			attrs = append(attrs, "did_you_mean", u.Likely)
		}
		logger.Warn("unknown environment variable ignored", attrs...)
	}
}
