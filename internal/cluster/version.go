package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Version is an etcd release. etcd's compatibility goes by minor: a cluster
// runs at its cluster version, the lowest minor of its members, and a member
// may be at most one minor ahead of it.
type Version struct {
	Major, Minor, Patch int
}

// ParseVersion reads an etcd version as etcd prints it ("3.5.21",
// "v3.6.0", "3.6.0-rc.1", a cluster version "3.5.0", or "3.5"). Anything
// after the patch (a pre-release, build metadata) is ignored: patches never
// matter to compatibility.
func ParseVersion(s string) (Version, error) {
	t := strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexAny(t, "-+"); i >= 0 {
		t = t[:i]
	}
	parts := strings.Split(t, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return Version{}, fmt.Errorf("etcd version %q is not major.minor[.patch]", s)
	}
	nums := make([]int, 3)
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return Version{}, fmt.Errorf("etcd version %q is not major.minor[.patch]", s)
		}
		nums[i] = n
	}
	return Version{Major: nums[0], Minor: nums[1], Patch: nums[2]}, nil
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// MinorString is the version's minor, as etcd's cluster version names it.
func (v Version) MinorString() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// minorsAhead is how many minors v is ahead of o (negative: behind); ok is
// false across majors, between which etcd has no upgrade path.
func (v Version) minorsAhead(o Version) (n int, ok bool) {
	if v.Major != o.Major {
		return 0, false
	}
	return v.Minor - o.Minor, true
}

// ErrVersionRefused is the version gate's refusal of a join: the joining
// etcd could not run in the cluster, or would skip a minor.
var ErrVersionRefused = errors.New("etcd version refused")

// JoinVersions are the inputs of the version gate.
type JoinVersions struct {
	// Joiner is the version of the etcd the joining instance would run.
	Joiner string
	// Cluster is the cluster version ("etcdcluster" of a member's /version):
	// the lowest minor its members run, "not_decided" until etcd decided it.
	Cluster string
	// DowngradeTarget is the version an etcd downgrade in progress goes to
	// (etcdctl downgrade enable), "" when none is.
	DowngradeTarget string
	// Running are the versions the started members' etcd report. etcd
	// decides the cluster version only once every member of the
	// membership has published its own; until then it reports an
	// undecided or minimal one (3.7: "3.0.0"). The lowest minor running
	// then stands for it: otherwise a member of the initial membership
	// that missed the bootstrap could never start, and without it etcd
	// never decides.
	Running []string
}

// effectiveCluster is the cluster version the gate compares with: the
// cluster version, or the lowest minor the started members run when the
// cluster version is undecided: unreadable, or more than one minor below
// every started member, which no decided cluster version can be (a
// member runs at most one minor ahead of it).
func (in JoinVersions) effectiveCluster() (Version, error) {
	var lowest *Version
	for _, r := range in.Running {
		if v, err := ParseVersion(r); err == nil && (lowest == nil || v.older(*lowest)) {
			lowest = &v
		}
	}
	cv, err := ParseVersion(in.Cluster)
	switch {
	case err != nil && lowest == nil:
		return Version{}, err
	case err != nil:
		return Version{Major: lowest.Major, Minor: lowest.Minor}, nil
	case lowest != nil && cv.Major == lowest.Major && cv.Minor+1 < lowest.Minor:
		return Version{Major: lowest.Major, Minor: lowest.Minor}, nil
	}
	return cv, nil
}

// CheckJoinVersion is the version gate of a join (§4.7): it returns nil
// when an etcd of in.Joiner may become a member of a cluster at
// in.Cluster, and otherwise an error wrapping ErrVersionRefused that says
// why. Patches never matter. Up to one minor ahead is an upgrade, which
// etcd supports one minor at a time; more would skip a minor. Behind the
// cluster version the member would be refused by etcd itself (it never
// lowers the cluster version on its own), unless a downgrade to the
// joiner's minor is in progress. A version not known for sure refuses: the
// gate never lets through what it cannot read.
func CheckJoinVersion(in JoinVersions) error {
	refuse := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrVersionRefused, fmt.Sprintf(format, a...))
	}
	joiner, err := ParseVersion(in.Joiner)
	if err != nil {
		return refuse("the version of this instance's etcd is unknown (%v)", err)
	}
	clusterV, err := in.effectiveCluster()
	if err != nil {
		return refuse("the cluster version %q is not decided or not readable", in.Cluster)
	}
	ahead, ok := joiner.minorsAhead(clusterV)
	switch {
	case !ok:
		return refuse("etcd %s and the cluster version %s are of different majors", joiner, clusterV.MinorString())
	case ahead > 1:
		return refuse("etcd %s is %d minors ahead of the cluster version %s: upgrade one minor at a time (%d.%d first)",
			joiner, ahead, clusterV.MinorString(), clusterV.Major, clusterV.Minor+1)
	case ahead >= 0:
		return nil
	}
	if target, err := ParseVersion(in.DowngradeTarget); in.DowngradeTarget != "" && err == nil &&
		target.MinorString() == joiner.MinorString() && ahead == -1 {
		return nil
	}
	if in.DowngradeTarget != "" {
		return refuse("etcd %s is older than the cluster version %s and the downgrade in progress goes to %s, not to %s",
			joiner, clusterV.MinorString(), in.DowngradeTarget, joiner.MinorString())
	}
	return refuse("etcd %s is older than the cluster version %s: etcd refuses an older member unless a downgrade to %s is enabled (etcdctl downgrade enable)",
		joiner, clusterV.MinorString(), joiner.MinorString())
}

// upgradeFloor is, per minor, the oldest patch etcd's upgrade guide lets
// take part in a rolling upgrade to the next minor: older patches lack
// fixes the new minor relies on (3.5 → 3.6: learners and membership
// repairs; 3.6 → 3.7: compatibility).
var upgradeFloor = map[string]Version{
	"3.5": {3, 5, 26},
	"3.6": {3, 6, 11},
}

// CheckUpgradeFrom refuses, wrapping ErrVersionRefused, an etcd of next
// that would join, or swap in among, members (name → etcd version) of the
// minor before it, while one of those runs a patch older than etcd's
// upgrade guide asks for: that member must be brought up to the floor
// first (a patch upgrade: replace or swap it), then the minor upgrade may
// go. Versions that can't be read are the version gate's to refuse.
func CheckUpgradeFrom(next string, members map[string]string) error {
	nv, err := ParseVersion(next)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(members))
	for name := range members {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		v, err := ParseVersion(members[name])
		if err != nil {
			continue
		}
		floor, ok := upgradeFloor[v.MinorString()]
		if ahead, same := nv.minorsAhead(v); !same || ahead != 1 || !ok || !v.older(floor) {
			continue
		}
		return fmt.Errorf("%w: member %s runs etcd %s, and etcd's upgrade guide asks for %s or later before etcd %s joins: upgrade it to the newest %s first",
			ErrVersionRefused, name, v, floor, nv.MinorString(), v.MinorString())
	}
	return nil
}

// older reports whether v is an older release than o.
func (v Version) older(o Version) bool {
	return v.Major < o.Major || v.Major == o.Major && (v.Minor < o.Minor || v.Minor == o.Minor && v.Patch < o.Patch)
}
