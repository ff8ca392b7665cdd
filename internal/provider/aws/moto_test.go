package aws_test

import (
	"context"
	"net"
	"net/http"
	"sort"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider/aws"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// The moto-backed tests need moto_server: see testcluster.MotoForTest.

const motoRegion = "us-east-1"

func startMoto(t *testing.T) *testcluster.Moto {
	t.Helper()
	m := testcluster.MotoForTest(t, "the AWS provider tests")
	return m
}

// motoAdmin is the test's own view of moto: the clients that build the
// "cloud" the provider then reads.
type motoAdmin struct {
	ec2 *ec2.Client
	asg *autoscaling.Client
}

func newMotoAdmin(endpoint string) motoAdmin {
	cfg := sdkaws.Config{
		Region:       motoRegion,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: sdkaws.String(endpoint),
	}
	return motoAdmin{ec2: ec2.NewFromConfig(cfg), asg: autoscaling.NewFromConfig(cfg)}
}

// createGroup makes a VPC 127.0.0.0/16 with a subnet 127.0.1.0/24, so that
// moto gives instances loopback addresses, and an Auto Scaling group of size
// instances in it.
func (a motoAdmin) createGroup(t *testing.T, ctx context.Context, name string, size int32) {
	t.Helper()
	vpc, err := a.ec2.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: sdkaws.String("127.0.0.0/16")})
	if err != nil {
		t.Fatalf("creating the VPC: %v", err)
	}
	subnet, err := a.ec2.CreateSubnet(ctx, &ec2.CreateSubnetInput{
		VpcId: vpc.Vpc.VpcId, CidrBlock: sdkaws.String("127.0.1.0/24"), AvailabilityZone: sdkaws.String(motoRegion + "a"),
	})
	if err != nil {
		t.Fatalf("creating the subnet: %v", err)
	}
	images, err := a.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("moto lists no AMI to launch: %v", err)
	}
	lt, err := a.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: sdkaws.String(name),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
			ImageId:         images.Images[0].ImageId,
			InstanceType:    ec2types.InstanceTypeT3Micro,
			MetadataOptions: &ec2types.LaunchTemplateInstanceMetadataOptionsRequest{HttpTokens: ec2types.LaunchTemplateHttpTokensStateRequired},
		},
	})
	if err != nil {
		t.Fatalf("creating the launch template: %v", err)
	}
	_, err = a.asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: sdkaws.String(name),
		LaunchTemplate:       &astypes.LaunchTemplateSpecification{LaunchTemplateId: lt.LaunchTemplate.LaunchTemplateId, Version: sdkaws.String("$Latest")},
		MinSize:              sdkaws.Int32(size),
		MaxSize:              sdkaws.Int32(size),
		DesiredCapacity:      sdkaws.Int32(size),
		VPCZoneIdentifier:    subnet.Subnet.SubnetId,
	})
	if err != nil {
		t.Fatalf("creating the auto scaling group: %v", err)
	}
}

// imdsFor serves the metadata of a moto instance, as EC2 would on it.
func (a motoAdmin) imdsFor(t *testing.T, ctx context.Context, id string) *testcluster.IMDS {
	t.Helper()
	out, err := a.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil || len(out.Reservations) == 0 || len(out.Reservations[0].Instances) == 0 {
		t.Fatalf("describing %s: %v", id, err)
	}
	inst := out.Reservations[0].Instances[0]
	s := testcluster.StartIMDS(testcluster.InstanceMetadata{
		InstanceID: id, Region: motoRegion, Zone: sdkaws.ToString(inst.Placement.AvailabilityZone),
		PrivateIP: sdkaws.ToString(inst.PrivateIpAddress),
	})
	t.Cleanup(s.Close)
	return s
}

func (a motoAdmin) groupInstanceIDs(t *testing.T, ctx context.Context, name string) []string {
	t.Helper()
	out, err := a.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		t.Fatalf("describing group %s: %v", name, err)
	}
	var ids []string
	for _, i := range out.AutoScalingGroups[0].Instances {
		ids = append(ids, sdkaws.ToString(i.InstanceId))
	}
	sort.Strings(ids)
	return ids
}

func running(insts []cluster.Instance) map[string]cluster.Instance {
	out := map[string]cluster.Instance{}
	for _, i := range insts {
		if i.State == cluster.InstanceRunning {
			out[i.ID] = i
		}
	}
	return out
}

func inLoopbackSubnet(addr string) bool {
	_, subnet, _ := net.ParseCIDR("127.0.1.0/24")
	ip := net.ParseIP(addr)
	return ip != nil && subnet.Contains(ip)
}

// TestMotoGroup: the provider finds its own group and lists it, and follows
// a termination and its replacement.
// moto gap: moto has no per-instance metadata service; the test serves
// IMDSv2 for the instance (testcluster.IMDS).
func TestMotoGroup(t *testing.T) {
	moto := startMoto(t)
	testcluster.IsolateAWSEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := newMotoAdmin(moto.URL)
	const group = "etcd-appliance-test"
	admin.createGroup(t, ctx, group, 3)
	ids := admin.groupInstanceIDs(t, ctx, group)
	if len(ids) != 3 {
		t.Fatalf("moto launched %v, want 3 instances", ids)
	}
	selfID := ids[0]
	imds := admin.imdsFor(t, ctx, selfID)

	reg := prometheus.NewRegistry()
	p, err := aws.New(ctx, aws.Options{Endpoint: moto.URL, IMDSEndpoint: imds.URL, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	self, err := p.Self(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if self.ID != selfID || !inLoopbackSubnet(self.Address) || self.Region != motoRegion || self.State != cluster.InstanceRunning {
		t.Fatalf("Self() = %+v", self)
	}

	insts, err := p.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	up := running(insts)
	if len(insts) != 3 || len(up) != 3 {
		t.Fatalf("Instances() = %+v, want 3 running", insts)
	}
	addrs := map[string]bool{}
	for _, i := range insts {
		if !inLoopbackSubnet(i.Address) || addrs[i.Address] || i.Region != motoRegion || i.Zone != motoRegion+"a" {
			t.Errorf("instance %+v: want its own address in 127.0.1.0/24, region and zone", i)
		}
		addrs[i.Address] = true
	}
	if up[selfID].Address != self.Address {
		t.Errorf("the listing has %s at %s, IMDS says %s", selfID, up[selfID].Address, self.Address)
	}
	if name := p.Name(); name != group {
		t.Errorf("Name() = %q, want %q", name, group)
	}

	// Terminate another instance; the group replaces it. moto drops the
	// terminated instance from the group's listing at once (real Auto
	// Scaling lists it Terminating* for a while, which maps to terminated),
	// so both outcomes pass.
	gone := ids[1]
	if _, err := admin.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: sdkaws.String(gone), ShouldDecrementDesiredCapacity: sdkaws.Bool(false),
	}); err != nil {
		t.Fatal(err)
	}
	var last []cluster.Instance
	for {
		insts, err := p.Instances(ctx)
		if err == nil {
			last = insts
			up := running(insts)
			_, stillUp := up[gone]
			if len(up) == 3 && !stillUp {
				var goneState cluster.InstanceState = "absent"
				for _, i := range insts {
					if i.ID == gone {
						goneState = i.State
					}
				}
				if goneState != "absent" && goneState != cluster.InstanceTerminated {
					t.Errorf("terminated instance %s listed as %s", gone, goneState)
				}
				t.Logf("after terminating %s (now %s): %+v", gone, goneState, insts)
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no replacement for %s: last listing %+v, last error %v", gone, last, err)
		case <-time.After(100 * time.Millisecond):
		}
	}

	// The group's name was looked up once; every listing asked the group and EC2.
	if n := testcluster.AWSRequests(t, reg, "DescribeAutoScalingInstances", "ok"); n != 1 {
		t.Errorf("DescribeAutoScalingInstances ok = %v, want 1 (name cached)", n)
	}
	if n := testcluster.AWSRequests(t, reg, "DescribeAutoScalingGroups", "ok"); n < 2 {
		t.Errorf("DescribeAutoScalingGroups ok = %v, want >= 2", n)
	}
	if n := testcluster.AWSRequests(t, reg, "DescribeInstances", "ok"); n < 2 {
		t.Errorf("DescribeInstances ok = %v, want >= 2", n)
	}
}

// TestMotoRetriesThrottlingAnd5xx: AWS throttling and failing (the first
// attempts of each service, injected by a proxy in front of moto) costs
// retries, not the listing.
func TestMotoRetriesThrottlingAnd5xx(t *testing.T) {
	moto := startMoto(t)
	testcluster.IsolateAWSEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := newMotoAdmin(moto.URL)
	const group = "etcd-appliance-throttled"
	admin.createGroup(t, ctx, group, 3)
	ids := admin.groupInstanceIDs(t, ctx, group)
	imds := admin.imdsFor(t, ctx, ids[0])

	proxy := startFaultProxy(t, moto.URL,
		testcluster.Fault{Service: "autoscaling", Status: http.StatusBadRequest, Code: "Throttling", Times: 1},
		testcluster.Fault{Service: "autoscaling", Status: http.StatusInternalServerError, Code: "InternalFailure", Times: 1},
		testcluster.Fault{Service: "ec2", Status: http.StatusServiceUnavailable, Code: "RequestLimitExceeded", Times: 1},
		testcluster.Fault{Service: "ec2", Status: http.StatusInternalServerError, Code: "InternalError", Times: 1},
	)

	reg := prometheus.NewRegistry()
	p, err := aws.New(ctx, aws.Options{Endpoint: proxy.URL, IMDSEndpoint: imds.URL, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	insts, err := p.Instances(ctx)
	if err != nil {
		t.Fatalf("Instances through throttling: %v", err)
	}
	t.Logf("listed through %d injected faults in %s", injected(proxy), time.Since(start))
	if len(running(insts)) != 3 {
		t.Fatalf("Instances() = %+v, want 3 running", insts)
	}
	if n := injected(proxy); n != 4 {
		t.Errorf("%d faults injected, want 4", n)
	}
	for _, c := range []struct {
		api, code string
		want      float64
	}{
		{"DescribeAutoScalingInstances", "Throttling", 1},
		{"DescribeAutoScalingInstances", "InternalFailure", 1},
		{"DescribeAutoScalingInstances", "ok", 1},
		{"DescribeAutoScalingGroups", "ok", 1},
		{"DescribeInstances", "RequestLimitExceeded", 1},
		{"DescribeInstances", "InternalError", 1},
		{"DescribeInstances", "ok", 1},
	} {
		if n := testcluster.AWSRequests(t, reg, c.api, c.code); n != c.want {
			t.Errorf("etcd_appliance_aws_requests_total{api=%q,code=%q} = %v, want %v", c.api, c.code, n, c.want)
		}
	}
}
