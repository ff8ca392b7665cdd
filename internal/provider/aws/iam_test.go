package aws

import (
	"encoding/json"
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
	doc := Policy(PolicyFeatures{StoreBucket: "snaps"})
	var found bool
	for _, st := range doc.Statement {
		if st.Sid != "KeepSnapshots" {
			continue
		}
		found = true
		want := []string{"s3:DeleteObject", "s3:GetObject", "s3:ListBucket", "s3:PutObject"}
		if got := slices.Sorted(slices.Values(st.Action)); !reflect.DeepEqual(got, want) {
			t.Errorf("KeepSnapshots allows %v, want %v", got, want)
		}
		if want := []string{"arn:aws:s3:::snaps", "arn:aws:s3:::snaps/*"}; !reflect.DeepEqual(st.Resource, want) {
			t.Errorf("KeepSnapshots applies to %v, want only the bucket and its objects %v", st.Resource, want)
		}
	}
	if !found {
		t.Errorf("policy with a store bucket has no KeepSnapshots statement: %+v", doc)
	}
}
