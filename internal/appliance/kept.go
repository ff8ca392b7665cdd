package appliance

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// etcdRelease is an etcd the appliance can run on the data: its version and
// the program and leading arguments that run it.
type etcdRelease struct {
	Version string   `json:"version"`
	Command []string `json:"command,omitempty"`
}

// releaseFile records the etcd release that last started on the data, with
// the command of the copy kept of it (none while the copy is being made).
func (d dataDir) releaseFile() string { return filepath.Join(d.root, "etcd-release.json") }

// timingFile records the raft timing etcd last started with on the data.
func (d dataDir) timingFile() string { return filepath.Join(d.root, "timing.json") }

// recordedTiming is the raft timing etcd last started with on the data; ok
// is false when none is recorded (or the record is torn).
func (d dataDir) recordedTiming() (t cluster.Timing, ok bool) {
	b, err := os.ReadFile(d.timingFile())
	if err != nil || json.Unmarshal(b, &t) != nil || t.Validate() != nil {
		return cluster.Timing{}, false
	}
	return t, true
}

// keptDir holds a copy of the etcd that last ran on the data, one directory
// per version: when --etcd-binary, or the appliance with its bundled etcd,
// is replaced on disk and every instance restarted at once (an in-place
// upgrade), each member starts once more on the etcd its data last ran with
// and swaps to the new one in its turn (swap.go).
func (d dataDir) keptDir() string { return filepath.Join(d.root, "etcd-kept") }

// lastRelease is the release that last started on the data; ok is false
// when none is recorded (data of an appliance that did not record it).
func (d dataDir) lastRelease() (etcdRelease, bool, error) {
	b, err := os.ReadFile(d.releaseFile())
	if errors.Is(err, fs.ErrNotExist) {
		return etcdRelease{}, false, nil
	}
	if err != nil {
		return etcdRelease{}, false, fmt.Errorf("reading the etcd release of the data: %w", err)
	}
	var r etcdRelease
	if err := json.Unmarshal(b, &r); err != nil || r.Version == "" {
		// A torn record: the release is unknown, and the current one starts.
		return etcdRelease{}, false, nil
	}
	return r, true, nil
}

// recordRelease records r as the release that starts on the data.
func (d dataDir) recordRelease(r etcdRelease) error {
	return writeFileJSON(d.releaseFile(), r)
}

// keptRelease is the kept copy of r, if any: r with its command's program
// replaced by the copy.
func (d dataDir) keptRelease(r etcdRelease) (etcdRelease, bool) {
	if len(r.Command) == 0 || r.Version == "" {
		return etcdRelease{}, false
	}
	path := filepath.Join(d.keptDir(), r.Version, filepath.Base(r.Command[0]))
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o100 == 0 {
		return etcdRelease{}, false
	}
	return etcdRelease{Version: r.Version, Command: append([]string{path}, r.Command[1:]...)}, true
}

// keep keeps r's program in keptDir and returns the release that runs the
// kept one: a hard link where the data dir shares the binary's file system
// (no copy, no space), else a copy (written aside, synced, renamed). A link
// keeps the old content when the binary is replaced as a running binary
// must be (renamed over or unlinked: writing into it fails with ETXTBSY);
// one overwritten while nothing ran it changes the link too, which the swap
// notices by asking the kept binary its version.
func (d dataDir) keep(r etcdRelease) (etcdRelease, error) {
	if kept, ok := d.keptRelease(r); ok {
		return kept, nil
	}
	if len(r.Command) == 0 || r.Version == "" {
		return etcdRelease{}, errors.New("keeping etcd: no command or version")
	}
	if fi, err := os.Stat(r.Command[0]); err != nil || !fi.Mode().IsRegular() {
		return etcdRelease{}, fmt.Errorf("keeping etcd %s: %s is no file to keep (%v)", r.Version, r.Command[0], err)
	}
	dir := filepath.Join(d.keptDir(), r.Version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return etcdRelease{}, fmt.Errorf("keeping etcd %s: %w", r.Version, err)
	}
	dst := filepath.Join(dir, filepath.Base(r.Command[0]))
	if err := linkOrCopy(r.Command[0], dst); err != nil {
		return etcdRelease{}, fmt.Errorf("keeping etcd %s: %w", r.Version, err)
	}
	return etcdRelease{Version: r.Version, Command: append([]string{dst}, r.Command[1:]...)}, nil
}

// pruneKept removes the kept copies of every version but keep's.
func (d dataDir) pruneKept(keep string) error {
	entries, err := os.ReadDir(d.keptDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if e.Name() != keep {
			errs = append(errs, os.RemoveAll(filepath.Join(d.keptDir(), e.Name())))
		}
	}
	return errors.Join(errs...)
}

// keptVersions lists the versions kept, sorted.
func (d dataDir) keptVersions() []string {
	entries, _ := os.ReadDir(d.keptDir())
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

// linkOrCopy makes dst a hard link of src, or a copy where a link can't be
// made (another file system).
func linkOrCopy(src, dst string) error {
	tmp := dst + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Link(src, tmp); err == nil {
		if err := os.Rename(tmp, dst); err != nil {
			os.Remove(tmp)
			return err
		}
		return syncDir(filepath.Dir(dst))
	}
	return copyExecutable(src, dst)
}

// copyExecutable copies src to dst with mode 0755, durably: written to a
// temporary file, synced, then renamed.
func copyExecutable(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err = out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err = out.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, dst); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dst))
}
