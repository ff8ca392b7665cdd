// Package awsconf is the AWS SDK configuration that every AWS client of the
// appliance shares, the provider's (Auto Scaling, EC2, Route53) and the S3
// snapshot store's: one retry policy, one per-call timeout, one request
// metric, and instance-role credentials read through IMDSv2 only.
//
// Every call is retried with jittered exponential backoff on throttling, 5xx
// and connection errors (the SDK's standard retryer), and counted per API and
// outcome in etcd_appliance_aws_requests_total. Callers bound each call,
// its retries included, with CallTimeout.
package awsconf

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go/middleware"
)

const (
	// CallTimeout bounds one AWS call, its retries included.
	CallTimeout = 5 * time.Second
	// maxAttempts is how often a call is tried before its error is returned.
	maxAttempts = 5
	// maxBackoff caps the jittered delay between two attempts, so that the
	// retries of a call fit in CallTimeout.
	maxBackoff = time.Second
)

// Options configure Load. All fields are optional.
type Options struct {
	// Region of the clients; default: the SDK's (AWS_REGION, the shared
	// config file), else this instance's region from IMDS.
	Region string
	// Endpoint is the base URL of the AWS APIs; default: the SDK's, which
	// honours AWS_ENDPOINT_URL (moto in tests).
	Endpoint string
	// IMDS is the instance metadata client that reads the instance role's
	// credentials and, without Region, the region; default: NewIMDS("").
	IMDS *imds.Client
	// Metrics count every request; nil counts none.
	Metrics *Metrics
}

// Load is the SDK configuration of an AWS client of the appliance: the
// standard retryer, each request counted in opts.Metrics, instance-role
// credentials read through opts.IMDS, and opts.Endpoint when set. Without
// opts.Region the SDK's region is used, else the instance's from IMDS.
func Load(ctx context.Context, opts Options) (aws.Config, error) {
	meta := opts.IMDS
	if meta == nil {
		meta = NewIMDS("")
	}
	loadOpts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(newRetryer),
		awsconfig.WithEC2RoleCredentialOptions(func(o *ec2rolecreds.Options) { o.Client = meta }),
	}
	if opts.Metrics != nil {
		loadOpts = append(loadOpts, awsconfig.WithAPIOptions([]func(*middleware.Stack) error{opts.Metrics.countRequests}))
	}
	if opts.Region != "" {
		loadOpts = append(loadOpts, awsconfig.WithRegion(opts.Region))
	}
	if opts.Endpoint != "" {
		loadOpts = append(loadOpts, awsconfig.WithBaseEndpoint(opts.Endpoint))
	}
	lctx, cancel := context.WithTimeout(ctx, CallTimeout)
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

// NewIMDS is an IMDS client that never falls back to IMDSv1: a failed token
// request is an error, never a silent token-less request (SPEC §4.1, §4.8).
// An empty endpoint is the SDK's, which honours
// AWS_EC2_METADATA_SERVICE_ENDPOINT.
func NewIMDS(endpoint string) *imds.Client {
	return imds.New(imds.Options{Endpoint: endpoint, EnableFallback: aws.FalseTernary})
}

// newRetryer is the SDK's standard retryer (throttling, 5xx, connection
// errors; jittered exponential backoff; a retry quota), tried a few more
// times than the default with a short backoff cap.
func newRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = maxAttempts
		o.MaxBackoff = maxBackoff
	})
}
