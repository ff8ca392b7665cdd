package fleet

import (
	"context"
	"fmt"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// CreateBucket creates an S3 bucket in the group's moto, for a snapshot
// store (--store s3://bucket/prefix): what the CloudFormation template's
// optional bucket is in production.
func (g *AWSGroup) CreateBucket(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	client := s3.NewFromConfig(motoConfig(g.moto.URL, AWSRegion), func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: sdkaws.String(name)}); err != nil {
		return fmt.Errorf("fleet: creating bucket %s: %w", name, err)
	}
	g.log.Info("bucket created", "bucket", name)
	return nil
}
