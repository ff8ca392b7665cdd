package main

import (
	"fmt"
	"io"
	"strings"

	awsprovider "github.com/etcd-appliance/etcd-appliance/internal/provider/aws"
	"github.com/etcd-appliance/etcd-appliance/internal/snapshot/spec"
)

// policyFeatures are the features the flags of iam-policy enable. The ARN
// partition is the regions': --regions, else AWS_REGION or
// AWS_DEFAULT_REGION (aws without any). Record changes are held to the
// zone's names (the cluster's name is not known here; the CloudFormation
// template narrows them to it).
func policyFeatures(zone, zoneID, storeBucket, regions string, hooks bool, getenv func(string) string) (awsprovider.PolicyFeatures, error) {
	f := awsprovider.PolicyFeatures{
		DNS:          zone != "" || zoneID != "",
		HostedZoneID: zoneID,
		RecordDomain: strings.ToLower(strings.TrimSuffix(zone, ".")),
		Lifecycle:    hooks,
		MultiRegion:  strings.Trim(regions, ", ") != "",
	}
	if storeBucket != "" {
		var err error
		if f.StoreBucket, f.StorePrefix, err = bucketAndPrefix(storeBucket); err != nil {
			return f, err
		}
	}
	var names []string
	for _, r := range strings.Split(regions, ",") {
		if r = strings.TrimSpace(r); r != "" {
			names = append(names, r)
		}
	}
	if len(names) == 0 {
		if r := firstOf(getenv, "AWS_REGION", "AWS_DEFAULT_REGION"); r != "" {
			names = append(names, r)
		}
	}
	for i, r := range names {
		p := awsprovider.Partition(r)
		if i > 0 && p != f.Partition {
			return f, fmt.Errorf("--regions %q: %s is in the partition %s, %s in %s: one cluster, and one policy, cannot span both",
				regions, names[0], f.Partition, r, p)
		}
		f.Partition = p
	}
	return f, nil
}

// bucketAndPrefix reads --store-bucket: a bucket name, or the snapshot
// store's URL s3://bucket/prefix as --store takes it (bucket/prefix alike).
func bucketAndPrefix(v string) (bucket, prefix string, err error) {
	raw := v
	if !strings.Contains(v, "://") {
		raw = "s3://" + v
	}
	loc, err := spec.ParseStoreURL(raw)
	if err != nil || loc.Scheme != spec.SchemeS3 {
		return "", "", fmt.Errorf("--store-bucket %q: want a bucket name or s3://bucket/prefix (the S3 --store)", v)
	}
	return loc.Bucket, loc.Prefix, nil
}

func firstOf(getenv func(string) string, keys ...string) string {
	for _, k := range keys {
		if v := getenv(k); v != "" {
			return v
		}
	}
	return ""
}

// refuse prints err as the one line of a refused command on w, and returns
// the exit code of a usage error.
func refuse(w io.Writer, command string, err error) int {
	fmt.Fprintf(w, "etcd-appliance %s: %v\n", command, err)
	return 2
}
