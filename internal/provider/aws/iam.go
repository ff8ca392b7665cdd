package aws

import "strings"

// PolicyFeatures are the enabled features whose AWS calls a policy allows.
type PolicyFeatures struct {
	// DNS allows publishing the cluster's records in Route53.
	DNS bool
	// HostedZoneID scopes the record changes to one zone; empty: any zone.
	HostedZoneID string
	// Lifecycle allows completing the group's lifecycle hooks: holding
	// the instance's termination while it drains (SPEC §4.5), and its
	// launch until it is a healthy voter (the launch gate). Both make the
	// same three calls.
	Lifecycle bool
	// StoreBucket is the S3 bucket of the snapshot store; empty: no bucket.
	StoreBucket string
	// MultiRegion allows keeping the members' ingress rules in the cluster
	// security group of every region (--regions, SPEC §4.4).
	MultiRegion bool
}

// PolicyDocument is an IAM policy document.
type PolicyDocument struct {
	Version   string            `json:"Version"`
	Statement []PolicyStatement `json:"Statement"`
}

// PolicyStatement is one statement of a PolicyDocument.
type PolicyStatement struct {
	Sid      string   `json:"Sid"`
	Effect   string   `json:"Effect"`
	Action   []string `json:"Action"`
	Resource []string `json:"Resource"`
}

// Policy is the least privilege the appliance needs for the features: the
// exact API calls the provider makes, and no more. The Describe calls of
// Auto Scaling and EC2 support no resource-level permissions, so they are
// granted on "*"; record changes are scoped to the hosted zone when known.
func Policy(f PolicyFeatures) PolicyDocument {
	doc := PolicyDocument{Version: "2012-10-17", Statement: []PolicyStatement{{
		Sid:    "FindTheGroup",
		Effect: "Allow",
		Action: []string{
			"autoscaling:DescribeAutoScalingGroups",
			"autoscaling:DescribeAutoScalingInstances",
			"ec2:DescribeInstances",
		},
		Resource: []string{"*"},
	}}}
	if f.Lifecycle {
		// Lifecycle actions support resource-level permissions on the
		// group, but the group's name is not known here: the
		// CloudFormation template scopes them to its group. The launch
		// gate completes its hook with the same calls (the statement keeps
		// its name, which the template shares).
		doc.Statement = append(doc.Statement, PolicyStatement{
			Sid:    "DrainBeforeTermination",
			Effect: "Allow",
			Action: []string{
				"autoscaling:CompleteLifecycleAction",
				"autoscaling:DescribeLifecycleHooks",
				"autoscaling:RecordLifecycleActionHeartbeat",
			},
			Resource: []string{"*"},
		})
	}
	if f.DNS {
		zone := "*"
		if f.HostedZoneID != "" {
			zone = strings.TrimPrefix(f.HostedZoneID, "/hostedzone/")
		}
		doc.Statement = append(doc.Statement,
			PolicyStatement{
				Sid:      "FindTheHostedZone",
				Effect:   "Allow",
				Action:   []string{"route53:ListHostedZonesByName"},
				Resource: []string{"*"},
			},
			PolicyStatement{
				Sid:      "PublishTheRecords",
				Effect:   "Allow",
				Action:   []string{"route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"},
				Resource: []string{"arn:aws:route53:::hostedzone/" + zone},
			})
	}
	if f.StoreBucket != "" {
		// The snapshot store (s3://, SPEC §4.6) makes exactly these calls:
		// it lists the bucket to find the newest snapshot and to thin old
		// ones, puts and gets snapshots and their checksums, and deletes
		// what retention drops. ListBucket applies to the bucket, the
		// object actions to its objects; nothing else in S3 is reachable.
		doc.Statement = append(doc.Statement, PolicyStatement{
			Sid:      "KeepSnapshots",
			Effect:   "Allow",
			Action:   []string{"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
			Resource: []string{"arn:aws:s3:::" + f.StoreBucket, "arn:aws:s3:::" + f.StoreBucket + "/*"},
		})
	}
	if f.MultiRegion {
		// Ingress changes support resource-level permissions on security
		// groups, but the groups' ids are not known here (one per region):
		// the CloudFormation template scopes them to its own.
		doc.Statement = append(doc.Statement,
			PolicyStatement{
				Sid:      "FindTheClusterSecurityGroups",
				Effect:   "Allow",
				Action:   []string{"ec2:DescribeSecurityGroups"},
				Resource: []string{"*"},
			},
			PolicyStatement{
				Sid:      "AdmitTheMembers",
				Effect:   "Allow",
				Action:   []string{"ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"},
				Resource: []string{"arn:aws:ec2:*:*:security-group/*"},
			})
	}
	return doc
}
