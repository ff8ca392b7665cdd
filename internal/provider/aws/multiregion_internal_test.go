package aws

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

func TestPeerAddress(t *testing.T) {
	for _, tt := range []struct {
		name                            string
		publicName, publicIP, privateIP string
		want                            string
	}{
		{"public name first", "ec2-203-0-113-7.eu-west-1.compute.amazonaws.com", "203.0.113.7", "10.0.0.7",
			"ec2-203-0-113-7.eu-west-1.compute.amazonaws.com"},
		{"public name lower case", "EC2-203-0-113-7.compute-1.amazonaws.com", "203.0.113.7", "10.0.0.7",
			"ec2-203-0-113-7.compute-1.amazonaws.com"},
		{"public IP without a name (VPC without DNS host names)", "", "203.0.113.7", "10.0.0.7", "203.0.113.7"},
		// moto in a 127.0.0.0/16 VPC: no public address at all.
		{"private IP without a public address", "", "", "127.0.1.4", "127.0.1.4"},
		{"blank name", "  ", "", "10.0.0.7", "10.0.0.7"},
		{"nothing", "", "", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := peerAddress(tt.publicName, tt.publicIP, tt.privateIP); got != tt.want {
				t.Errorf("peerAddress(%q, %q, %q) = %q, want %q", tt.publicName, tt.publicIP, tt.privateIP, got, tt.want)
			}
		})
	}
}

func TestMultiRegionInstance(t *testing.T) {
	machine := func(state ec2types.InstanceStateName, publicName, publicIP, privateIP string) ec2types.Instance {
		m := ec2types.Instance{
			InstanceId: aws.String("i-1"),
			State:      &ec2types.InstanceState{Name: state},
			Placement:  &ec2types.Placement{AvailabilityZone: aws.String("eu-west-1b")},
		}
		if publicName != "" {
			m.PublicDnsName = aws.String(publicName)
		}
		if publicIP != "" {
			m.PublicIpAddress = aws.String(publicIP)
		}
		if privateIP != "" {
			m.PrivateIpAddress = aws.String(privateIP)
		}
		return m
	}
	const name = "ec2-203-0-113-7.eu-west-1.compute.amazonaws.com"
	for _, tt := range []struct {
		name    string
		machine ec2types.Instance
		private bool
		want    cluster.Instance
		wantErr string
	}{
		{"peered VPCs: reached and admitted by the private address", machine(ec2types.InstanceStateNameRunning, name, "203.0.113.7", "10.0.0.7"),
			true, cluster.Instance{ID: "i-1", Address: "10.0.0.7", State: cluster.InstanceRunning, Region: "eu-west-1", Zone: "eu-west-1b",
				BindAddress: "10.0.0.7"}, ""},
		{"running with a public name", machine(ec2types.InstanceStateNameRunning, name, "203.0.113.7", "10.0.0.7"),
			false, cluster.Instance{ID: "i-1", Address: name, State: cluster.InstanceRunning, Region: "eu-west-1", Zone: "eu-west-1b",
				BindAddress: "10.0.0.7", PublicIP: "203.0.113.7"}, ""},
		{"running without a public address", machine(ec2types.InstanceStateNameRunning, "", "", "127.0.1.4"),
			false, cluster.Instance{ID: "i-1", Address: "127.0.1.4", State: cluster.InstanceRunning, Region: "eu-west-1", Zone: "eu-west-1b",
				BindAddress: "127.0.1.4"}, ""},
		{"pending", machine(ec2types.InstanceStateNamePending, "", "", "10.0.0.7"),
			false, cluster.Instance{ID: "i-1", Address: "10.0.0.7", State: cluster.InstancePending, Region: "eu-west-1", Zone: "eu-west-1b",
				BindAddress: "10.0.0.7"}, ""},
		{"stopped", machine(ec2types.InstanceStateNameStopped, "", "", "10.0.0.7"),
			false, cluster.Instance{ID: "i-1", Address: "10.0.0.7", State: cluster.InstanceStopped, Region: "eu-west-1", Zone: "eu-west-1b",
				BindAddress: "10.0.0.7"}, ""},
		{"terminated without addresses", machine(ec2types.InstanceStateNameTerminated, "", "", ""),
			false, cluster.Instance{ID: "i-1", State: cluster.InstanceTerminated, Region: "eu-west-1", Zone: "eu-west-1b"}, ""},
		{"shutting down", machine(ec2types.InstanceStateNameShuttingDown, name, "203.0.113.7", "10.0.0.7"),
			false, cluster.Instance{ID: "i-1", Address: name, State: cluster.InstanceTerminated, Region: "eu-west-1", Zone: "eu-west-1b",
				BindAddress: "10.0.0.7", PublicIP: "203.0.113.7"}, ""},
		{"running without a private IP is an error", machine(ec2types.InstanceStateNameRunning, name, "203.0.113.7", ""),
			false, cluster.Instance{}, "has no address yet"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := multiRegionInstance("eu-west-1", tt.machine, tt.private)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("multiRegionInstance() = %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("multiRegionInstance() = %+v, %v\nwant %+v", got, err, tt.want)
			}
		})
	}
}

func TestNewMultiRegionNeedsTheOwnRegion(t *testing.T) {
	_, err := newMultiRegion("us-east-1", []string{"eu-west-1", "eu-central-1"}, "", false, func(string) ec2API { return nil })
	if err == nil || !strings.Contains(err.Error(), "--regions eu-west-1,eu-central-1 does not include this instance's region us-east-1") {
		t.Errorf("newMultiRegion() = %v", err)
	}
	m, err := newMultiRegion("eu-west-1", []string{"eu-west-1", "eu-central-1"}, "", false, func(string) ec2API { return nil })
	if err != nil || m.tagKey != DefaultClusterTagKey || len(m.ec2) != 2 {
		t.Errorf("newMultiRegion() = %+v, %v", m, err)
	}
}
