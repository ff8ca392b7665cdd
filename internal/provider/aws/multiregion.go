package aws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// DefaultClusterTagKey is the tag whose value, on this instance, names the
// cluster in multi-region mode: CloudFormation puts it on every resource of
// a stack, and a multi-region cluster is one stack of the same name in each
// region.
const DefaultClusterTagKey = "aws:cloudformation:stack-name"

// multiRegion is the group of multi-region mode (§4.1): every instance that
// carries the cluster tag, with this instance's value, in every listed
// region. It asks EC2 only; Auto Scaling groups, if any, play no part.
type multiRegion struct {
	tagKey  string
	regions []string
	// private: the regions' VPCs are peered (or joined by a VPN or transit
	// gateway), and members reach each other by their private addresses.
	private bool
	ec2     map[string]ec2API // one client per region

	mu       sync.Mutex
	tagValue string // this instance's value of tagKey, once found
}

// newMultiRegion checks that the own region is among regions: an instance
// outside the regions it lists would list a group without itself.
func newMultiRegion(own string, regions []string, tagKey string, private bool, client func(region string) ec2API) (*multiRegion, error) {
	if !slices.Contains(regions, own) {
		return nil, fmt.Errorf("--regions %s does not include this instance's region %s: add it", strings.Join(regions, ","), own)
	}
	if tagKey == "" {
		tagKey = DefaultClusterTagKey
	}
	m := &multiRegion{tagKey: tagKey, regions: slices.Clone(regions), private: private, ec2: map[string]ec2API{}}
	for _, r := range regions {
		m.ec2[r] = client(r)
	}
	return m, nil
}

// Regions are the regions of a multi-region provider; nil in single-region
// mode.
func (p *Provider) Regions() []string {
	if p.multi == nil {
		return nil
	}
	return slices.Clone(p.multi.regions)
}

// MultiRegion reports whether the provider runs in multi-region mode.
func (p *Provider) MultiRegion() bool { return p.multi != nil }

// multiName is the cluster tag's value on this instance, "" while unknown.
func (p *Provider) multiName() string {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	v, err := p.clusterTagValue(ctx)
	if err != nil {
		p.log.Warn("cannot find the cluster tag's value yet", "err", err)
		return ""
	}
	return v
}

// clusterTagValue reads this instance's value of the cluster tag, once.
func (p *Provider) clusterTagValue(ctx context.Context) (string, error) {
	m := p.multi
	m.mu.Lock()
	v := m.tagValue
	m.mu.Unlock()
	if v != "" {
		return v, nil
	}
	self, err := p.Metadata(ctx)
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := m.ec2[p.region].DescribeInstances(cctx, &ec2.DescribeInstancesInput{InstanceIds: []string{self.InstanceID}})
	if err != nil {
		return "", fmt.Errorf("reading the tags of %s: %w", self.InstanceID, err)
	}
	for _, r := range out.Reservations {
		for _, inst := range r.Instances {
			for _, t := range inst.Tags {
				if aws.ToString(t.Key) == m.tagKey && aws.ToString(t.Value) != "" {
					v = aws.ToString(t.Value)
				}
			}
		}
	}
	if v == "" {
		return "", fmt.Errorf("instance %s has no tag %s: tag the instances of every region with it, or set --cluster-tag-key", self.InstanceID, m.tagKey)
	}
	m.mu.Lock()
	m.tagValue = v
	m.mu.Unlock()
	p.log.Info("found the cluster tag", "key", m.tagKey, "value", v, "regions", m.regions)
	return v, nil
}

// multiInstances lists the instances carrying the cluster tag in every
// region. A failure in any region fails the whole listing: a group without
// one region's instances would let housekeeping remove their members.
func (p *Provider) multiInstances(ctx context.Context) ([]cluster.Instance, error) {
	value, err := p.clusterTagValue(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", provider.ErrGroupUnknown, err)
	}
	m := p.multi
	lists := make([][]cluster.Instance, len(m.regions))
	errs := make([]error, len(m.regions))
	var wg sync.WaitGroup
	for k, region := range m.regions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lists[k], errs[k] = m.list(ctx, region, value)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", provider.ErrGroupUnknown, err)
	}
	out := slices.Concat(lists...)
	if len(out) == 0 {
		// This instance carries the tag: none listed is a failure (§4.1).
		return nil, fmt.Errorf("%w: no instance carries the tag %s=%s in %s", provider.ErrGroupUnknown,
			m.tagKey, value, strings.Join(m.regions, ", "))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	p.log.Debug("listed group", "tag", m.tagKey+"="+value, "regions", m.regions, "instances", len(out))
	return out, nil
}

// list lists the instances of one region that carry the cluster tag.
func (m *multiRegion) list(ctx context.Context, region, value string) ([]cluster.Instance, error) {
	pages := ec2.NewDescribeInstancesPaginator(m.ec2[region], &ec2.DescribeInstancesInput{
		Filters: []ec2types.Filter{{Name: aws.String("tag:" + m.tagKey), Values: []string{value}}},
	})
	var out []cluster.Instance
	for pages.HasMorePages() {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		page, err := pages.NextPage(cctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("describing the instances tagged %s=%s in %s: %w", m.tagKey, value, region, err)
		}
		for _, r := range page.Reservations {
			for _, machine := range r.Instances {
				inst, err := multiRegionInstance(region, machine, m.private)
				if err != nil {
					return nil, err
				}
				out = append(out, inst)
			}
		}
	}
	return out, nil
}

// multiRegionInstance is an EC2 instance as a member of a multi-region
// group. Its state is EC2's alone, mapped as for an Auto Scaling group's
// instance that is InService: there is no group lifecycle in this mode.
// With private, the instance is reached, and its traffic comes, from its
// private address, public or not.
func multiRegionInstance(region string, machine ec2types.Instance, private bool) (cluster.Instance, error) {
	var state ec2types.InstanceStateName
	if machine.State != nil {
		state = machine.State.Name
	}
	inst := cluster.Instance{
		ID:          aws.ToString(machine.InstanceId),
		State:       instanceState(string(astypes.LifecycleStateInService), state),
		Region:      region,
		BindAddress: aws.ToString(machine.PrivateIpAddress),
		PublicIP:    aws.ToString(machine.PublicIpAddress),
	}
	if machine.Placement != nil {
		inst.Zone = aws.ToString(machine.Placement.AvailabilityZone)
	}
	inst.Address = peerAddress(aws.ToString(machine.PublicDnsName), inst.PublicIP, inst.BindAddress)
	if private {
		inst.Address, inst.PublicIP = inst.BindAddress, ""
	}
	if inst.State != cluster.InstanceTerminated && (inst.Address == "" || net.ParseIP(inst.BindAddress) == nil) {
		return cluster.Instance{}, fmt.Errorf("instance %s in %s (%s) has no address yet (public name %q, private IP %q)",
			inst.ID, region, inst.State, aws.ToString(machine.PublicDnsName), inst.BindAddress)
	}
	return inst, nil
}

// peerAddress is where peers in other regions reach an instance: its public
// DNS name, which resolves to the public IP outside its VPC and to the
// private IP inside; else its public IP; else, for an instance without a
// public address (reachable over peering or a VPN, and moto's instances),
// its private IP.
func peerAddress(publicName, publicIP, privateIP string) string {
	for _, a := range []string{publicName, publicIP, privateIP} {
		if a = strings.TrimSpace(a); a != "" {
			return strings.ToLower(a)
		}
	}
	return ""
}
