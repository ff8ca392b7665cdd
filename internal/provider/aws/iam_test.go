package aws

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// allowed lists every action a policy allows.
func allowed(doc PolicyDocument) []string {
	var out []string
	for _, st := range doc.Statement {
		if st.Effect != "Allow" || len(st.Resource) == 0 || st.Sid == "" {
			continue
		}
		out = append(out, st.Action...)
	}
	slices.Sort(out)
	return out
}

// calls lists the API calls of the provider's client interfaces, as IAM
// actions: the policy must grant exactly these.
func calls(service string, api any) []string {
	t := reflect.TypeOf(api).Elem()
	var out []string
	for i := range t.NumMethod() {
		out = append(out, service+":"+t.Method(i).Name)
	}
	return out
}

func TestPolicyGrantsExactlyWhatTheProviderCalls(t *testing.T) {
	group := append(calls("autoscaling", (*autoscalingAPI)(nil)), calls("ec2", (*ec2API)(nil))...)
	dns := calls("route53", (*route53API)(nil))
	lifecycle := calls("autoscaling", (*lifecycleAPI)(nil))
	for _, tt := range []struct {
		name string
		f    PolicyFeatures
		want []string
	}{
		{"group only", PolicyFeatures{}, group},
		{"with DNS", PolicyFeatures{DNS: true}, append(append([]string(nil), group...), dns...)},
		{"with lifecycle hooks", PolicyFeatures{Lifecycle: true}, append(append([]string(nil), group...), lifecycle...)},
		{"multi-region", PolicyFeatures{MultiRegion: true}, append(append([]string(nil), group...), calls("ec2", (*ec2FirewallAPI)(nil))...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if got := allowed(Policy(tt.f)); !reflect.DeepEqual(got, want) {
				t.Errorf("policy allows %v\nthe provider calls %v", got, want)
			}
		})
	}
}

func TestPolicyScopesRecordChangesToTheZone(t *testing.T) {
	doc := Policy(PolicyFeatures{DNS: true, HostedZoneID: "/hostedzone/Z123"})
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var back PolicyDocument
	if err := json.Unmarshal(b, &back); err != nil || back.Version != "2012-10-17" {
		t.Fatalf("policy does not round-trip as JSON: %v %s", err, b)
	}
	for _, st := range back.Statement {
		if slices.Contains(st.Action, "route53:ChangeResourceRecordSets") &&
			!reflect.DeepEqual(st.Resource, []string{"arn:aws:route53:::hostedzone/Z123"}) {
			t.Errorf("record changes allowed on %v, want only the zone Z123", st.Resource)
		}
	}
}

func TestPolicyKeepsSnapshotsInTheBucketOnly(t *testing.T) {
	if got := allowed(Policy(PolicyFeatures{})); slices.ContainsFunc(got, func(a string) bool { return strings.HasPrefix(a, "s3:") }) {
		t.Errorf("policy without a store bucket allows %v", got)
	}
	for _, tt := range []struct {
		name string
		f    PolicyFeatures
		want []string
	}{{
		name: "the whole bucket",
		f:    PolicyFeatures{StoreBucket: "snaps"},
		want: []string{
			"ListSnapshots [s3:ListBucket] on [arn:aws:s3:::snaps] if map[]",
			"KeepSnapshots [s3:DeleteObject s3:GetObject s3:PutObject] on [arn:aws:s3:::snaps/*] if map[]",
		},
	}, {
		name: "a prefix",
		f:    PolicyFeatures{StoreBucket: "snaps", StorePrefix: "orders/etcd"},
		want: []string{
			"ListSnapshots [s3:ListBucket] on [arn:aws:s3:::snaps] if map[StringLike:map[s3:prefix:[orders/etcd/*]]]",
			"KeepSnapshots [s3:DeleteObject s3:GetObject s3:PutObject] on [arn:aws:s3:::snaps/orders/etcd/*] if map[]",
		},
	}, {
		name: "China",
		f:    PolicyFeatures{StoreBucket: "snaps", StorePrefix: "orders", Partition: "aws-cn"},
		want: []string{
			"ListSnapshots [s3:ListBucket] on [arn:aws-cn:s3:::snaps] if map[StringLike:map[s3:prefix:[orders/*]]]",
			"KeepSnapshots [s3:DeleteObject s3:GetObject s3:PutObject] on [arn:aws-cn:s3:::snaps/orders/*] if map[]",
		},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, st := range Policy(tt.f).Statement {
				if strings.HasPrefix(st.Action[0], "s3:") {
					got = append(got, fmt.Sprintf("%s %v on %v if %v", st.Sid, slices.Sorted(slices.Values(st.Action)), st.Resource, st.Condition))
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("the snapshot statements are\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestPolicyHoldsRecordChangesToTheClustersNames(t *testing.T) {
	doc := Policy(PolicyFeatures{DNS: true, HostedZoneID: "Z1", RecordDomain: "orders.example.org", Partition: "aws-us-gov"})
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Sid":"PublishTheRecords","Effect":"Allow","Action":["route53:ChangeResourceRecordSets"],` +
		`"Resource":["arn:aws-us-gov:route53:::hostedzone/Z1"],"Condition":{"ForAllValues:StringLike":` +
		`{"route53:ChangeResourceRecordSetsNormalizedRecordNames":["orders.example.org","*.orders.example.org"]}}}`
	if !strings.Contains(string(b), want) {
		t.Errorf("policy\n%s\nlacks\n%s", b, want)
	}
	for _, st := range doc.Statement {
		if slices.Contains(st.Action, "route53:ChangeResourceRecordSets") && st.Sid != "PublishTheRecords" {
			t.Errorf("statement %s also allows record changes: %+v", st.Sid, st)
		}
	}
	// Without a domain: the zone only, and no condition.
	for _, st := range Policy(PolicyFeatures{DNS: true}).Statement {
		if st.Condition != nil {
			t.Errorf("statement %s has a condition without a record domain: %v", st.Sid, st.Condition)
		}
	}
}

func TestPartitionOfRegion(t *testing.T) {
	for region, want := range map[string]string{
		"": "aws", "us-east-1": "aws", "eu-central-1": "aws", "cn-north-1": "aws-cn", "cn-northwest-1": "aws-cn",
		"us-gov-west-1": "aws-us-gov", "us-iso-east-1": "aws-iso", "us-isob-east-1": "aws-iso-b",
	} {
		if got := Partition(region); got != want {
			t.Errorf("Partition(%q) = %q, want %q", region, got, want)
		}
	}
}
