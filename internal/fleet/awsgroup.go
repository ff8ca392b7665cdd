package fleet

// The AWS tier of the fleet (SPEC §6): moto plays EC2, Auto Scaling and
// Route53, a fake IMDSv2 per instance plays the instance metadata service
// moto lacks, and every InService instance of the Auto Scaling group runs a
// real appliance with --provider aws on the loopback address moto gave it.
// A proxy (the tests' fault proxy) may stand between the appliances and moto.

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
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

const (
	// AWSRegion is the region of every AWSGroup; moto accepts any.
	AWSRegion = "us-east-1"
	// AWSZone is the zone of the group's subnet.
	AWSZone = AWSRegion + "a"
	// awsVPCCIDR makes moto hand out loopback addresses: Linux routes all
	// of 127/8 to lo, so each appliance binds its instance's own address.
	awsVPCCIDR = "127.0.0.0/16"
	// AWSGroupTag is the tag the Auto Scaling group puts on its instances,
	// valued with the group's name.
	AWSGroupTag = "etcd-appliance:test-group"
	// awsCallTimeout bounds one call of the fleet to moto.
	awsCallTimeout = 10 * time.Second
	// followInterval is how often Follow lists the Auto Scaling group.
	followInterval = 250 * time.Millisecond
)

// AWSOptions configures an AWSGroup.
type AWSOptions struct {
	// Binary is the etcd-appliance binary to run.
	Binary string
	// Dir receives moto's log (Dir/moto.log), a data dir per instance
	// (Dir/<id>) and a log per instance (Dir/<id>.log).
	Dir string
	// Args are extra flags of `etcd-appliance run`, after the fleet's own.
	Args []string
	// Logger receives the fleet's actions; nil discards them.
	Logger *slog.Logger
	// Size is the Auto Scaling group's min, max and desired capacity.
	Size int
	// HostedZone, when set, is a public Route53 hosted zone ("example.org")
	// that NewAWS creates in moto and every appliance gets as --hosted-zone;
	// Records reads back what they publish there.
	HostedZone string
	// Proxy, when set, puts a proxy between the appliances and moto: NewAWS
	// calls it with moto's URL once moto answers and gives the appliances
	// the endpoint it returns as their AWS; Close calls closeProxy once the
	// appliances are stopped, before it stops moto. The fleet's own calls
	// go to moto directly. The tests put their fault proxy there
	// (internal/testcluster).
	Proxy func(moto string) (endpoint string, closeProxy func(), err error)
	// TLS runs the appliances with --tls auto --tls-ca-secret, the cluster
	// CA in a Secrets Manager secret of moto that the first appliance
	// creates, and has the fleet's clients speak mutual TLS with a user
	// certificate of that CA.
	TLS bool
}

// AWSGroup is an Auto Scaling group in a moto of its own, whose instances
// run real appliances with --provider aws. The fleet follows the group as
// EC2 would: Sync (or Follow) starts an appliance, and its IMDS, for every
// instance that the group has InService and kills those of instances it let
// go of. The cloud's own operations (TerminateInASG, SetDesired) go through
// the Auto Scaling API.
type AWSGroup struct {
	opts AWSOptions
	name string
	log  *slog.Logger
	moto *Moto
	ec2  *ec2.Client
	asg  *autoscaling.Client
	r53  *route53.Client
	// zone is the hosted zone of opts.HostedZone, nil without one.
	zone *hostedZone
	// endpoint is the appliances' AWS: moto, or opts.Proxy's endpoint.
	endpoint string
	// closeProxy stops opts.Proxy's proxy; nil without one.
	closeProxy func()
	// awsFleet runs the machines of the group's instances: an IMDS and an
	// appliance each.
	awsFleet

	// syncMu serializes Sync and TerminateInASG: each compares the group's
	// listing with the processes and acts on the difference. It also
	// guards releaseFlags.
	syncMu sync.Mutex
	// releaseFlags are flags of the appliances started from now on (see
	// SetRelease).
	releaseFlags []string

	followMu sync.Mutex
	follow   []func() // stops of the running Follow loops

	closeOnce sync.Once
	closeErr  error
}

// NewAWS starts moto, creates in it a VPC 127.0.0.0/16 with a subnet of its
// own (a /24 reserved like a local group's), a launch template and an Auto
// Scaling group of opts.Size instances, then starts the appliance of every
// instance and waits until each answers /healthz. It fails (with
// ErrMotoNotFound) when moto is not installed. Close releases everything.
func NewAWS(ctx context.Context, opts AWSOptions) (*AWSGroup, error) {
	if opts.Binary == "" {
		return nil, errors.New("fleet: AWSOptions.Binary is required")
	}
	if fi, err := os.Stat(opts.Binary); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("fleet: binary %q is not a file", opts.Binary)
	}
	if opts.Dir == "" {
		return nil, errors.New("fleet: AWSOptions.Dir is required")
	}
	if opts.Size < 1 {
		return nil, fmt.Errorf("fleet: AWSOptions.Size %d: want at least 1", opts.Size)
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
	name := fmt.Sprintf("tc-aws-%06x", rand.Uint32()&0xffffff)
	log := opts.Logger.With("component", "fleet", "group", name)

	sn, err := reserveVPCSubnet()
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	moto, err := StartMoto(ctx, opts.Dir)
	if err != nil {
		sn.release()
		return nil, fmt.Errorf("fleet: %w", err)
	}
	cfg := motoConfig(moto.URL, AWSRegion)
	g := &AWSGroup{
		opts:     opts,
		name:     name,
		log:      log,
		moto:     moto,
		ec2:      ec2.NewFromConfig(cfg),
		asg:      autoscaling.NewFromConfig(cfg),
		r53:      route53.NewFromConfig(cfg),
		awsFleet: newAWSFleet(Options{Binary: opts.Binary, Dir: opts.Dir, Name: name, Args: opts.Args, Logger: opts.Logger}, log, sn),
	}
	g.endpoint = moto.URL
	if opts.TLS {
		g.procs.tls = awsSecretTLS(moto.URL, name+"-ca")
	}
	if opts.Proxy != nil {
		if g.endpoint, g.closeProxy, err = opts.Proxy(moto.URL); err != nil {
			g.Close()
			return nil, fmt.Errorf("fleet: starting the proxy to moto: %w", err)
		}
	}
	if opts.HostedZone != "" {
		if g.zone, err = createHostedZone(ctx, log, g.r53, opts.HostedZone, name); err != nil {
			g.Close()
			return nil, err
		}
	}
	if err := g.createGroup(ctx); err != nil {
		g.Close()
		return nil, err
	}
	log.Info("auto scaling group created", "moto", moto.URL, "subnet", sn.String(), "size", opts.Size)
	if err := g.waitInService(ctx, opts.Size); err != nil {
		g.Close()
		return nil, err
	}
	if _, _, err := g.Sync(ctx); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// reserveVPCSubnet reserves a /24 of 127.0.0.0/16 for the group's subnet,
// with the lock files of reserveSubnet, so that it never shares addresses
// with a local group or another AWS group. 127.0.0.0/24 is the usual
// loopback (and moto's own address); 127.0.1.0/24 is the subnet of the
// provider's moto tests.
func reserveVPCSubnet() (*subnet, error) {
	dir := filepath.Join(os.TempDir(), lockDir)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("reserving a loopback subnet: %w", err)
	}
	lastErr := errors.New("every /24 of 127.0.0.0/16 is taken")
	for _, b := range rand.Perm(256) {
		if b < 2 {
			continue
		}
		s, err := lockSubnet(dir, [3]byte{127, 0, byte(b)})
		if err != nil {
			lastErr = err
			continue
		}
		// moto's first address is .4; a process outside our locks may sit there.
		if !portsFree(s.address(1)) || !portsFree(s.address(4)) {
			s.release()
			lastErr = fmt.Errorf("an address of %s is in use", s)
			continue
		}
		return s, nil
	}
	return nil, fmt.Errorf("no free loopback /24 in %s: %w", awsVPCCIDR, lastErr)
}

// createGroup creates the VPC, the subnet, the launch template (IMDSv2
// only, as the product's template) and the Auto Scaling group.
func (g *AWSGroup) createGroup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 4*awsCallTimeout)
	defer cancel()
	vpc, err := g.ec2.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: sdkaws.String(awsVPCCIDR)})
	if err != nil {
		return fmt.Errorf("fleet: creating the VPC %s in moto: %w", awsVPCCIDR, err)
	}
	sub, err := g.ec2.CreateSubnet(ctx, &ec2.CreateSubnetInput{
		VpcId:            vpc.Vpc.VpcId,
		CidrBlock:        sdkaws.String(g.procs.net.String()),
		AvailabilityZone: sdkaws.String(AWSZone),
	})
	if err != nil {
		return fmt.Errorf("fleet: creating the subnet %s in moto: %w", g.procs.net, err)
	}
	images, err := g.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	if err != nil {
		return fmt.Errorf("fleet: listing moto's AMIs: %w", err)
	}
	if len(images.Images) == 0 {
		return errors.New("fleet: moto lists no AMI to launch")
	}
	lt, err := g.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: sdkaws.String(g.name),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
			ImageId:      images.Images[0].ImageId,
			InstanceType: ec2types.InstanceTypeT3Micro,
			MetadataOptions: &ec2types.LaunchTemplateInstanceMetadataOptionsRequest{
				HttpTokens: ec2types.LaunchTemplateHttpTokensStateRequired,
			},
		},
	})
	if err != nil {
		return fmt.Errorf("fleet: creating the launch template: %w", err)
	}
	size := sdkaws.Int32(int32(g.opts.Size))
	_, err = g.asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: sdkaws.String(g.name),
		LaunchTemplate: &astypes.LaunchTemplateSpecification{
			LaunchTemplateId: lt.LaunchTemplate.LaunchTemplateId,
			Version:          sdkaws.String("$Latest"),
		},
		MinSize:           size,
		MaxSize:           size,
		DesiredCapacity:   size,
		VPCZoneIdentifier: sub.Subnet.SubnetId,
		Tags: []astypes.Tag{{
			Key:               sdkaws.String(AWSGroupTag),
			Value:             sdkaws.String(g.name),
			PropagateAtLaunch: sdkaws.Bool(true),
			ResourceId:        sdkaws.String(g.name),
			ResourceType:      sdkaws.String("auto-scaling-group"),
		}},
	})
	if err != nil {
		return fmt.Errorf("fleet: creating the auto scaling group: %w", err)
	}
	return nil
}

// waitInService polls until the group has n instances InService.
func (g *AWSGroup) waitInService(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, healthyTimeout)
	defer cancel()
	err := Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		ids, err := g.InService(ctx)
		if err != nil {
			return false, err.Error()
		}
		return len(ids) == n, fmt.Sprintf("group %s has %d instances in service (%s), want %d",
			g.name, len(ids), strings.Join(ids, ", "), n)
	})
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	return nil
}

// Name is the Auto Scaling group's name.
func (g *AWSGroup) Name() string { return g.name }

// Dir is the group's directory.
func (g *AWSGroup) Dir() string { return g.opts.Dir }

// Subnet is the group's subnet, a /24 of the VPC 127.0.0.0/16.
func (g *AWSGroup) Subnet() string { return g.procs.net.String() }

// Moto is the group's moto server.
func (g *AWSGroup) Moto() *Moto { return g.moto }

// AWSEndpoint is the AWS endpoint of the appliances: the proxy of
// AWSOptions.Proxy when there is one, else moto.
func (g *AWSGroup) AWSEndpoint() string { return g.endpoint }

// Instance returns the instance id, nil if the fleet never started it.
func (g *AWSGroup) Instance(id string) *Instance { return g.procs.Instance(id) }

// Instances returns every instance the fleet ever started, in start order.
func (g *AWSGroup) Instances() []*Instance { return g.procs.Instances() }

// IMDS returns the metadata service of an instance, nil once it is gone.
func (g *AWSGroup) IMDS(id string) *IMDS {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.imds[id]
}

// lifecycles lists the group's instances and their lifecycle states.
func (g *AWSGroup) lifecycles(ctx context.Context) (map[string]astypes.LifecycleState, error) {
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	out, err := g.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{
		AutoScalingGroupNames: []string{g.name},
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: describing group %s: %w", g.name, err)
	}
	if len(out.AutoScalingGroups) != 1 {
		return nil, fmt.Errorf("fleet: moto lists %d groups named %s", len(out.AutoScalingGroups), g.name)
	}
	states := map[string]astypes.LifecycleState{}
	for _, i := range out.AutoScalingGroups[0].Instances {
		states[sdkaws.ToString(i.InstanceId)] = i.LifecycleState
	}
	return states, nil
}

// inService reports whether an instance in that lifecycle state runs on a
// machine of the group: Pending* and InService.
func inService(s astypes.LifecycleState) bool {
	return s == astypes.LifecycleStateInService || strings.HasPrefix(string(s), "Pending")
}

// InService returns the sorted ids of the instances the group has Pending
// or InService: the machines that exist and run.
func (g *AWSGroup) InService(ctx context.Context) ([]string, error) {
	states, err := g.lifecycles(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for id, s := range states {
		if inService(s) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Running returns the instances that the group has in service and whose
// appliance runs, by id: the instances a converged cluster consists of.
func (g *AWSGroup) Running(ctx context.Context) ([]*Instance, error) {
	ids, err := g.InService(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Instance
	for _, id := range ids {
		if inst := g.procs.Instance(id); inst != nil && inst.Running() {
			out = append(out, inst)
		}
	}
	return out, nil
}

// Sync makes the processes follow the group: it starts an IMDS and an
// appliance for every instance in service that has none yet (moto's
// launches and replacements) and waits until they answer /healthz, and it
// kills (SIGKILL, as the machine disappearing) the appliances of instances
// the group let go of. An appliance that exited on its own is not started
// again: that is for the test to see. It returns the ids started and
// stopped.
func (g *AWSGroup) Sync(ctx context.Context) (started, stopped []string, err error) {
	g.syncMu.Lock()
	defer g.syncMu.Unlock()
	states, err := g.lifecycles(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, inst := range g.procs.Instances() {
		if inService(states[inst.ID]) || g.isGone(inst.ID) {
			continue
		}
		if err := g.release(context.Background(), inst.ID); err != nil {
			return nil, stopped, err
		}
		lifecycle := string(states[inst.ID])
		if lifecycle == "" {
			lifecycle = "absent" // moto drops terminated instances from the listing at once
		}
		g.log.Info("instance left the group: appliance stopped", "id", inst.ID, "lifecycle", lifecycle)
		stopped = append(stopped, inst.ID)
	}
	var fresh []string
	for id, s := range states {
		if inService(s) && g.procs.Instance(id) == nil && !g.isGone(id) {
			fresh = append(fresh, id)
		}
	}
	if len(fresh) == 0 {
		return nil, stopped, nil
	}
	slices.Sort(fresh)
	machines, err := g.describe(ctx, fresh)
	if err != nil {
		return nil, stopped, err
	}
	var insts []*Instance
	var errs []error
	for _, m := range machines {
		inst, err := g.start(ctx, m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		insts = append(insts, inst)
		started = append(started, inst.ID)
	}
	return started, stopped, errors.Join(append(errs, g.procs.waitAllHealthy(ctx, insts))...)
}

// Follow runs Sync every 250ms in the background until ctx ends, the
// returned stop is called, or the group closes. Sync's errors go to the
// fleet's log; stop waits for the loop to end.
func (g *AWSGroup) Follow(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(followInterval)
		defer t.Stop()
		for {
			if _, _, err := g.Sync(ctx); err != nil && ctx.Err() == nil {
				g.log.Warn("following the group", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	g.followMu.Lock()
	g.follow = append(g.follow, stop)
	g.followMu.Unlock()
	return stop
}

// machine is what EC2 tells about an instance the fleet starts.
type machine struct {
	id, address, zone string
}

// describe reads the private address and zone of instances from EC2.
func (g *AWSGroup) describe(ctx context.Context, ids []string) ([]machine, error) {
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	out, err := g.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids})
	if err != nil {
		return nil, fmt.Errorf("fleet: describing %v: %w", ids, err)
	}
	byID := map[string]machine{}
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			m := machine{id: sdkaws.ToString(i.InstanceId), address: sdkaws.ToString(i.PrivateIpAddress), zone: AWSZone}
			if i.Placement != nil && sdkaws.ToString(i.Placement.AvailabilityZone) != "" {
				m.zone = sdkaws.ToString(i.Placement.AvailabilityZone)
			}
			byID[m.id] = m
		}
	}
	_, cidr, _ := net.ParseCIDR(g.procs.net.String())
	machines := make([]machine, 0, len(ids))
	for _, id := range ids {
		m, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("fleet: EC2 does not know instance %s of group %s", id, g.name)
		}
		// Binding an address outside our reserved /24 could take another
		// group's address.
		if ip := net.ParseIP(m.address); ip == nil || !cidr.Contains(ip) {
			return nil, fmt.Errorf("fleet: moto gave %s the address %q, outside the group's subnet %s", id, m.address, g.procs.net)
		}
		machines = append(machines, m)
	}
	return machines, nil
}

// start serves the IMDS of a machine and starts its appliance.
func (g *AWSGroup) start(ctx context.Context, m machine) (*Instance, error) {
	md := InstanceMetadata{
		InstanceID: m.id, Region: AWSRegion, Zone: m.zone, PrivateIP: m.address,
		TargetLifecycleState: string(astypes.LifecycleStateInService),
	}
	var flags []string
	if g.opts.HostedZone != "" {
		flags = append(flags, "--hosted-zone", g.opts.HostedZone)
	}
	flags = append(flags, g.releaseFlags...)
	return g.startInstance(ctx, md, g.AWSEndpoint(), flags...)
}

// SetRelease gives the appliances that start from now on these flags,
// before AWSOptions.Args: a new launch template version, which only the
// instances launched after it get, as a rolling update or an instance
// refresh brings (a bad one: a wrong --etcd-binary).
func (g *AWSGroup) SetRelease(flags ...string) {
	g.syncMu.Lock()
	defer g.syncMu.Unlock()
	g.releaseFlags = append([]string(nil), flags...)
	g.log.Info("release set for the instances launched from now on", "flags", flags)
}

// TerminateInASG terminates an instance through the Auto Scaling API, as an
// operator or a health check would, then kills its appliance and etcd
// (SIGKILL: the machine disappears). Without decrement the group launches
// a replacement, which Sync starts.
func (g *AWSGroup) TerminateInASG(ctx context.Context, id string, decrement bool) error {
	g.syncMu.Lock()
	defer g.syncMu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	_, err := g.asg.TerminateInstanceInAutoScalingGroup(cctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId:                     sdkaws.String(id),
		ShouldDecrementDesiredCapacity: sdkaws.Bool(decrement),
	})
	if err != nil {
		return fmt.Errorf("fleet: terminating %s in group %s: %w", id, g.name, err)
	}
	if err := g.release(context.Background(), id); err != nil {
		return fmt.Errorf("fleet: terminating %s: %w", id, err)
	}
	g.log.Info("instance terminated through the auto scaling group", "id", id, "decrement", decrement)
	return nil
}

// SetDesired makes the group's size n (min, max and desired capacity).
// moto launches or terminates instances at once; Sync then follows.
func (g *AWSGroup) SetDesired(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	size := sdkaws.Int32(int32(n))
	_, err := g.asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: sdkaws.String(g.name),
		MinSize:              size,
		MaxSize:              size,
		DesiredCapacity:      size,
	})
	if err != nil {
		return fmt.Errorf("fleet: setting the size of group %s to %d: %w", g.name, n, err)
	}
	g.log.Info("group size set", "size", n)
	return nil
}

// WaitConverged polls until the cluster is exactly the instances in service
// whose appliances run (see Running), with the conditions of
// Group.WaitConverged: voters healthy started voters named after the
// instance ids, one leader, one cluster id. An instance in service whose
// appliance does not run (Sync not called, or it crashed) keeps the count
// short.
func (g *AWSGroup) WaitConverged(ctx context.Context, voters int) (cluster.ClusterStatus, error) {
	return g.procs.waitConvergedAmong(ctx, voters, func() ([]*Instance, error) { return g.Running(ctx) })
}

// StatusOf returns an instance's whole-cluster view, GET /v1/status.
func (g *AWSGroup) StatusOf(ctx context.Context, id string) (cluster.ClusterStatus, error) {
	return g.procs.StatusOf(ctx, id)
}

// Status returns the whole-cluster view of the first running appliance
// that can read the member list (see Group.Status).
func (g *AWSGroup) Status(ctx context.Context) (cluster.ClusterStatus, error) {
	return g.procs.Status(ctx)
}

// Peer returns what an instance publishes on GET /v1/peer.
func (g *AWSGroup) Peer(ctx context.Context, id string) (cluster.PeerState, error) {
	return g.procs.Peer(ctx, id)
}

// Get calls any path of an instance's appliance API.
func (g *AWSGroup) Get(ctx context.Context, id, path string) (int, []byte, error) {
	return g.procs.Get(ctx, id, path)
}

// Client returns an etcd client over the given instances, or over every
// instance of Running when none is given. The caller closes it.
func (g *AWSGroup) Client(ctx context.Context, ids ...string) (*clientv3.Client, error) {
	if len(ids) == 0 {
		running, err := g.Running(ctx)
		if err != nil {
			return nil, err
		}
		if len(running) == 0 {
			return nil, errors.New("fleet: no running instance in service to connect to")
		}
		ids = make([]string, len(running))
		for k, inst := range running {
			ids[k] = inst.ID
		}
	}
	return g.procs.Client(ctx, ids...)
}

// LogTails returns the last n lines of every instance's log, with headers.
func (g *AWSGroup) LogTails(n int) string { return g.procs.LogTails(n) }

// Close stops the Follow loops, every appliance (SIGTERM, then SIGKILL),
// the IMDS servers and moto, and releases the subnet. The files in Dir are
// kept. Close is bounded and idempotent.
func (g *AWSGroup) Close() error {
	g.closeOnce.Do(func() {
		g.followMu.Lock()
		stops := g.follow
		g.follow = nil
		g.followMu.Unlock()
		for _, stop := range stops {
			stop()
		}
		g.closeErr = g.procs.Close()
		g.closeIMDS()
		if g.closeProxy != nil {
			g.closeProxy()
		}
		g.moto.Close()
		g.log.Info("aws group closed")
	})
	return g.closeErr
}
