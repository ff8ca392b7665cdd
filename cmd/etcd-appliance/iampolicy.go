package main

import (
	"encoding/json"
	"io"
	"os"

	awsprovider "github.com/etcd-appliance/etcd-appliance/internal/provider/aws"
)

// runIAMPolicy is `etcd-appliance iam-policy`: the least-privilege IAM
// policy for the features the flags enable, as JSON on stdout.
func runIAMPolicy(args []string, out io.Writer) int {
	fs := newFlagSet("iam-policy")
	zone := fs.String("hosted-zone", firstEnv("ETCD_APPLIANCE_HOSTED_ZONE", "HOSTED_ZONE"), "Route53 zone the appliance publishes in (enables the DNS statements)")
	zoneID := fs.String("hosted-zone-id", "", "the zone's id, to scope record changes to it (default: any zone)")
	bucket := fs.String("store-bucket", "", "S3 bucket of the snapshot store (enables the snapshot statement, scoped to the bucket)")
	regions := fs.String("regions", firstEnv("ETCD_APPLIANCE_REGIONS", "ACTIVE_REGIONS"), "multi-region mode's regions, comma-separated (enables the security group statements)")
	caSecret := fs.String("tls-ca-secret", os.Getenv("ETCD_APPLIANCE_TLS_CA_SECRET"), "the Secrets Manager secret of --tls auto's cluster CA (enables the statement that creates and reads it, scoped to it)")
	hooks := fs.Bool("lifecycle-hooks", true, "the group holds terminations with a lifecycle hook that the instance completes once drained (SPEC §4.5), and launches with one it completes once a healthy voter")
	setEnvOf(fs, "hosted-zone", "ETCD_APPLIANCE_HOSTED_ZONE", "HOSTED_ZONE")
	setEnvOf(fs, "regions", "ETCD_APPLIANCE_REGIONS", "ACTIVE_REGIONS")
	setEnvOf(fs, "tls-ca-secret", "ETCD_APPLIANCE_TLS_CA_SECRET")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	features, err := policyFeatures(*zone, *zoneID, *bucket, *regions, *hooks, os.Getenv)
	if err != nil {
		return refuse(os.Stderr, "iam-policy", err)
	}
	features.CASecret = *caSecret
	doc := awsprovider.Policy(features)
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return 1
	}
	return 0
}

func firstEnv(keys ...string) string {
	for _, k := range keys {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return ""
}
