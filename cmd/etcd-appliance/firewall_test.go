package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/etcd-appliance/etcd-appliance/internal/config"
	"github.com/etcd-appliance/etcd-appliance/internal/provider/local"
)

func TestIAMPolicyMultiRegion(t *testing.T) {
	t.Setenv("ETCD_APPLIANCE_REGIONS", "")
	t.Setenv("ACTIVE_REGIONS", "")
	var plain, multi, seed bytes.Buffer
	if code := runIAMPolicy(nil, &plain); code != 0 {
		t.Fatalf("iam-policy = %d", code)
	}
	if code := runIAMPolicy([]string{"--regions", "eu-west-1,eu-central-1"}, &multi); code != 0 {
		t.Fatalf("iam-policy --regions = %d", code)
	}
	t.Setenv("ACTIVE_REGIONS", "eu-west-1,eu-central-1")
	if code := runIAMPolicy(nil, &seed); code != 0 {
		t.Fatalf("iam-policy with ACTIVE_REGIONS = %d", code)
	}
	if strings.Contains(plain.String(), "SecurityGroup") {
		t.Errorf("single-region policy allows security group calls:\n%s", plain.String())
	}
	for _, out := range []string{multi.String(), seed.String()} {
		for _, want := range []string{"ec2:DescribeSecurityGroups", "ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"} {
			if !strings.Contains(out, want) {
				t.Errorf("multi-region policy lacks %s:\n%s", want, out)
			}
		}
	}
}

func TestNoFirewallInSingleRegionMode(t *testing.T) {
	cfg := config.NewConfig()
	fw, spec, err := newFirewall(cfg, local.New("group.json", "i-1", nil))
	if fw != nil || spec != nil || err != nil {
		t.Errorf("newFirewall() = %v, %v, %v: want none without --regions", fw, spec, err)
	}
}
