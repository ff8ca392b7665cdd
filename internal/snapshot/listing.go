package snapshot

import (
	"cmp"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// listing collects the names found under a cluster's prefix, to pair each
// snapshot object with its sidecar.
type listing struct {
	objects  map[string]bool
	sidecars map[string]bool
}

// add files one name (relative to the store's root) as an object, a
// sidecar, or something that is neither and is ignored.
func (l *listing) add(name string) {
	if l.objects == nil {
		l.objects, l.sidecars = map[string]bool{}, map[string]bool{}
	}
	if key, ok := strings.CutSuffix(name, sidecarSuffix); ok {
		if _, err := ParseKey(key); err == nil {
			l.sidecars[key] = true
			return
		}
	}
	if _, err := ParseKey(name); err == nil {
		l.objects[name] = true
	}
	// Anything else (temporary files, foreign objects) is not ours.
}

// complete lists the keys that have both object and sidecar. An object
// without sidecar is an upload that did not finish (or a deletion that
// did not); a sidecar without object a deletion that did not finish.
func (l *listing) complete(log *slog.Logger) []string {
	var keys []string
	for key := range l.objects {
		if l.sidecars[key] {
			keys = append(keys, key)
		} else {
			log.Debug("snapshot object without sidecar not listed: an unfinished upload or deletion", "key", key)
		}
	}
	for key := range l.sidecars {
		if !l.objects[key] {
			log.Debug("snapshot sidecar without object not listed: an unfinished deletion", "key", key)
		}
	}
	slices.Sort(keys)
	return keys
}

// parseSidecar reads the Meta that a sidecar holds for the object key.
func parseSidecar(key string, b []byte) (Meta, error) {
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("%w: sidecar of %s: %v", ErrCorrupt, key, err)
	}
	if err := sameSnapshot(key, m); err != nil {
		return Meta{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return m, nil
}

// checkUpdate says whether SetMeta may replace the sidecar old with m: it
// may record the snapshot's verification, never change which bytes the
// sidecar vouches for.
func checkUpdate(old, m Meta) error {
	if m.Key != old.Key || m.Cluster != old.Cluster || m.Revision != old.Revision || !m.Time.Equal(old.Time) ||
		m.Size != old.Size || m.SHA256 != old.SHA256 {
		return fmt.Errorf("updating snapshot %s: key, cluster, time, revision, size and checksum must stay as stored", old.Key)
	}
	return nil
}

// sortNewestFirst orders snapshots by time, then revision, newest first;
// keys break ties so that the order is total.
func sortNewestFirst(snaps []Meta) {
	slices.SortFunc(snaps, func(a, b Meta) int {
		return cmp.Or(b.Time.Compare(a.Time), cmp.Compare(b.Revision, a.Revision), strings.Compare(b.Key, a.Key))
	})
}
