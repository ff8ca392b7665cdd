// Package aws is the provider of an EC2 Auto Scaling group: the instance
// learns who it is from the instance metadata service (IMDSv2 only, never the
// token-less v1), and its group is its own Auto Scaling group, with each
// instance's EC2 state and private address from DescribeInstances. The
// cluster's DNS records live in a Route53 hosted zone (see DNS). In
// multi-region mode (Options.Regions) the group is instead every instance
// carrying the cluster tag in the listed regions, peers reach each other by
// public DNS name, and the members are allowed in each region's cluster
// security group (see Firewall).
//
// Every AWS call is bounded by a timeout, retried with jittered exponential
// backoff on throttling, 5xx and connection errors (the SDK's standard
// retryer), and counted per API and outcome in
// etcd_appliance_aws_requests_total. A listing that fails or comes back
// empty is reported as provider.ErrGroupUnknown, never as an empty group.
//
// Endpoints come from the standard AWS environment unless Options set them:
// AWS_ENDPOINT_URL (the AWS APIs, e.g. moto in tests) and
// AWS_EC2_METADATA_SERVICE_ENDPOINT (IMDS). Credentials come from the SDK's
// default chain; the instance-role lookup uses the same IMDSv2-only client.
package aws

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-appliance/etcd-appliance/internal/awsconf"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// callTimeout bounds one AWS call, its retries included.
const callTimeout = awsconf.CallTimeout

// Options configure a Provider. All fields are optional.
type Options struct {
	// Region is the AWS region of the group; default: this instance's
	// region from IMDS.
	Region string
	// Endpoint is the base URL of the AWS APIs; default: the SDK's, which
	// honours AWS_ENDPOINT_URL.
	Endpoint string
	// IMDSEndpoint is the instance metadata service's URL; default: the
	// SDK's, which honours AWS_EC2_METADATA_SERVICE_ENDPOINT.
	IMDSEndpoint string
	// LifecycleHook names the group's termination hook that the instance
	// completes when it has drained; default: every hook of the group on
	// autoscaling:EC2_INSTANCE_TERMINATING.
	LifecycleHook string
	// Regions, when set, turn on multi-region mode (§4.1): the group is
	// every instance carrying the cluster tag in these regions, which must
	// include this instance's own.
	Regions []string
	// ClusterTagKey is the cluster tag's key in multi-region mode; default
	// DefaultClusterTagKey.
	ClusterTagKey string
	// PrivateNetwork: in multi-region mode, members reach each other by
	// their private addresses (peered VPCs), not by their public names.
	PrivateNetwork bool
	// Registerer receives the provider's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Provider is this instance's identity (IMDSv2) and its Auto Scaling group.
type Provider struct {
	log    *slog.Logger
	region string
	meta   metadataAPI
	asg    autoscalingAPI
	ec2    ec2API
	r53    route53API
	lc     lifecycleAPI
	// multi is the group of multi-region mode; nil in single-region mode.
	multi *multiRegion

	hookName string

	now func() time.Time

	mu   sync.Mutex
	self *Metadata // cached: an instance's identity never changes
	name string    // cached group name, once found
	// hooks are the group's lifecycle hooks by transition, each looked up
	// once.
	hooks map[string][]string
	// known is EC2's view of the instances in service, by id, and
	// lastFullDescribe when EC2 was last asked about all of them.
	known            map[string]ec2View
	lastFullDescribe time.Time
	// desired is the group's desired capacity in the last listing.
	desired int
}

var (
	_ provider.Identity = (*Provider)(nil)
	_ provider.Group    = (*Provider)(nil)
	_ provider.Sized    = (*Provider)(nil)
)

// metadataAPI is the part of the IMDS client the provider uses.
type metadataAPI interface {
	GetMetadata(ctx context.Context, in *imds.GetMetadataInput, optFns ...func(*imds.Options)) (*imds.GetMetadataOutput, error)
}

// autoscalingAPI is the part of the Auto Scaling client the provider uses.
type autoscalingAPI interface {
	DescribeAutoScalingInstances(ctx context.Context, in *autoscaling.DescribeAutoScalingInstancesInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingInstancesOutput, error)
	DescribeAutoScalingGroups(ctx context.Context, in *autoscaling.DescribeAutoScalingGroupsInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error)
}

// ec2API is the part of the EC2 client the provider uses.
type ec2API interface {
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

// New builds the provider. Without Options.Region it asks IMDS for the
// region, so on an instance it fails when IMDS does not answer.
func New(ctx context.Context, opts Options) (*Provider, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := awsconf.NewMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	meta := awsconf.NewIMDS(opts.IMDSEndpoint)
	p := &Provider{log: logger, region: opts.Region, meta: meta, now: time.Now, hookName: opts.LifecycleHook}
	if p.region == "" {
		self, err := p.Metadata(ctx)
		if err != nil {
			return nil, fmt.Errorf("finding the region: %w", err)
		}
		p.region = self.Region
	}
	// p.region is set, so the SDK's own region (AWS_REGION) is not used.
	cfg, err := awsconf.Load(ctx, awsconf.Options{Region: p.region, Endpoint: opts.Endpoint, IMDS: meta, Metrics: m})
	if err != nil {
		return nil, err
	}
	asg := autoscaling.NewFromConfig(cfg)
	p.asg, p.lc = asg, asg
	p.ec2 = ec2.NewFromConfig(cfg)
	// Route53 is global: the SDK resolves its endpoint and signing region
	// from the partition of p.region.
	p.r53 = route53.NewFromConfig(cfg)
	if len(opts.Regions) > 0 {
		// Same retries, metrics, endpoint and credentials in every region.
		p.multi, err = newMultiRegion(p.region, opts.Regions, opts.ClusterTagKey, opts.PrivateNetwork, func(region string) ec2API {
			return ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.Region = region })
		})
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Region is the group's region.
func (p *Provider) Region() string { return p.region }
