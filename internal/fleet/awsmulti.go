package fleet

// The multi-region AWS tier of the fleet: one moto plays EC2 in several
// regions (it keeps them apart by the signing region), each region with its
// own VPC 127.0.0.0/16, a subnet (a /24 reserved like an AWS group's) and a
// security group carrying the cluster tag. The instances are launched with
// RunInstances, tagged with the cluster tag, and each runs a real appliance
// with --regions on the loopback address moto gave it.
//
// moto gaps: moto does not propagate aws:cloudformation:* tags, so the
// cluster tag is a key of the fleet's own (AWSMultiTag, passed as
// --cluster-tag-key); instances in these VPCs get no public address, so
// the appliances advertise their private addresses; and moto keeps security
// group rules without enforcing them on loopback traffic.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// AWSMultiTag is the cluster tag's key of an AWSMulti; its value is the
// group's name.
const AWSMultiTag = "etcd-appliance:test-cluster"

// defaultAWSMultiRegions are the regions of an AWSMulti unless its options
// name others.
func defaultAWSMultiRegions() []string { return []string{"us-east-1", "eu-west-1"} }

// AWSMultiOptions configures an AWSMulti.
type AWSMultiOptions struct {
	// Binary is the etcd-appliance binary to run.
	Binary string
	// Dir receives moto's log, a data dir and a log per instance.
	Dir string
	// Args are extra flags of `etcd-appliance run`, after the fleet's own.
	Args   []string
	Logger *slog.Logger
	// Regions are the regions, passed to every appliance as --regions;
	// default us-east-1 and eu-west-1.
	Regions []string
	// Sizes is how many instances to launch in each region, in the order
	// of Regions.
	Sizes []int
	// Faithful runs every instance in a network namespace of its region,
	// with a public address and DNS name, behind security groups that are
	// enforced, as on AWS (faithful.go). It needs root, ip and nft.
	Faithful bool
	// InterRegionRTT, with Faithful, is the round trip between regions
	// that the public proxy adds (half each way); SetInterRegionRTT
	// changes it.
	InterRegionRTT time.Duration
	// InterRegionLoss, with Faithful, is the share (0 to 1) of the chunks
	// between regions that the public proxy "loses": each arrives a TCP
	// retransmission timeout later, holding back those after it.
	InterRegionLoss float64
	// Peered, with Faithful, joins the regions' VPCs by peering with DNS
	// resolution on (faithfulpeering.go): the instances reach each other's
	// private addresses, and public names resolve to private addresses in
	// every region. Run the appliances with --multi-region-network private.
	Peered bool
	// HostedZone, when set, is a public Route53 hosted zone ("example.org")
	// that NewAWSMulti creates in moto and every appliance gets as
	// --hosted-zone; Records reads back what they publish there. On the
	// faithful network the resolver answers the zone's names from it.
	HostedZone string
}

// AWSMulti is a multi-region group in a moto of its own.
type AWSMulti struct {
	opts AWSMultiOptions
	name string
	log  *slog.Logger
	moto *Moto
	// regions holds each region's clients and resources, by name.
	regions map[string]*awsRegion
	// awsFleet runs the machines of the group's instances: an IMDS and an
	// appliance each. Its procs is nil until the subnets are reserved.
	awsFleet

	regionMu sync.Mutex
	regionOf map[string]string // by instance id

	// zone is the hosted zone of opts.HostedZone, nil without one.
	zone *hostedZone

	// faithful is the network of Options.Faithful, nil on loopback; the
	// appliances' AWS is then endpoint, which fills in the public
	// addresses. launchMu holds DescribeInstances answers back while an
	// instance is launched and not yet given its public address.
	faithful  *faithfulNet
	endpoint  *ec2Endpoint
	launchMu  sync.RWMutex
	stopSG    context.CancelFunc
	sgStopped chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// awsRegion is one region of an AWSMulti.
type awsRegion struct {
	name   string
	ec2    *ec2.Client
	net    *subnet
	subnet string // the subnet's id
	sg     string // the cluster security group's id
	image  string
}

// NewAWSMulti starts moto, builds every region, launches the instances and
// starts their appliances, and waits until each answers /healthz. It fails
// (with ErrMotoNotFound) when moto is not installed.
func NewAWSMulti(ctx context.Context, opts AWSMultiOptions) (*AWSMulti, error) {
	if opts.Binary == "" || opts.Dir == "" {
		return nil, errors.New("fleet: AWSMultiOptions.Binary and Dir are required")
	}
	if len(opts.Regions) == 0 {
		opts.Regions = defaultAWSMultiRegions()
	}
	if opts.Peered && !opts.Faithful {
		return nil, errors.New("fleet: AWSMultiOptions.Peered needs Faithful")
	}
	if len(opts.Sizes) != len(opts.Regions) {
		return nil, fmt.Errorf("fleet: %d sizes for %d regions", len(opts.Sizes), len(opts.Regions))
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	name := fmt.Sprintf("tc-multi-%06x", rand.Uint32()&0xffffff)
	log := opts.Logger.With("component", "fleet", "group", name)
	g := &AWSMulti{
		opts: opts, name: name, log: log,
		regions:  map[string]*awsRegion{},
		regionOf: map[string]string{},
	}
	if opts.Faithful {
		if g.faithful, err = newFaithfulNet(ctx, log, opts.Regions); err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
		g.faithful.proxy.oneWay.Store(int64(opts.InterRegionRTT / 2))
		g.faithful.proxy.lossPPM.Store(int64(opts.InterRegionLoss * 1e6))
		if opts.Peered {
			if err := g.faithful.peer(ctx, opts.Regions); err != nil {
				g.Close()
				return nil, fmt.Errorf("fleet: %w", err)
			}
		}
		for _, r := range opts.Regions {
			// A copy without the lock: the netlab releases it.
			g.regions[r] = &awsRegion{name: r, net: &subnet{prefix: g.faithful.labs[r].net.prefix}}
		}
	}
	// Each region gets a /24 of its own; the first is the process group's
	// and released by it, the others by Close.
	for _, r := range opts.Regions {
		if opts.Faithful {
			break
		}
		sn, err := reserveVPCSubnet()
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("fleet: %w", err)
		}
		g.regions[r] = &awsRegion{name: r, net: sn}
	}
	g.awsFleet = newAWSFleet(Options{Binary: opts.Binary, Dir: opts.Dir, Name: name, Args: opts.Args, Logger: opts.Logger},
		log, g.regions[opts.Regions[0]].net)
	if g.moto, err = StartMoto(ctx, opts.Dir); err != nil {
		g.Close()
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if opts.HostedZone != "" {
		r53 := route53.NewFromConfig(motoConfig(g.moto.URL, opts.Regions[0]))
		if g.zone, err = createHostedZone(ctx, log, r53, opts.HostedZone, name); err != nil {
			g.Close()
			return nil, err
		}
		if g.faithful != nil {
			g.faithful.mu.Lock()
			g.faithful.public = g.zone.lookupA
			g.faithful.mu.Unlock()
		}
	}
	for _, r := range opts.Regions {
		if err := g.createRegion(ctx, g.regions[r]); err != nil {
			g.Close()
			return nil, err
		}
	}
	if g.faithful != nil {
		if err := g.startFaithful(ctx); err != nil {
			g.Close()
			return nil, err
		}
	}
	var insts []*Instance
	for k, r := range opts.Regions {
		for range opts.Sizes[k] {
			inst, err := g.launch(ctx, r)
			if err != nil {
				g.Close()
				return nil, err
			}
			insts = append(insts, inst)
		}
	}
	if err := g.procs.waitAllHealthy(ctx, insts); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// createRegion makes a region's VPC, subnet and cluster security group.
func (g *AWSMulti) createRegion(ctx context.Context, r *awsRegion) error {
	ctx, cancel := context.WithTimeout(ctx, 4*awsCallTimeout)
	defer cancel()
	r.ec2 = ec2.NewFromConfig(motoConfig(g.moto.URL, r.name))
	cidr := awsVPCCIDR
	if g.faithful != nil {
		cidr = r.net.String() // the region's netlab
	}
	vpc, err := r.ec2.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: sdkaws.String(cidr)})
	if err != nil {
		return fmt.Errorf("fleet: creating the VPC in %s: %w", r.name, err)
	}
	sub, err := r.ec2.CreateSubnet(ctx, &ec2.CreateSubnetInput{
		VpcId: vpc.Vpc.VpcId, CidrBlock: sdkaws.String(r.net.String()), AvailabilityZone: sdkaws.String(r.name + "a"),
	})
	if err != nil {
		return fmt.Errorf("fleet: creating the subnet %s in %s: %w", r.net, r.name, err)
	}
	r.subnet = sdkaws.ToString(sub.Subnet.SubnetId)
	sg, err := r.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName: sdkaws.String(g.name), Description: sdkaws.String("etcd-appliance test cluster " + g.name),
		VpcId: vpc.Vpc.VpcId,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup,
			Tags: []ec2types.Tag{{Key: sdkaws.String(AWSMultiTag), Value: sdkaws.String(g.name)}}}},
	})
	if err != nil {
		return fmt.Errorf("fleet: creating the security group in %s: %w", r.name, err)
	}
	r.sg = sdkaws.ToString(sg.GroupId)
	if g.faithful != nil {
		if err := g.admitWithinGroup(ctx, r); err != nil {
			return err
		}
	}
	images, err := r.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	if err != nil || len(images.Images) == 0 {
		return fmt.Errorf("fleet: moto lists no AMI in %s: %v", r.name, err)
	}
	r.image = sdkaws.ToString(images.Images[0].ImageId)
	g.log.Info("region created", "region", r.name, "subnet", r.net.String(), "security_group", r.sg)
	return nil
}

// Name is the group's name: the value of its cluster tag.
func (g *AWSMulti) Name() string { return g.name }

// Moto is the group's moto server.
func (g *AWSMulti) Moto() *Moto { return g.moto }

// Regions are the group's regions.
func (g *AWSMulti) Regions() []string { return slices.Clone(g.opts.Regions) }

// RegionOf is the region of an instance, "" if the fleet never launched it.
func (g *AWSMulti) RegionOf(id string) string {
	g.regionMu.Lock()
	defer g.regionMu.Unlock()
	return g.regionOf[id]
}

// Instance returns the instance id, nil if the fleet never started it.
func (g *AWSMulti) Instance(id string) *Instance { return g.procs.Instance(id) }

// Instances returns every instance the fleet ever started, in start order.
func (g *AWSMulti) Instances() []*Instance { return g.procs.Instances() }

// Launch launches one more tagged instance in region, as a stack's Auto
// Scaling group would, and starts its appliance.
func (g *AWSMulti) Launch(ctx context.Context, region string) (*Instance, error) {
	inst, err := g.launch(ctx, region)
	if err != nil {
		return nil, err
	}
	return inst, g.procs.waitHealthy(ctx, inst)
}

func (g *AWSMulti) launch(ctx context.Context, region string) (*Instance, error) {
	r, ok := g.regions[region]
	if !ok {
		return nil, fmt.Errorf("fleet: %s is not a region of group %s", region, g.name)
	}
	cctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	// Until the public address is reserved, no DescribeInstances answer
	// may show the instance without it (EC2 assigns it at launch).
	g.launchMu.Lock()
	locked := true
	defer func() {
		if locked {
			g.launchMu.Unlock()
		}
	}()
	out, err := r.ec2.RunInstances(cctx, &ec2.RunInstancesInput{
		ImageId: sdkaws.String(r.image), InstanceType: ec2types.InstanceTypeT3Micro,
		MinCount: sdkaws.Int32(1), MaxCount: sdkaws.Int32(1), SubnetId: sdkaws.String(r.subnet),
		SecurityGroupIds: []string{r.sg},
		MetadataOptions:  &ec2types.InstanceMetadataOptionsRequest{HttpTokens: ec2types.HttpTokensStateRequired},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance,
			Tags: []ec2types.Tag{{Key: sdkaws.String(AWSMultiTag), Value: sdkaws.String(g.name)}}}},
	})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("fleet: launching an instance in %s: %w", region, err)
	}
	if len(out.Instances) != 1 {
		return nil, fmt.Errorf("fleet: moto launched %d instances in %s, want 1", len(out.Instances), region)
	}
	m := out.Instances[0]
	id, addr := sdkaws.ToString(m.InstanceId), sdkaws.ToString(m.PrivateIpAddress)
	_, cidr, _ := net.ParseCIDR(r.net.String())
	if ip := net.ParseIP(addr); ip == nil || !cidr.Contains(ip) {
		return nil, fmt.Errorf("fleet: moto gave %s the address %q, outside the subnet %s of %s", id, addr, r.net, region)
	}
	zone := region + "a"
	if m.Placement != nil && sdkaws.ToString(m.Placement.AvailabilityZone) != "" {
		zone = sdkaws.ToString(m.Placement.AvailabilityZone)
	}
	md := InstanceMetadata{InstanceID: id, Region: region, Zone: zone, PrivateIP: addr}
	endpoint := g.moto.URL
	if g.faithful != nil {
		h, err := g.faithful.reserveHost(id, region, addr)
		if err != nil {
			return nil, fmt.Errorf("fleet: %s: %w", id, err)
		}
		md.PublicIP, md.PublicHostname, endpoint = h.public, h.name, g.endpoint.URL
	}
	g.launchMu.Unlock()
	locked = false
	g.regionMu.Lock()
	g.regionOf[id] = region
	g.regionMu.Unlock()
	flags := []string{"--regions", strings.Join(g.opts.Regions, ","), "--cluster-tag-key", AWSMultiTag}
	if g.opts.HostedZone != "" {
		flags = append(flags, "--hosted-zone", g.opts.HostedZone)
	}
	inst, err := g.startInstance(ctx, md, endpoint, flags...)
	if err != nil {
		return nil, err
	}
	return inst, nil
}

// Terminate terminates an instance through EC2 and kills its appliance and
// etcd (SIGKILL: the machine disappears). Nothing replaces it: see Launch.
func (g *AWSMulti) Terminate(ctx context.Context, id string) error {
	region := g.RegionOf(id)
	r, ok := g.regions[region]
	if !ok {
		return fmt.Errorf("fleet: %s is no instance of group %s", id, g.name)
	}
	cctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	_, err := r.ec2.TerminateInstances(cctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
	cancel()
	if err != nil {
		return fmt.Errorf("fleet: terminating %s in %s: %w", id, region, err)
	}
	if err := g.release(ctx, id); err != nil {
		return err
	}
	if g.faithful != nil {
		g.faithful.removeHost(id)
	}
	g.log.Info("instance terminated", "id", id, "region", region)
	return nil
}

// Running returns the instances the fleet launched, has not terminated,
// and whose appliance runs.
func (g *AWSMulti) Running() []*Instance {
	var out []*Instance
	for _, inst := range g.procs.Instances() {
		if !g.isGone(inst.ID) && inst.Running() {
			out = append(out, inst)
		}
	}
	return out
}

// WaitConverged polls until the cluster is exactly the running instances
// (see Running), with the conditions of Group.WaitConverged.
func (g *AWSMulti) WaitConverged(ctx context.Context, voters int) (cluster.ClusterStatus, error) {
	return g.procs.waitConvergedAmong(ctx, voters, func() ([]*Instance, error) { return g.Running(), nil })
}

// StatusOf is instance id's view of the cluster (its /v1/status).
func (g *AWSMulti) StatusOf(ctx context.Context, id string) (cluster.ClusterStatus, error) {
	return g.procs.StatusOf(ctx, id)
}

// Client returns an etcd client over the given instances, or over the
// running instances when none is given. The caller closes it.
func (g *AWSMulti) Client(ctx context.Context, ids ...string) (*clientv3.Client, error) {
	if len(ids) == 0 {
		for _, inst := range g.Running() {
			ids = append(ids, inst.ID)
		}
	}
	if len(ids) == 0 {
		return nil, errors.New("fleet: no running instance to connect to")
	}
	return g.procs.Client(ctx, ids...)
}

// Ingress reads the TCP ingress rules of the cluster security group of
// region, one per port and CIDR, with their descriptions.
func (g *AWSMulti) Ingress(ctx context.Context, region string) ([]cluster.IngressRule, error) {
	r, ok := g.regions[region]
	if !ok {
		return nil, fmt.Errorf("fleet: %s is not a region of group %s", region, g.name)
	}
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	out, err := r.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{r.sg}})
	if err != nil {
		return nil, fmt.Errorf("fleet: describing security group %s in %s: %w", r.sg, region, err)
	}
	var rules []cluster.IngressRule
	for _, sg := range out.SecurityGroups {
		for _, perm := range sg.IpPermissions {
			for _, rng := range perm.IpRanges {
				rules = append(rules, cluster.IngressRule{
					Region: region, Port: int(sdkaws.ToInt32(perm.FromPort)),
					CIDR: sdkaws.ToString(rng.CidrIp), Description: sdkaws.ToString(rng.Description),
				})
			}
		}
	}
	return rules, nil
}

// AddIngress adds a rule to the cluster security group of region, as an
// operator would: a rule the appliances must leave alone.
func (g *AWSMulti) AddIngress(ctx context.Context, region string, port int32, cidr, description string) error {
	r, ok := g.regions[region]
	if !ok {
		return fmt.Errorf("fleet: %s is not a region of group %s", region, g.name)
	}
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	_, err := r.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{
		GroupId: sdkaws.String(r.sg),
		IpPermissions: []ec2types.IpPermission{{
			IpProtocol: sdkaws.String("tcp"), FromPort: sdkaws.Int32(port), ToPort: sdkaws.Int32(port),
			IpRanges: []ec2types.IpRange{{CidrIp: sdkaws.String(cidr), Description: sdkaws.String(description)}},
		}},
	})
	if err != nil {
		return fmt.Errorf("fleet: adding a rule to %s in %s: %w", r.sg, region, err)
	}
	return nil
}

// LogTails returns the last n lines of every instance's log, with headers.
func (g *AWSMulti) LogTails(n int) string { return g.procs.LogTails(n) }

// Close stops every appliance, the IMDS servers and moto, and releases the
// subnets. The files in Dir are kept. Close is bounded and idempotent.
func (g *AWSMulti) Close() error {
	g.closeOnce.Do(func() {
		first := ""
		if len(g.opts.Regions) > 0 {
			first = g.opts.Regions[0]
		}
		if g.stopSG != nil {
			g.stopSG()
			<-g.sgStopped
		}
		if g.procs != nil {
			g.closeErr = g.procs.Close() // releases the first region's subnet
		}
		g.closeIMDS()
		if g.endpoint != nil {
			g.endpoint.close()
		}
		if g.faithful != nil {
			if err := g.faithful.close(); err != nil {
				g.closeErr = errors.Join(g.closeErr, fmt.Errorf("fleet: %w", err))
			}
		}
		if g.moto != nil {
			g.moto.Close()
		}
		for name, r := range g.regions {
			if g.faithful == nil && (name != first || g.procs == nil) {
				r.net.release()
			}
		}
		g.log.Info("multi-region group closed")
	})
	return g.closeErr
}

// awsMultiPollInterval is how often tests poll a multi-region group's rules.
const awsMultiPollInterval = 250 * time.Millisecond

// WaitIngress polls until the cluster's own rules in every region are
// exactly want (by region, port and CIDR), and returns the last rules read.
func (g *AWSMulti) WaitIngress(ctx context.Context, want []cluster.IngressRule) ([]cluster.IngressRule, error) {
	spec := cluster.FirewallSpec{Cluster: g.name}
	var last []cluster.IngressRule
	err := Poll(ctx, awsMultiPollInterval, func() (bool, string) {
		last = nil
		for _, r := range g.opts.Regions {
			rules, err := g.Ingress(ctx, r)
			if err != nil {
				return false, err.Error()
			}
			for _, rule := range rules {
				if spec.Owns(rule) {
					last = append(last, rule)
				}
			}
		}
		return cluster.EqualIngress(last, want), fmt.Sprintf("the cluster's rules are %v, want %v", last, want)
	})
	return last, err
}
