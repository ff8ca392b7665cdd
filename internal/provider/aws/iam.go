package aws

import "strings"

// PolicyFeatures are the enabled features whose AWS calls a policy allows.
type PolicyFeatures struct {
	// DNS allows publishing the cluster's records in Route53.
	DNS bool
	// HostedZoneID scopes the record changes to one zone; empty: any zone.
	HostedZoneID string
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
	return doc
}
