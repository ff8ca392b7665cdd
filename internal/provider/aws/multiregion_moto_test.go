package aws_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
	"github.com/etcd-appliance/etcd-appliance/internal/provider/aws"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// The multi-region tests run two regions in one moto: moto keeps the
// resources of each region apart by the request's signing region.
//
// moto gaps: instances in a 127.0.0.0/16 VPC get no public address (no
// public IP, empty public DNS name), so the peer-facing address falls back
// to the private IP; and moto does not propagate aws:cloudformation:* tags,
// so the tests use a cluster tag key of their own.

const (
	otherRegion = "eu-west-1"
	clusterTag  = "etcd-appliance:test-cluster"
)

// regionAdmin builds a region of the test's "cloud".
type regionAdmin struct {
	region string
	ec2    *ec2.Client
	subnet string
	vpc    string
}

func newRegionAdmin(t *testing.T, ctx context.Context, endpoint, region, cidr string) regionAdmin {
	t.Helper()
	c := ec2.NewFromConfig(sdkaws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: sdkaws.String(endpoint),
	})
	vpc, err := c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: sdkaws.String("127.0.0.0/16")})
	if err != nil {
		t.Fatalf("creating the VPC in %s: %v", region, err)
	}
	sn, err := c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: sdkaws.String(cidr)})
	if err != nil {
		t.Fatalf("creating the subnet in %s: %v", region, err)
	}
	return regionAdmin{region: region, ec2: c, subnet: sdkaws.ToString(sn.Subnet.SubnetId), vpc: sdkaws.ToString(vpc.Vpc.VpcId)}
}

func tags(kv ...string) []ec2types.Tag {
	var out []ec2types.Tag
	for k := 0; k+1 < len(kv); k += 2 {
		out = append(out, ec2types.Tag{Key: sdkaws.String(kv[k]), Value: sdkaws.String(kv[k+1])})
	}
	return out
}

// launch runs n instances carrying tags and returns their ids.
func (a regionAdmin) launch(t *testing.T, ctx context.Context, n int32, tagKV ...string) []string {
	t.Helper()
	images, err := a.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("moto lists no AMI in %s: %v", a.region, err)
	}
	in := &ec2.RunInstancesInput{
		ImageId: images.Images[0].ImageId, InstanceType: ec2types.InstanceTypeT3Micro,
		MinCount: sdkaws.Int32(n), MaxCount: sdkaws.Int32(n), SubnetId: sdkaws.String(a.subnet),
	}
	if len(tagKV) > 0 {
		in.TagSpecifications = []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: tags(tagKV...)}}
	}
	out, err := a.ec2.RunInstances(ctx, in)
	if err != nil {
		t.Fatalf("launching instances in %s: %v", a.region, err)
	}
	var ids []string
	for _, i := range out.Instances {
		ids = append(ids, sdkaws.ToString(i.InstanceId))
	}
	return ids
}

// securityGroup creates a security group carrying tags and returns its id.
func (a regionAdmin) securityGroup(t *testing.T, ctx context.Context, name string, tagKV ...string) string {
	t.Helper()
	in := &ec2.CreateSecurityGroupInput{GroupName: sdkaws.String(name), Description: sdkaws.String(name), VpcId: sdkaws.String(a.vpc)}
	if len(tagKV) > 0 {
		in.TagSpecifications = []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup, Tags: tags(tagKV...)}}
	}
	out, err := a.ec2.CreateSecurityGroup(ctx, in)
	if err != nil {
		t.Fatalf("creating security group %s in %s: %v", name, a.region, err)
	}
	return sdkaws.ToString(out.GroupId)
}

func (a regionAdmin) imdsFor(t *testing.T, ctx context.Context, id string) *testcluster.IMDS {
	t.Helper()
	out, err := a.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil || len(out.Reservations) == 0 || len(out.Reservations[0].Instances) == 0 {
		t.Fatalf("describing %s: %v", id, err)
	}
	inst := out.Reservations[0].Instances[0]
	s := testcluster.StartIMDS(testcluster.InstanceMetadata{
		InstanceID: id, Region: a.region, Zone: sdkaws.ToString(inst.Placement.AvailabilityZone),
		PrivateIP: sdkaws.ToString(inst.PrivateIpAddress),
	})
	t.Cleanup(s.Close)
	return s
}

// regionFaults answers every request signed for one region with an
// authorization failure (not retried), and forwards the others to moto.
type regionFaults struct {
	backend *httputil.ReverseProxy
	region  string
}

func (p regionFaults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, cred, _ := strings.Cut(r.Header.Get("Authorization"), "Credential=")
	if parts := strings.Split(cred, "/"); len(parts) > 2 && parts[2] == p.region {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>injected by the test</Message></Error></Errors><RequestID>fault</RequestID></Response>`)
		return
	}
	p.backend.ServeHTTP(w, r)
}

// TestMotoMultiRegionGroup: the group is every instance carrying the cluster
// tag, with this instance's value, in both regions; untagged instances and
// those of another cluster are not in it; a failure in one region makes the
// whole group unknown.
// moto gap: no per-instance metadata service; the test serves IMDSv2.
func TestMotoMultiRegionGroup(t *testing.T) {
	moto := startMoto(t)
	testcluster.IsolateAWSEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	east := newRegionAdmin(t, ctx, moto.URL, motoRegion, "127.0.1.0/24")
	west := newRegionAdmin(t, ctx, moto.URL, otherRegion, "127.0.2.0/24")
	eastIDs := east.launch(t, ctx, 2, clusterTag, "c1")
	westIDs := west.launch(t, ctx, 1, clusterTag, "c1")
	west.launch(t, ctx, 1)                      // untagged
	west.launch(t, ctx, 1, clusterTag, "other") // another cluster's
	selfID := eastIDs[0]
	imds := east.imdsFor(t, ctx, selfID)

	reg := prometheus.NewRegistry()
	p, err := aws.New(ctx, aws.Options{Endpoint: moto.URL, IMDSEndpoint: imds.URL, Registerer: reg,
		Regions: []string{motoRegion, otherRegion}, ClusterTagKey: clusterTag})
	if err != nil {
		t.Fatal(err)
	}
	self, err := p.Self(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// No public address in moto: peers reach the instance at its private IP.
	if self.ID != selfID || !inLoopbackSubnet(self.Address) || self.BindAddress != self.Address || self.PublicIP != "" {
		t.Fatalf("Self() = %+v, want the private address as both address and bind address", self)
	}
	insts, err := p.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(slices.Values(append(slices.Clone(eastIDs), westIDs...)))
	var got []string
	for _, i := range insts {
		got = append(got, i.ID)
		wantRegion := motoRegion
		if slices.Contains(westIDs, i.ID) {
			wantRegion = otherRegion
		}
		if i.State != cluster.InstanceRunning || i.Region != wantRegion || i.Address == "" || i.Address != i.BindAddress ||
			!strings.HasPrefix(i.Zone, wantRegion) {
			t.Errorf("instance %+v: want running in %s with its private address", i, wantRegion)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Instances() = %v, want %v", got, want)
	}
	if name := p.Name(); name != "c1" {
		t.Errorf("Name() = %q, want the cluster tag's value c1", name)
	}
	// The tag's value was read once; every listing asks every region.
	if n := testcluster.AWSRequests(t, reg, "DescribeInstances", "ok"); n != 3 {
		t.Errorf("DescribeInstances ok = %v, want 3 (the own tags, then one listing per region)", n)
	}
	if n := testcluster.AWSRequests(t, reg, "DescribeAutoScalingGroups", "ok"); n != 0 {
		t.Errorf("DescribeAutoScalingGroups ok = %v: multi-region mode asks EC2 only", n)
	}

	// A terminated instance stays listed, terminated.
	if _, err := west.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: westIDs}); err != nil {
		t.Fatal(err)
	}
	insts, err = p.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range insts {
		if i.ID == westIDs[0] && i.State != cluster.InstanceTerminated {
			t.Errorf("terminated %s listed as %s", i.ID, i.State)
		}
	}

	// One region failing: the group is unknown, never the other region alone.
	u, _ := url.Parse(moto.URL)
	front := httptest.NewServer(regionFaults{backend: httputil.NewSingleHostReverseProxy(u), region: otherRegion})
	defer front.Close()
	broken, err := aws.New(ctx, aws.Options{Endpoint: front.URL, IMDSEndpoint: imds.URL,
		Regions: []string{motoRegion, otherRegion}, ClusterTagKey: clusterTag})
	if err != nil {
		t.Fatal(err)
	}
	insts, err = broken.Instances(ctx)
	if !errors.Is(err, provider.ErrGroupUnknown) || insts != nil {
		t.Fatalf("Instances() with %s failing = %v, %v; want ErrGroupUnknown and no instances", otherRegion, insts, err)
	}
	if !strings.Contains(err.Error(), otherRegion) {
		t.Errorf("the error %q does not name the failing region", err)
	}

	// An instance outside the listed regions is refused at once.
	if _, err := aws.New(ctx, aws.Options{Endpoint: moto.URL, IMDSEndpoint: imds.URL, Regions: []string{otherRegion}}); err == nil ||
		!strings.Contains(err.Error(), "does not include this instance's region "+motoRegion) {
		t.Errorf("New() outside the regions = %v", err)
	}
}

// TestMotoFirewall: the cluster's rules are authorized and revoked in the
// cluster security group of both regions; rules of others, in the same group
// or another, stay as they are.
func TestMotoFirewall(t *testing.T) {
	moto := startMoto(t)
	testcluster.IsolateAWSEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	east := newRegionAdmin(t, ctx, moto.URL, motoRegion, "127.0.1.0/24")
	west := newRegionAdmin(t, ctx, moto.URL, otherRegion, "127.0.2.0/24")
	selfID := east.launch(t, ctx, 1, clusterTag, "c1")[0]
	imds := east.imdsFor(t, ctx, selfID)
	eastSG := east.securityGroup(t, ctx, "etcd", clusterTag, "c1")
	westSG := west.securityGroup(t, ctx, "etcd", clusterTag, "c1")
	untagged := east.securityGroup(t, ctx, "ssh")
	// Others' rules: one on the cluster's port from an address the cluster
	// will also want, one elsewhere, one in another group.
	foreign := []ec2types.IpPermission{{
		IpProtocol: sdkaws.String("tcp"), FromPort: sdkaws.Int32(2379), ToPort: sdkaws.Int32(2379),
		IpRanges: []ec2types.IpRange{
			{CidrIp: sdkaws.String("192.0.2.99/32"), Description: sdkaws.String("monitoring")},
			{CidrIp: sdkaws.String("198.51.100.2/32"), Description: sdkaws.String("opened by hand")},
		},
	}, {
		IpProtocol: sdkaws.String("tcp"), FromPort: sdkaws.Int32(22), ToPort: sdkaws.Int32(22),
		IpRanges: []ec2types.IpRange{{CidrIp: sdkaws.String("0.0.0.0/0")}},
	}}
	for _, sg := range []string{eastSG, untagged} {
		if _, err := east.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{
			GroupId: sdkaws.String(sg), IpPermissions: foreign}); err != nil {
			t.Fatal(err)
		}
	}

	reg := prometheus.NewRegistry()
	p, err := aws.New(ctx, aws.Options{Endpoint: moto.URL, IMDSEndpoint: imds.URL, Registerer: reg,
		Regions: []string{motoRegion, otherRegion}, ClusterTagKey: clusterTag})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Firewall(cluster.FirewallSpec{Cluster: "c1", Regions: []string{"ap-south-1"}, Ports: []int{1}}); err == nil {
		t.Error("Firewall() accepted a region outside --regions")
	}
	spec := cluster.FirewallSpec{Cluster: "c1", Regions: []string{motoRegion, otherRegion}, Ports: []int{2379, 2380}}
	fw, err := p.Firewall(spec)
	if err != nil {
		t.Fatal(err)
	}
	have, err := fw.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	owned := func(rs []cluster.IngressRule) []cluster.IngressRule {
		var out []cluster.IngressRule
		for _, r := range rs {
			if spec.Owns(r) {
				out = append(out, r)
			}
		}
		return out
	}
	if len(have) != 3 || len(owned(have)) != 0 {
		t.Fatalf("Rules() = %v, want the 3 foreign single-port rules only", have)
	}

	i1 := cluster.Instance{ID: "i-1", Address: "ec2-203-0-113-1.compute-1.amazonaws.com", BindAddress: "10.0.0.1", PublicIP: "203.0.113.1", State: cluster.InstanceRunning}
	i2 := cluster.Instance{ID: "i-2", Address: "198.51.100.2", State: cluster.InstanceRunning}
	i3 := cluster.Instance{ID: "i-3", Address: "192.0.2.3", State: cluster.InstanceRunning}
	member := func(inst cluster.Instance) cluster.MemberStatus {
		return cluster.MemberStatus{Name: inst.ID, Role: cluster.RoleVoter, Healthy: true, PeerURL: "http://" + inst.Address + ":2380"}
	}
	apply := func(in cluster.FirewallInputs) cluster.FirewallPlan {
		t.Helper()
		have, err := fw.Rules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		plan := cluster.DecideFirewall(spec, in, have)
		if err := fw.Apply(ctx, plan.Authorize, plan.Revoke); err != nil {
			t.Fatalf("Apply(%+v): %v", plan, err)
		}
		after, err := fw.Rules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if again := cluster.DecideFirewall(spec, in, after); !again.Empty() {
			t.Errorf("after Apply the groups hold %v: still to do %+v", after, again)
		}
		return plan
	}
	cidrs := func(region string) []string {
		t.Helper()
		rs, err := fw.Rules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			if r.Region == region {
				out = append(out, fmt.Sprintf("%d %s %s", r.Port, r.CIDR, r.Description))
			}
		}
		slices.Sort(out)
		return out
	}

	plan := apply(cluster.FirewallInputs{Members: []cluster.MemberStatus{member(i1), member(i2)}, Group: []cluster.Instance{i1, i2}, GroupKnown: true})
	// i-2's 2379 rule in us-east-1 exists already (someone else's): 7, not 8.
	if len(plan.Authorize) != 7 || len(plan.Revoke) != 0 {
		t.Errorf("first plan %+v, want 7 authorizations", plan)
	}
	wantEast := []string{
		"22 0.0.0.0/0 ",
		"2379 192.0.2.99/32 monitoring",
		"2379 198.51.100.2/32 opened by hand",
		"2379 203.0.113.1/32 etcd-appliance c1 i-1",
		"2380 198.51.100.2/32 etcd-appliance c1 i-2",
		"2380 203.0.113.1/32 etcd-appliance c1 i-1",
	}
	if got := cidrs(motoRegion); !slices.Equal(got, wantEast) {
		t.Errorf("%s holds\n  %s\nwant\n  %s", motoRegion, strings.Join(got, "\n  "), strings.Join(wantEast, "\n  "))
	}
	wantWest := []string{
		"2379 198.51.100.2/32 etcd-appliance c1 i-2",
		"2379 203.0.113.1/32 etcd-appliance c1 i-1",
		"2380 198.51.100.2/32 etcd-appliance c1 i-2",
		"2380 203.0.113.1/32 etcd-appliance c1 i-1",
	}
	if got := cidrs(otherRegion); !slices.Equal(got, wantWest) {
		t.Errorf("%s holds\n  %s\nwant\n  %s", otherRegion, strings.Join(got, "\n  "), strings.Join(wantWest, "\n  "))
	}

	// i-1 replaced by i-3: one authorization and one revocation per region.
	authBefore := testcluster.AWSRequests(t, reg, "AuthorizeSecurityGroupIngress", "ok")
	revokeBefore := testcluster.AWSRequests(t, reg, "RevokeSecurityGroupIngress", "ok")
	plan = apply(cluster.FirewallInputs{Members: []cluster.MemberStatus{member(i2), member(i3)}, Group: []cluster.Instance{i2, i3}, GroupKnown: true})
	if len(plan.Authorize) != 4 || len(plan.Revoke) != 4 {
		t.Errorf("replacement plan %+v, want 4 authorizations and 4 revocations", plan)
	}
	if n := testcluster.AWSRequests(t, reg, "AuthorizeSecurityGroupIngress", "ok") - authBefore; n != 2 {
		t.Errorf("%v AuthorizeSecurityGroupIngress calls, want one per region", n)
	}
	if n := testcluster.AWSRequests(t, reg, "RevokeSecurityGroupIngress", "ok") - revokeBefore; n != 2 {
		t.Errorf("%v RevokeSecurityGroupIngress calls, want one per region", n)
	}
	wantEast = []string{
		"22 0.0.0.0/0 ",
		"2379 192.0.2.3/32 etcd-appliance c1 i-3",
		"2379 192.0.2.99/32 monitoring",
		"2379 198.51.100.2/32 opened by hand",
		"2380 192.0.2.3/32 etcd-appliance c1 i-3",
		"2380 198.51.100.2/32 etcd-appliance c1 i-2",
	}
	if got := cidrs(motoRegion); !slices.Equal(got, wantEast) {
		t.Errorf("after the replacement %s holds\n  %s\nwant\n  %s", motoRegion, strings.Join(got, "\n  "), strings.Join(wantEast, "\n  "))
	}

	// The group nobody tagged kept its rules.
	out, err := east.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{untagged}})
	if err != nil || len(out.SecurityGroups) != 1 || len(out.SecurityGroups[0].IpPermissions) != 2 {
		t.Errorf("untagged group %s: %+v, %v; want its 2 permissions untouched", untagged, out, err)
	}
	// Revoking a rule the cluster does not own is refused outright.
	if err := fw.Apply(ctx, nil, []cluster.IngressRule{{Region: motoRegion, Port: 2379, CIDR: "192.0.2.99/32", Description: "monitoring"}}); err == nil {
		t.Error("Apply revoked a foreign rule")
	}

	// A second tagged group makes the cluster's group ambiguous: an error
	// naming both, never a guess.
	second := west.securityGroup(t, ctx, "etcd-copy", clusterTag, "c1")
	if _, err := fw.Rules(ctx); err == nil || !strings.Contains(err.Error(), westSG) || !strings.Contains(err.Error(), second) {
		t.Errorf("Rules() with two tagged groups in %s = %v, want an error naming %s and %s", otherRegion, err, westSG, second)
	}
	if _, err := west.ec2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: sdkaws.String(second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := west.ec2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: sdkaws.String(westSG)}); err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Rules(ctx); err == nil || !strings.Contains(err.Error(), "no security group in "+otherRegion+" carries the tag") {
		t.Errorf("Rules() without a tagged group in %s = %v", otherRegion, err)
	}
}
