// Package local is the provider of a development group: a JSON file lists the
// instances, and this instance's id comes from a flag. The demo and the tests
// edit the file to launch and terminate instances.
//
// A start refuses a bad file (Check); a running provider keeps the last
// usable listing while the file is unusable, since nothing else tells the
// group.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// File is the group file's content.
type File struct {
	Name      string             `json:"name"`
	Instances []cluster.Instance `json:"instances"`
}

// problemEvery is how often an unchanged problem of the group file is
// logged again: a change of state is logged at once.
const problemEvery = time.Minute

// Provider reads the group file on every call. While the file is unusable
// (missing, garbled, invalid, listing nobody) it answers with the last
// usable content: nothing else tells the group, so that is still the newest
// listing known. It logs each change of the file's state once.
type Provider struct {
	path       string
	instanceID string
	log        *slog.Logger
	now        func() time.Time

	mu sync.Mutex
	// last is the last usable content, read at lastAt; nil: none yet.
	last   *File
	lastAt time.Time
	// problem is the file's problem as last logged ("": usable), at
	// reported.
	problem  string
	reported time.Time
}

var (
	_ provider.Identity = (*Provider)(nil)
	_ provider.Group    = (*Provider)(nil)
)

// New returns a provider over the group file at path for instance id; log
// (nil: none) hears when the file becomes unusable and usable again.
func New(path, instanceID string, log *slog.Logger) *Provider {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Provider{path: path, instanceID: instanceID, log: log, now: time.Now}
}

// Check reads the group file and finds the instance in it, for a start
// that refuses a bad file at once: its error names the file and the
// problem.
func Check(path, instanceID string) error {
	f, err := readUsable(path)
	if err != nil {
		return err
	}
	_, err = find(f, path, instanceID)
	return err
}

// Name is the group's name from the file, or the file's base name.
func (p *Provider) Name() string {
	f, err := p.current()
	if err == nil && f.Name != "" {
		return f.Name
	}
	base := filepath.Base(p.path)
	return base[:len(base)-len(filepath.Ext(base))]
}

// Self returns this instance's entry of the group file.
func (p *Provider) Self(ctx context.Context) (cluster.Instance, error) {
	f, err := p.current()
	if err != nil {
		return cluster.Instance{}, err
	}
	return find(f, p.path, p.instanceID)
}

// Instances lists the group file's instances.
func (p *Provider) Instances(ctx context.Context) ([]cluster.Instance, error) {
	f, err := p.current()
	if err != nil {
		// An empty listing is never "the group is empty" (SPEC §4.1).
		return nil, fmt.Errorf("%w: %v", provider.ErrGroupUnknown, err)
	}
	return slices.Clone(f.Instances), nil
}

// current is the file's content, or its last usable content while it is
// unusable; an error only when it was never usable.
func (p *Provider) current() (File, error) {
	f, err := readUsable(p.path)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.note(err)
	if err == nil {
		p.last, p.lastAt = &f, p.now()
		return f, nil
	}
	if p.last == nil {
		return File{}, err
	}
	return *p.last, nil
}

// note logs a change of the file's state once, and an unchanged problem
// again every problemEvery, rather than on every read.
func (p *Provider) note(err error) {
	now := p.now()
	switch {
	case err == nil && p.problem != "":
		p.log.Info("group file usable again", "file", p.path, "was", p.problem)
		p.problem = ""
	case err == nil:
	case err.Error() != p.problem || now.Sub(p.reported) >= problemEvery:
		p.problem, p.reported = err.Error(), now
		if p.last == nil {
			p.log.Warn("group file unusable; the group is unknown", "file", p.path, "err", err)
			return
		}
		p.log.Warn("group file unusable; keeping its last usable listing", "file", p.path, "err", err,
			"last_usable", p.lastAt.UTC().Format(time.RFC3339))
	}
}

// readUsable reads the group file and requires it to list an instance.
func readUsable(path string) (File, error) {
	f, err := Read(path)
	if err != nil {
		return File{}, err
	}
	if len(f.Instances) == 0 {
		return File{}, fmt.Errorf("group file %s lists no instances", path)
	}
	return f, nil
}

// find is the instance of f with id.
func find(f File, path, id string) (cluster.Instance, error) {
	for _, inst := range f.Instances {
		if inst.ID == id {
			return inst, nil
		}
	}
	return cluster.Instance{}, fmt.Errorf("group file %s does not list instance %q", path, id)
}

// Read parses and checks a group file.
func Read(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err // the path is named once, below
		}
		return File{}, fmt.Errorf("group file %s: %w", path, err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return File{}, fmt.Errorf("group file %s does not parse: %w", path, err)
	}
	seen := map[string]bool{}
	for i, inst := range f.Instances {
		switch {
		case inst.ID == "":
			return File{}, fmt.Errorf("group file %s: instance %d has no id", path, i)
		case seen[inst.ID]:
			return File{}, fmt.Errorf("group file %s: instance %q is listed twice", path, inst.ID)
		case net.ParseIP(inst.Address) == nil:
			return File{}, fmt.Errorf("group file %s: instance %q has address %q, not an IP address", path, inst.ID, inst.Address)
		}
		switch inst.State {
		case cluster.InstancePending, cluster.InstanceRunning, cluster.InstanceStopping, cluster.InstanceStopped,
			cluster.InstanceTerminating, cluster.InstanceTerminated:
		default:
			return File{}, fmt.Errorf("group file %s: instance %q has unknown state %q", path, inst.ID, inst.State)
		}
		seen[inst.ID] = true
	}
	return f, nil
}

// Write replaces the group file atomically, so readers never see half a file.
func Write(path string, f File) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".group-*.json")
	if err != nil {
		return fmt.Errorf("writing group file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("writing group file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing group file: %w", err)
	}
	return os.Rename(tmp.Name(), path)
}
