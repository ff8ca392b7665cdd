// Package local is the provider of a development group: a JSON file lists the
// instances, and this instance's id comes from a flag. The demo and the tests
// edit the file to launch and terminate instances.
package local

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// File is the group file's content.
type File struct {
	Name      string             `json:"name"`
	Instances []cluster.Instance `json:"instances"`
}

// Provider reads the group file on every call.
type Provider struct {
	path       string
	instanceID string
}

var (
	_ provider.Identity = (*Provider)(nil)
	_ provider.Group    = (*Provider)(nil)
)

// New returns a provider over the group file at path for instance id.
func New(path, instanceID string) *Provider {
	return &Provider{path: path, instanceID: instanceID}
}

// Name is the group's name from the file, or the file's base name.
func (p *Provider) Name() string {
	f, err := Read(p.path)
	if err == nil && f.Name != "" {
		return f.Name
	}
	base := filepath.Base(p.path)
	return base[:len(base)-len(filepath.Ext(base))]
}

// Self returns this instance's entry of the group file.
func (p *Provider) Self(ctx context.Context) (cluster.Instance, error) {
	f, err := Read(p.path)
	if err != nil {
		return cluster.Instance{}, err
	}
	for _, inst := range f.Instances {
		if inst.ID == p.instanceID {
			return inst, nil
		}
	}
	return cluster.Instance{}, fmt.Errorf("instance %q is not in group file %s", p.instanceID, p.path)
}

// Instances lists the group file's instances.
func (p *Provider) Instances(ctx context.Context) ([]cluster.Instance, error) {
	f, err := Read(p.path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", provider.ErrGroupUnknown, err)
	}
	if len(f.Instances) == 0 {
		// An empty listing is never "the group is empty" (SPEC §4.1).
		return nil, fmt.Errorf("%w: group file %s lists no instances", provider.ErrGroupUnknown, p.path)
	}
	return f.Instances, nil
}

// Read parses and checks a group file.
func Read(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("reading group file: %w", err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return File{}, fmt.Errorf("parsing group file %s: %w", path, err)
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
