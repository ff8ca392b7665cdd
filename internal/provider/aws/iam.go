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
	// RecordDomain is the name the cluster's records go under (<name>.<zone>,
	// or the zone when the name is not known): record changes are allowed
	// on it and the names below it only. Lower case, without a trailing
	// dot, as Route53 normalizes the names it checks. Empty: any name.
	RecordDomain string
	// StoreBucket is the S3 bucket of the snapshot store; empty: no bucket.
	StoreBucket string
	// StorePrefix is the key prefix of the snapshot store in StoreBucket
	// (s3://bucket/prefix, without slashes around it); empty: the whole
	// bucket.
	StorePrefix string
	// Partition is the ARN partition of the cluster's regions (Partition);
	// empty: aws.
	Partition string
	// MultiRegion allows keeping the members' ingress rules in the cluster
	// security group of every region (--regions, SPEC §4.4).
	MultiRegion bool
	// CASecret is the name of the Secrets Manager secret that holds the
	// cluster CA of --tls auto (--tls-ca-secret); empty: none.
	CASecret string
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
	// Condition is operator -> condition key -> values.
	Condition map[string]map[string][]string `json:"Condition,omitempty"`
}

// Partition is the ARN partition of a region: aws-cn for the China
// regions, aws-us-gov for GovCloud, aws-iso and aws-iso-b for the isolated
// regions, aws for the others (and for an empty region).
func Partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	case strings.HasPrefix(region, "us-isob-"):
		return "aws-iso-b"
	case strings.HasPrefix(region, "us-iso-"):
		return "aws-iso"
	}
	return "aws"
}

// Policy is the least privilege the appliance needs for the features: the
// exact API calls the provider makes, and no more. The Describe calls of
// Auto Scaling and EC2 support no resource-level permissions, so they are
// granted on "*"; record changes are scoped to the hosted zone and to the
// cluster's names when known, snapshots to the store's bucket and prefix.
func Policy(f PolicyFeatures) PolicyDocument {
	arn := "arn:" + f.Partition + ":"
	if f.Partition == "" {
		arn = "arn:aws:"
	}
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
			// Only the cluster's own names: Route53 checks every name of a
			// change batch against the patterns (ForAllValues). The
			// listing carries no names to check: a statement of its own.
			PolicyStatement{
				Sid:       "PublishTheRecords",
				Effect:    "Allow",
				Action:    []string{"route53:ChangeResourceRecordSets"},
				Resource:  []string{arn + "route53:::hostedzone/" + zone},
				Condition: recordNames(f.RecordDomain),
			},
			PolicyStatement{
				Sid:      "ReadTheRecords",
				Effect:   "Allow",
				Action:   []string{"route53:ListResourceRecordSets"},
				Resource: []string{arn + "route53:::hostedzone/" + zone},
			})
	}
	if f.StoreBucket != "" {
		// The snapshot store (s3://, SPEC §4.6) makes exactly these calls:
		// it lists the bucket to find the newest snapshot and to thin old
		// ones, puts and gets snapshots and their checksums, and deletes
		// what retention drops. ListBucket applies to the bucket, and is
		// held to listings under the prefix (s3:prefix, which only listings
		// carry: a statement of its own); the object actions apply to the
		// objects under the prefix. Nothing else in S3 is reachable.
		objects := arn + "s3:::" + f.StoreBucket + "/*"
		var listing map[string]map[string][]string
		if f.StorePrefix != "" {
			objects = arn + "s3:::" + f.StoreBucket + "/" + f.StorePrefix + "/*"
			listing = map[string]map[string][]string{"StringLike": {"s3:prefix": {f.StorePrefix + "/*"}}}
		}
		doc.Statement = append(doc.Statement,
			PolicyStatement{
				Sid:       "ListSnapshots",
				Effect:    "Allow",
				Action:    []string{"s3:ListBucket"},
				Resource:  []string{arn + "s3:::" + f.StoreBucket},
				Condition: listing,
			},
			PolicyStatement{
				Sid:      "KeepSnapshots",
				Effect:   "Allow",
				Action:   []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
				Resource: []string{objects},
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
				Resource: []string{arn + "ec2:*:*:security-group/*"},
			})
	}
	if f.CASecret != "" {
		// The first appliance creates the CA's secret, the others read it,
		// and a CA rotation writes a new version (SPEC §4.8). Secrets
		// Manager appends six characters to a secret's name in its ARN.
		doc.Statement = append(doc.Statement, PolicyStatement{
			Sid:    "KeepTheClusterCA",
			Effect: "Allow",
			Action: []string{"secretsmanager:CreateSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
				"secretsmanager:UpdateSecretVersionStage"},
			Resource: []string{arn + "secretsmanager:*:*:secret:" + f.CASecret + "-??????"},
		})
	}
	return doc
}

// recordNames is the condition that holds record changes to domain and the
// names below it; nil for an empty domain.
func recordNames(domain string) map[string]map[string][]string {
	if domain == "" {
		return nil
	}
	return map[string]map[string][]string{"ForAllValues:StringLike": {
		"route53:ChangeResourceRecordSetsNormalizedRecordNames": {domain, "*." + domain},
	}}
}
