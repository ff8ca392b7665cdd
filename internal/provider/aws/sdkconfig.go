package aws

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go/middleware"
	"github.com/prometheus/client_golang/prometheus"
)

// SDKConfigOptions configure SDKConfig. All fields are optional.
type SDKConfigOptions struct {
	// Region of the clients; default: the SDK's (AWS_REGION, the shared
	// config file), else this instance's region from IMDSv2.
	Region string
	// Endpoint is the base URL of the AWS APIs; default: the SDK's, which
	// honours AWS_ENDPOINT_URL.
	Endpoint string
	// IMDSEndpoint is the instance metadata service's URL; default: the
	// SDK's, which honours AWS_EC2_METADATA_SERVICE_ENDPOINT.
	IMDSEndpoint string
	// Registerer receives etcd_appliance_aws_requests_total; nil
	// registers nowhere. Sharing the provider's registry counts both
	// into one metric.
	Registerer prometheus.Registerer
}

// SDKConfig is an AWS SDK configuration like the provider's own, for the
// appliance's other AWS clients (the S3 snapshot store): the same retryer
// (jittered backoff on throttling, 5xx and connection errors), requests
// counted per API in etcd_appliance_aws_requests_total, and instance-role
// credentials read through IMDSv2 only. Callers bound each call with their
// own context timeouts.
func SDKConfig(ctx context.Context, opts SDKConfigOptions) (aws.Config, error) {
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return aws.Config{}, err
	}
	return loadSDKConfig(ctx, opts.Region, opts.Endpoint, newIMDS(opts.IMDSEndpoint), m)
}

// newIMDS is an IMDS client that never falls back to IMDSv1: a failed token
// request is an error, never a silent token-less request (SPEC §4.1, §4.8).
func newIMDS(endpoint string) *imds.Client {
	return imds.New(imds.Options{Endpoint: endpoint, EnableFallback: aws.FalseTernary})
}

// loadSDKConfig is the configuration shared by every AWS client of the
// appliance: the standard retryer, m counting each request, instance-role
// credentials read through meta, and the endpoint when set. Without region
// the SDK's is used, else meta's.
func loadSDKConfig(ctx context.Context, region, endpoint string, meta *imds.Client, m *metrics) (aws.Config, error) {
	loadOpts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(newRetryer),
		awsconfig.WithAPIOptions([]func(*middleware.Stack) error{m.countRequests}),
		awsconfig.WithEC2RoleCredentialOptions(func(o *ec2rolecreds.Options) { o.Client = meta }),
	}
	if region != "" {
		loadOpts = append(loadOpts, awsconfig.WithRegion(region))
	}
	if endpoint != "" {
		loadOpts = append(loadOpts, awsconfig.WithBaseEndpoint(endpoint))
	}
	lctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	cfg, err := awsconfig.LoadDefaultConfig(lctx, loadOpts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		out, err := meta.GetRegion(lctx, &imds.GetRegionInput{})
		if err != nil {
			return aws.Config{}, fmt.Errorf("finding the region (set AWS_REGION off EC2): %w", err)
		}
		cfg.Region = out.Region
	}
	return cfg, nil
}
