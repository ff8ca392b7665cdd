package config

import (
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// UnknownVar is an ETCD_APPLIANCE_* variable of the environment that sets
// nothing, and the known one it likely meant ("" when none is close).
type UnknownVar struct {
	Name, Likely string
}

func (u UnknownVar) String() string {
	if u.Likely == "" {
		return u.Name + " is not a variable of the appliance: it is ignored"
	}
	return u.Name + " is not a variable of the appliance: it is ignored (did you mean " + u.Likely + "?)"
}

// otherEnv are the ETCD_APPLIANCE_* variables that set no flag of run and
// are still read: status's --api, and the binary `make` and the tests run.
func otherEnv() []string { return []string{EnvPrefix + "API", EnvPrefix + "BIN"} }

// UnknownEnv lists, sorted, the ETCD_APPLIANCE_* variables of environ
// ("KEY=value" pairs) that set no flag of fs, as etcd warns of unrecognised
// ETCD_* ones: a typo would otherwise leave a default in force silently.
func UnknownEnv(fs *pflag.FlagSet, environ []string) []UnknownVar {
	known := otherEnv()
	fs.VisitAll(func(f *pflag.Flag) { known = append(known, EnvName(f.Name)) })
	slices.Sort(known)
	var unknown []UnknownVar
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || slices.Contains(known, name) {
			continue
		}
		unknown = append(unknown, UnknownVar{Name: name, Likely: closest(name, known)})
	}
	slices.SortFunc(unknown, func(a, b UnknownVar) int { return strings.Compare(a.Name, b.Name) })
	return unknown
}

// closest is the name of known nearest to name, if it is near enough to be
// a typo of it: at most two edits, and fewer than a third of its length.
func closest(name string, known []string) string {
	best, bestDist := "", 3
	suffix := strings.TrimPrefix(name, EnvPrefix)
	for _, k := range known {
		ks := strings.TrimPrefix(k, EnvPrefix)
		if d := editDistance(suffix, ks); d < bestDist && 3*d < len(ks) {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
