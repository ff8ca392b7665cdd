package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	awsprovider "github.com/etcd-appliance/etcd-appliance/internal/provider/aws"
)

// TestIAMPolicyReadsTheStoreAndTheRegion: --store-bucket takes a bucket or
// the store's s3:// URL, the ARNs take the partition of the regions, and
// anything else is refused with one line and exit 2, printing no policy.
func TestIAMPolicyReadsTheStoreAndTheRegion(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string
		env     map[string]string
		bucket  string // the resources of KeepSnapshots, and ListSnapshots'
		list    string
		partOf  string // a resource that must be in the policy
		refused string // a part of the error; empty: accepted
	}{
		{name: "bucket", args: []string{"--store-bucket", "foo"}, bucket: "arn:aws:s3:::foo/*", list: "arn:aws:s3:::foo"},
		{name: "URL", args: []string{"--store-bucket", "s3://foo/bar"}, bucket: "arn:aws:s3:::foo/bar/*", list: "arn:aws:s3:::foo"},
		{name: "URL with a slash", args: []string{"--store-bucket", "s3://foo/bar/baz/"}, bucket: "arn:aws:s3:::foo/bar/baz/*", list: "arn:aws:s3:::foo"},
		{name: "URL without a prefix", args: []string{"--store-bucket", "s3://foo"}, bucket: "arn:aws:s3:::foo/*", list: "arn:aws:s3:::foo"},
		{name: "bucket/prefix", args: []string{"--store-bucket", "foo/bar"}, bucket: "arn:aws:s3:::foo/bar/*", list: "arn:aws:s3:::foo"},
		{name: "China by AWS_REGION", args: []string{"--store-bucket", "s3://foo/bar"}, env: map[string]string{"AWS_REGION": "cn-north-1"},
			bucket: "arn:aws-cn:s3:::foo/bar/*", list: "arn:aws-cn:s3:::foo"},
		{name: "GovCloud by AWS_DEFAULT_REGION", args: []string{"--hosted-zone-id", "Z1"}, env: map[string]string{"AWS_DEFAULT_REGION": "us-gov-west-1"},
			partOf: "arn:aws-us-gov:route53:::hostedzone/Z1"},
		{name: "China by --regions", args: []string{"--regions", "cn-north-1,cn-northwest-1"}, env: map[string]string{"AWS_REGION": "us-east-1"},
			partOf: "arn:aws-cn:ec2:*:*:security-group/*"},
		{name: "https URL", args: []string{"--store-bucket", "https://foo/bar"}, refused: `--store-bucket "https://foo/bar"`},
		{name: "file store", args: []string{"--store-bucket", "file:///var/snaps"}, refused: `--store-bucket "file:///var/snaps"`},
		{name: "no bucket", args: []string{"--store-bucket", "s3://"}, refused: `--store-bucket "s3://"`},
		{name: "no bucket name", args: []string{"--store-bucket", "Foo_Bar"}, refused: `--store-bucket "Foo_Bar"`},
		{name: "partitions mixed", args: []string{"--regions", "eu-west-1,cn-north-1"}, refused: "cannot span both"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "ETCD_APPLIANCE_REGIONS", "ACTIVE_REGIONS",
				"ETCD_APPLIANCE_HOSTED_ZONE", "HOSTED_ZONE"} {
				t.Setenv(k, tt.env[k])
			}
			var out bytes.Buffer
			code, stderr := withStderr(t, func() int { return runIAMPolicy(tt.args, &out) })
			if tt.refused != "" {
				if code != 2 || out.Len() != 0 || !strings.Contains(stderr, tt.refused) || strings.Count(stderr, "\n") != 1 {
					t.Errorf("iam-policy %v = %d, printing %q and on stderr %q; want 2, no policy, and one line naming %s",
						tt.args, code, out.String(), stderr, tt.refused)
				}
				return
			}
			if code != 0 {
				t.Fatalf("iam-policy %v = %d", tt.args, code)
			}
			var doc awsprovider.PolicyDocument
			if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
				t.Fatalf("iam-policy %v printed no policy: %v\n%s", tt.args, err, out.String())
			}
			resources := map[string][]string{}
			for _, st := range doc.Statement {
				resources[st.Sid] = st.Resource
			}
			if tt.bucket != "" && (len(resources["KeepSnapshots"]) != 1 || resources["KeepSnapshots"][0] != tt.bucket ||
				len(resources["ListSnapshots"]) != 1 || resources["ListSnapshots"][0] != tt.list) {
				t.Errorf("iam-policy %v keeps snapshots on %v and lists %v, want %s and %s",
					tt.args, resources["KeepSnapshots"], resources["ListSnapshots"], tt.bucket, tt.list)
			}
			if tt.partOf != "" && !strings.Contains(out.String(), `"`+tt.partOf+`"`) {
				t.Errorf("iam-policy %v lacks %s:\n%s", tt.args, tt.partOf, out.String())
			}
			if strings.Contains(out.String(), "s3://") {
				t.Errorf("iam-policy %v writes a URL into an ARN:\n%s", tt.args, out.String())
			}
		})
	}
}

// withStderr runs f with os.Stderr going to a pipe, and returns what f
// wrote there.
func withStderr(t *testing.T, f func() int) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	code := f()
	os.Stderr = saved
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return code, string(b)
}

// --tls-ca-secret grants creating, reading and updating that secret only.
func TestIAMPolicyScopesTheCASecret(t *testing.T) {
	doc := awsprovider.Policy(awsprovider.PolicyFeatures{CASecret: "orders/etcd-ca", Partition: "aws-cn"})
	i := slices.IndexFunc(doc.Statement, func(st awsprovider.PolicyStatement) bool { return st.Sid == "KeepTheClusterCA" })
	if i < 0 {
		t.Fatalf("no KeepTheClusterCA statement: %+v", doc.Statement)
	}
	st := doc.Statement[i]
	if want := []string{"arn:aws-cn:secretsmanager:*:*:secret:orders/etcd-ca-??????"}; !slices.Equal(st.Resource, want) {
		t.Errorf("resource %v, want %v", st.Resource, want)
	}
	if want := []string{"secretsmanager:CreateSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
		"secretsmanager:UpdateSecretVersionStage"}; !slices.Equal(st.Action, want) {
		t.Errorf("actions %v, want %v", st.Action, want)
	}
	if slices.ContainsFunc(awsprovider.Policy(awsprovider.PolicyFeatures{}).Statement, func(st awsprovider.PolicyStatement) bool {
		return st.Sid == "KeepTheClusterCA"
	}) {
		t.Error("a policy without --tls-ca-secret grants the CA secret")
	}
}
