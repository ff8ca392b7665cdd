package main

import (
	"errors"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/config"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
	awsprovider "github.com/etcd-appliance/etcd-appliance/internal/provider/aws"
)

// newFirewall builds the keeper of the members' ingress rules when --regions
// turns on multi-region mode (§4.4), or nil. The rules are marked with the
// cluster's name: --cluster-name, or the cluster tag's value.
func newFirewall(cfg *config.Config, group provider.Group) (provider.Firewall, *cluster.FirewallSpec, error) {
	if !cfg.MultiRegion() {
		return nil, nil, nil
	}
	p, ok := group.(*awsprovider.Provider)
	if !ok {
		return nil, nil, errors.New("--regions needs --provider aws")
	}
	name := cfg.ClusterName
	if name == "" {
		if name = p.Name(); name == "" {
			return nil, nil, errors.New("the cluster tag's value, which marks the cluster's ingress rules, is unknown yet: set --cluster-name")
		}
	}
	spec := cfg.FirewallSpec(name)
	fw, err := p.Firewall(*spec)
	if err != nil {
		return nil, nil, err
	}
	return fw, spec, nil
}
