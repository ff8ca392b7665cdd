package snapshot

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

const (
	// keyTimeLayout is the time in a key: UTC, to the second, sortable.
	keyTimeLayout = "20060102T150405Z"
	// objectSuffix ends every snapshot object's name, sidecarSuffix every
	// sidecar's (appended to the object's key).
	objectSuffix  = ".db"
	sidecarSuffix = ".json"
)

// Key is the name of a cluster's snapshot taken at t holding revision:
// <cluster>/<t in UTC, 20060102T150405Z>-r<revision>.db.
func Key(cluster string, t time.Time, revision int64) string {
	return cluster + "/" + t.UTC().Format(keyTimeLayout) + "-r" + strconv.FormatInt(revision, 10) + objectSuffix
}

// SidecarKey is the name of a snapshot's sidecar, which holds its Meta.
func SidecarKey(key string) string { return key + sidecarSuffix }

// ParseKey reads the cluster, time and revision of a snapshot's key; it is
// the inverse of Key, and rejects every other name (a foreign object in
// the store, a sidecar, a temporary file).
func ParseKey(key string) (Meta, error) {
	cluster, name, ok := strings.Cut(key, "/")
	if !ok {
		return Meta{}, fmt.Errorf("snapshot key %q: want <cluster>/<time>-r<revision>%s", key, objectSuffix)
	}
	if err := validCluster(cluster); err != nil {
		return Meta{}, fmt.Errorf("snapshot key %q: %w", key, err)
	}
	stem, ok := strings.CutSuffix(name, objectSuffix)
	if !ok {
		return Meta{}, fmt.Errorf("snapshot key %q: does not end in %s", key, objectSuffix)
	}
	stamp, rev, ok := strings.Cut(stem, "-r")
	if !ok {
		return Meta{}, fmt.Errorf("snapshot key %q: want <time>-r<revision>%s after the cluster", key, objectSuffix)
	}
	t, err := time.Parse(keyTimeLayout, stamp)
	if err != nil {
		return Meta{}, fmt.Errorf("snapshot key %q: time: %w", key, err)
	}
	revision, err := strconv.ParseInt(rev, 10, 64)
	if err != nil || revision <= 0 {
		return Meta{}, fmt.Errorf("snapshot key %q: revision %q is not a positive number", key, rev)
	}
	// One name per snapshot: no leading zeros, no "+1", nothing Key
	// would not have written.
	if Key(cluster, t, revision) != key {
		return Meta{}, fmt.Errorf("snapshot key %q: not in canonical form %q", key, Key(cluster, t, revision))
	}
	return Meta{Key: key, Cluster: cluster, Time: t, Revision: revision}, nil
}

// validCluster says whether a cluster's name can be the first segment of
// its snapshots' keys, as a directory and as an S3 key prefix.
func validCluster(cluster string) error {
	switch {
	case cluster == "":
		return errors.New("empty cluster name")
	case cluster == "." || cluster == "..":
		return fmt.Errorf("cluster name %q is not a name", cluster)
	case strings.HasPrefix(cluster, "."):
		// Names starting with a dot are the file store's temporary files.
		return fmt.Errorf("cluster name %q starts with a dot", cluster)
	case len(cluster) > 255:
		return fmt.Errorf("cluster name %.20q... is longer than 255 bytes", cluster)
	case strings.ContainsFunc(cluster, func(r rune) bool { return r == '/' || r == '\\' || unicode.IsControl(r) }):
		return fmt.Errorf("cluster name %q contains a slash or a control character", cluster)
	}
	return nil
}

// checkNew says whether m names a snapshot that Put can store.
func checkNew(m Meta) error {
	if err := validCluster(m.Cluster); err != nil {
		return err
	}
	if m.Time.IsZero() {
		return errors.New("snapshot without a time")
	}
	if m.Revision <= 0 {
		return fmt.Errorf("snapshot revision %d: must be positive", m.Revision)
	}
	return nil
}

// sameSnapshot says whether a sidecar read back belongs to the object of
// key: a sidecar copied or renamed by hand describes another snapshot.
func sameSnapshot(key string, m Meta) error {
	want, err := ParseKey(key)
	if err != nil {
		return err
	}
	if m.Key != key || m.Cluster != want.Cluster || m.Revision != want.Revision ||
		!m.Time.Truncate(time.Second).Equal(want.Time) {
		return fmt.Errorf("sidecar of %s describes %s (cluster %q, revision %d, time %s)",
			key, m.Key, m.Cluster, m.Revision, m.Time.UTC().Format(time.RFC3339))
	}
	if m.Size < 0 || len(m.SHA256) != 64 {
		return fmt.Errorf("sidecar of %s has no size or checksum", key)
	}
	return nil
}
