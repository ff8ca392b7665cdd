package aws

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// groupNameTag is the tag Auto Scaling puts on the instances it launches.
const groupNameTag = "aws:autoscaling:groupName"

// maxFilterValues is how many values EC2 accepts in one filter.
const maxFilterValues = 200

// Name is this instance's Auto Scaling group name, or "" while it could not
// be found yet. Instances finds it first, so after a successful listing
// Name is always known. In multi-region mode it is this instance's value of
// the cluster tag.
func (p *Provider) Name() string {
	if p.multi != nil {
		return p.multiName()
	}
	p.mu.Lock()
	name := p.name
	p.mu.Unlock()
	if name != "" {
		return name
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	name, err := p.groupName(ctx)
	if err != nil {
		p.log.Warn("cannot find the Auto Scaling group's name yet", "err", err)
		return ""
	}
	return name
}

// Instances lists the group: every instance its Auto Scaling group holds,
// with the state that the group's lifecycle and EC2 agree on.
func (p *Provider) Instances(ctx context.Context) ([]cluster.Instance, error) {
	if p.multi != nil {
		return p.multiInstances(ctx)
	}
	insts, err := p.instances(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", provider.ErrGroupUnknown, err)
	}
	return insts, nil
}

func (p *Provider) instances(ctx context.Context) ([]cluster.Instance, error) {
	name, err := p.groupName(ctx)
	if err != nil {
		return nil, err
	}
	members, err := p.groupInstances(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(members) == 0 {
		// Real groups are never empty while this instance runs in one: an
		// empty listing is a failure, never "the group is empty" (§4.1).
		return nil, fmt.Errorf("auto scaling group %s lists no instances", name)
	}
	machines, err := p.machines(ctx, members)
	if err != nil {
		return nil, err
	}
	var out []cluster.Instance
	for _, m := range members {
		id := aws.ToString(m.InstanceId)
		lifecycle := string(m.LifecycleState)
		inst := cluster.Instance{ID: id, Region: p.region, Zone: aws.ToString(m.AvailabilityZone)}
		machine, ok := machines[id]
		if !ok {
			if isTerminating(lifecycle) {
				// EC2 may already have forgotten an instance the group is
				// still letting go of.
				inst.State = cluster.InstanceTerminated
				out = append(out, inst)
				continue
			}
			// EC2's listing lags behind the group's for a new instance
			// (eventual consistency): the group is not known yet.
			return nil, fmt.Errorf("instance %s of group %s (%s) is unknown to EC2", id, name, lifecycle)
		}
		inst.State = instanceState(lifecycle, machine.state)
		inst.Address = machine.address
		if inst.Zone == "" {
			inst.Zone = machine.zone
		}
		if inst.State != cluster.InstanceTerminated && net.ParseIP(inst.Address) == nil {
			return nil, fmt.Errorf("instance %s of group %s (%s, %s) has no private address (%q)",
				id, name, lifecycle, inst.State, inst.Address)
		}
		out = append(out, inst)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	p.log.Debug("listed group", "group", name, "instances", len(out))
	return out, nil
}

// instanceState maps an instance's Auto Scaling lifecycle state and its EC2
// state to the appliance's view. An instance counts as running only when the
// group has it Pending* or InService and EC2 has it running (§4.1).
func instanceState(lifecycle string, ec2State ec2types.InstanceStateName) cluster.InstanceState {
	switch {
	case ec2State == ec2types.InstanceStateNameTerminated,
		ec2State == ec2types.InstanceStateNameShuttingDown:
		return cluster.InstanceTerminated
	case isTerminating(lifecycle) && lifecycle != string(astypes.LifecycleStateTerminated) && ec2State == ec2types.InstanceStateNameRunning:
		// Terminating:Wait, held by a lifecycle hook: the instance may
		// still serve while it drains.
		return cluster.InstanceTerminating
	case isTerminating(lifecycle):
		return cluster.InstanceTerminated
	case ec2State == ec2types.InstanceStateNameStopping:
		return cluster.InstanceStopping
	case ec2State == ec2types.InstanceStateNameStopped:
		return cluster.InstanceStopped
	case ec2State == ec2types.InstanceStateNamePending:
		return cluster.InstancePending
	case ec2State == ec2types.InstanceStateNameRunning:
		switch {
		case strings.HasPrefix(lifecycle, "Pending"), lifecycle == string(astypes.LifecycleStateInService):
			return cluster.InstanceRunning
		case lifecycle == string(astypes.LifecycleStateEnteringStandby), lifecycle == string(astypes.LifecycleStateDetaching):
			// Running, but on its way out of service.
			return cluster.InstanceStopping
		default:
			// Standby, Detached, Warmed:*: running but out of service, so
			// not part of the group (§4.1); neither is it gone for good.
			return cluster.InstanceStopped
		}
	default:
		// A state this code does not know: pending is the answer that
		// neither creates a cluster without the instance nor removes it.
		return cluster.InstancePending
	}
}

func isTerminating(lifecycle string) bool {
	return strings.HasPrefix(lifecycle, "Terminat")
}

// groupName finds this instance's Auto Scaling group: from Auto Scaling
// itself, or from the aws:autoscaling:groupName tag it put on the instance.
func (p *Provider) groupName(ctx context.Context) (string, error) {
	p.mu.Lock()
	name := p.name
	p.mu.Unlock()
	if name != "" {
		return name, nil
	}
	self, err := p.Metadata(ctx)
	if err != nil {
		return "", err
	}
	name, err = p.groupNameOf(ctx, self.InstanceID)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	p.name = name
	p.mu.Unlock()
	p.log.Info("found the Auto Scaling group", "group", name, "instance", self.InstanceID)
	return name, nil
}

func (p *Provider) groupNameOf(ctx context.Context, instanceID string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := p.asg.DescribeAutoScalingInstances(cctx, &autoscaling.DescribeAutoScalingInstancesInput{
		InstanceIds: []string{instanceID},
	})
	if err != nil {
		return "", fmt.Errorf("finding the Auto Scaling group of %s: %w", instanceID, err)
	}
	for _, d := range out.AutoScalingInstances {
		if aws.ToString(d.InstanceId) == instanceID && aws.ToString(d.AutoScalingGroupName) != "" {
			return aws.ToString(d.AutoScalingGroupName), nil
		}
	}
	// Auto Scaling lets go of an instance before EC2 forgets its tags.
	tctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	desc, err := p.ec2.DescribeInstances(tctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instanceID}})
	if err != nil {
		return "", fmt.Errorf("reading the tags of %s: %w", instanceID, err)
	}
	for _, r := range desc.Reservations {
		for _, inst := range r.Instances {
			for _, t := range inst.Tags {
				if aws.ToString(t.Key) == groupNameTag && aws.ToString(t.Value) != "" {
					return aws.ToString(t.Value), nil
				}
			}
		}
	}
	return "", fmt.Errorf("instance %s is %w (no %s tag)", instanceID, provider.ErrNoAutoScalingGroup, groupNameTag)
}

// groupInstances lists the instances the Auto Scaling group holds.
func (p *Provider) groupInstances(ctx context.Context, name string) ([]astypes.Instance, error) {
	pages := autoscaling.NewDescribeAutoScalingGroupsPaginator(p.asg, &autoscaling.DescribeAutoScalingGroupsInput{
		AutoScalingGroupNames: []string{name},
	})
	var found bool
	var out []astypes.Instance
	for pages.HasMorePages() {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		page, err := pages.NextPage(cctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("describing auto scaling group %s: %w", name, err)
		}
		for _, g := range page.AutoScalingGroups {
			if aws.ToString(g.AutoScalingGroupName) != name {
				continue
			}
			found = true
			out = append(out, g.Instances...)
			p.mu.Lock()
			p.desired = int(aws.ToInt32(g.DesiredCapacity))
			p.mu.Unlock()
		}
	}
	if !found {
		return nil, fmt.Errorf("auto scaling group %s does not exist", name)
	}
	return out, nil
}

// ec2View is what the listing needs of EC2's view of an instance.
type ec2View struct {
	state   ec2types.InstanceStateName
	address string
	zone    string
}

// fullDescribeEvery bounds how long EC2's view of an instance in service
// is trusted without asking EC2 again.
const fullDescribeEvery = 10 * time.Minute

// machines returns EC2's view of the group's instances. EC2 is asked only
// about the instances whose view is not known: new ones, and those the
// group does not have InService and Healthy (an instance in service is
// running, and its private address never changes while it lives). So a
// listing of an unchanged group is one DescribeAutoScalingGroups call, and
// a DescribeInstances of every instance every fullDescribeEvery (SPEC §7).
func (p *Provider) machines(ctx context.Context, members []astypes.Instance) (map[string]ec2View, error) {
	now := p.now()
	p.mu.Lock()
	full := now.Sub(p.lastFullDescribe) >= fullDescribeEvery
	known := make(map[string]ec2View, len(members))
	var ask []string
	for _, m := range members {
		id := aws.ToString(m.InstanceId)
		k, ok := p.known[id]
		if ok && !full && inServiceAndHealthy(m) {
			known[id] = k
			continue
		}
		ask = append(ask, id)
	}
	p.mu.Unlock()
	if len(ask) == 0 {
		return known, nil
	}
	described, err := p.describeInstances(ctx, ask)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if full {
		p.lastFullDescribe = now
		p.known = map[string]ec2View{}
	}
	if p.known == nil {
		p.known = map[string]ec2View{}
	}
	for _, m := range members {
		id := aws.ToString(m.InstanceId)
		d, ok := described[id]
		if !ok {
			continue
		}
		known[id] = d
		if d.state == ec2types.InstanceStateNameRunning && inServiceAndHealthy(m) {
			p.known[id] = d
		} else {
			delete(p.known, id)
		}
	}
	// Forget the instances the group let go of.
	listed := make(map[string]bool, len(members))
	for _, m := range members {
		listed[aws.ToString(m.InstanceId)] = true
	}
	for id := range p.known {
		if !listed[id] {
			delete(p.known, id)
		}
	}
	return known, nil
}

func inServiceAndHealthy(m astypes.Instance) bool {
	return m.LifecycleState == astypes.LifecycleStateInService && aws.ToString(m.HealthStatus) == "Healthy"
}

// describeInstances returns EC2's view of the instances ids, by id. It
// filters by id rather than naming the ids, so that an instance EC2 does not
// know yet is missing from the answer instead of failing the whole call.
func (p *Provider) describeInstances(ctx context.Context, ids []string) (map[string]ec2View, error) {
	out := map[string]ec2View{}
	for start := 0; start < len(ids); start += maxFilterValues {
		chunk := ids[start:min(start+maxFilterValues, len(ids))]
		pages := ec2.NewDescribeInstancesPaginator(p.ec2, &ec2.DescribeInstancesInput{
			Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: chunk}},
		})
		for pages.HasMorePages() {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			page, err := pages.NextPage(cctx)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("describing instances: %w", err)
			}
			for _, r := range page.Reservations {
				for _, inst := range r.Instances {
					var m ec2View
					if inst.State != nil {
						m.state = inst.State.Name
					}
					m.address = aws.ToString(inst.PrivateIpAddress)
					if inst.Placement != nil {
						m.zone = aws.ToString(inst.Placement.AvailabilityZone)
					}
					out[aws.ToString(inst.InstanceId)] = m
				}
			}
		}
	}
	return out, nil
}

// Terminated returns those of ids that EC2 says are terminated or shutting
// down. The group forgets an instance once its termination completes, but
// EC2 lists it as terminated for about an hour more: this confirms that a
// member whose instance left the group listing is gone for good, so that
// its member can be removed at once instead of after --stale-grace. Ids EC2
// does not know are not confirmed.
func (p *Provider) Terminated(ctx context.Context, ids []string) ([]string, error) {
	machines, err := p.describeInstances(ctx, ids)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range ids {
		m, ok := machines[id]
		if ok && (m.state == ec2types.InstanceStateNameTerminated || m.state == ec2types.InstanceStateNameShuttingDown) {
			out = append(out, id)
		}
	}
	return out, nil
}

// Desired is the group's desired capacity as last listed, 0 when unknown
// (multi-region mode has no one group to ask).
func (p *Provider) Desired() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.multi != nil {
		return 0
	}
	return p.desired
}
