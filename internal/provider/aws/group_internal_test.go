package aws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// fakeASG is Auto Scaling as a few functions.
type fakeASG struct {
	instances func(*autoscaling.DescribeAutoScalingInstancesInput) (*autoscaling.DescribeAutoScalingInstancesOutput, error)
	groups    func(*autoscaling.DescribeAutoScalingGroupsInput) (*autoscaling.DescribeAutoScalingGroupsOutput, error)
}

func (f fakeASG) DescribeAutoScalingInstances(_ context.Context, in *autoscaling.DescribeAutoScalingInstancesInput, _ ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingInstancesOutput, error) {
	return f.instances(in)
}

func (f fakeASG) DescribeAutoScalingGroups(_ context.Context, in *autoscaling.DescribeAutoScalingGroupsInput, _ ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error) {
	return f.groups(in)
}

// fakeEC2 is EC2 as one function.
type fakeEC2 func(*ec2.DescribeInstancesInput) (*ec2.DescribeInstancesOutput, error)

func (f fakeEC2) DescribeInstances(_ context.Context, in *ec2.DescribeInstancesInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	return f(in)
}

const testGroup = "etcd-asg"

// inGroup answers DescribeAutoScalingInstances: every instance is in testGroup.
func inGroup(in *autoscaling.DescribeAutoScalingInstancesInput) (*autoscaling.DescribeAutoScalingInstancesOutput, error) {
	var out autoscaling.DescribeAutoScalingInstancesOutput
	for _, id := range in.InstanceIds {
		out.AutoScalingInstances = append(out.AutoScalingInstances, astypes.AutoScalingInstanceDetails{
			InstanceId: aws.String(id), AutoScalingGroupName: aws.String(testGroup),
		})
	}
	return &out, nil
}

func asgInstance(id, lifecycle string) astypes.Instance {
	return astypes.Instance{InstanceId: aws.String(id), LifecycleState: astypes.LifecycleState(lifecycle), AvailabilityZone: aws.String("us-east-1a")}
}

// groupPages answers DescribeAutoScalingGroups with one page per slice of
// instances, chained by NextToken.
func groupPages(pages ...[]astypes.Instance) func(*autoscaling.DescribeAutoScalingGroupsInput) (*autoscaling.DescribeAutoScalingGroupsOutput, error) {
	return func(in *autoscaling.DescribeAutoScalingGroupsInput) (*autoscaling.DescribeAutoScalingGroupsOutput, error) {
		i := 0
		if in.NextToken != nil {
			fmt.Sscan(*in.NextToken, &i)
		}
		out := &autoscaling.DescribeAutoScalingGroupsOutput{}
		if len(pages) > 0 {
			out.AutoScalingGroups = []astypes.AutoScalingGroup{{AutoScalingGroupName: aws.String(testGroup), Instances: pages[i]}}
		}
		if i+1 < len(pages) {
			out.NextToken = aws.String(fmt.Sprint(i + 1))
		}
		return out, nil
	}
}

type machine struct {
	id, state, ip string
}

// ec2Pages answers DescribeInstances with the machines whose ids the
// instance-id filter names, one machine per page.
func ec2Pages(machines ...machine) fakeEC2 {
	return func(in *ec2.DescribeInstancesInput) (*ec2.DescribeInstancesOutput, error) {
		want := map[string]bool{}
		for _, f := range in.Filters {
			if aws.ToString(f.Name) == "instance-id" {
				for _, v := range f.Values {
					want[v] = true
				}
			}
		}
		for _, id := range in.InstanceIds {
			want[id] = true
		}
		var hits []ec2types.Instance
		for _, m := range machines {
			if !want[m.id] {
				continue
			}
			inst := ec2types.Instance{
				InstanceId: aws.String(m.id),
				State:      &ec2types.InstanceState{Name: ec2types.InstanceStateName(m.state)},
				Placement:  &ec2types.Placement{AvailabilityZone: aws.String("us-east-1b")},
			}
			if m.ip != "" {
				inst.PrivateIpAddress = aws.String(m.ip)
			}
			hits = append(hits, inst)
		}
		i := 0
		if in.NextToken != nil {
			fmt.Sscan(*in.NextToken, &i)
		}
		out := &ec2.DescribeInstancesOutput{}
		if i < len(hits) {
			out.Reservations = []ec2types.Reservation{{Instances: hits[i : i+1]}}
		}
		if i+1 < len(hits) {
			out.NextToken = aws.String(fmt.Sprint(i + 1))
		}
		return out, nil
	}
}

func fakeProvider(asg autoscalingAPI, e ec2API) *Provider {
	return &Provider{
		log:    slog.New(slog.DiscardHandler),
		region: "us-east-1",
		asg:    asg,
		ec2:    e,
		now:    time.Now,
		self:   &Metadata{InstanceID: "i-1", Region: "us-east-1", Zone: "us-east-1a", PrivateIPv4: "10.0.0.1"},
	}
}

func TestInstancesListsGroupAcrossPages(t *testing.T) {
	p := fakeProvider(fakeASG{
		instances: inGroup,
		groups: groupPages(
			[]astypes.Instance{asgInstance("i-3", "InService"), asgInstance("i-1", "InService")},
			[]astypes.Instance{asgInstance("i-2", "Pending"), asgInstance("i-4", "Terminating:Wait"), asgInstance("i-5", "Terminating")},
		),
	}, ec2Pages(
		machine{"i-1", "running", "10.0.0.1"},
		machine{"i-2", "pending", "10.0.0.2"},
		machine{"i-3", "running", "10.0.0.3"},
		machine{"i-4", "running", "10.0.0.4"},
		// i-5: EC2 already forgot it.
	))
	got, err := p.Instances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []cluster.Instance{
		{ID: "i-1", Address: "10.0.0.1", State: cluster.InstanceRunning, Region: "us-east-1", Zone: "us-east-1a"},
		{ID: "i-2", Address: "10.0.0.2", State: cluster.InstancePending, Region: "us-east-1", Zone: "us-east-1a"},
		{ID: "i-3", Address: "10.0.0.3", State: cluster.InstanceRunning, Region: "us-east-1", Zone: "us-east-1a"},
		{ID: "i-4", Address: "10.0.0.4", State: cluster.InstanceTerminating, Region: "us-east-1", Zone: "us-east-1a"},
		{ID: "i-5", State: cluster.InstanceTerminated, Region: "us-east-1", Zone: "us-east-1a"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Instances:\n got %+v\nwant %+v", got, want)
	}
	if name := p.Name(); name != testGroup {
		t.Fatalf("Name() = %q, want %q", name, testGroup)
	}
}

// TestInstancesAsksEC2OnlyWhatItDoesNotKnow pins the call budget of a
// listing (SPEC §7): an unchanged group in service costs no DescribeInstances,
// a new or unhealthy instance is described alone, and everything is
// described again every fullDescribeEvery.
func TestInstancesAsksEC2OnlyWhatItDoesNotKnow(t *testing.T) {
	healthy := func(id, lifecycle string) astypes.Instance {
		i := asgInstance(id, lifecycle)
		i.HealthStatus = aws.String("Healthy")
		return i
	}
	group := []astypes.Instance{healthy("i-1", "InService"), healthy("i-2", "InService")}
	machines := []machine{{"i-1", "running", "10.0.0.1"}, {"i-2", "running", "10.0.0.2"}, {"i-3", "pending", "10.0.0.3"}}
	var asked [][]string
	describe := ec2Pages(machines...)
	p := fakeProvider(fakeASG{
		instances: inGroup,
		groups: func(*autoscaling.DescribeAutoScalingGroupsInput) (*autoscaling.DescribeAutoScalingGroupsOutput, error) {
			return groupPages(group)(&autoscaling.DescribeAutoScalingGroupsInput{})
		},
	}, fakeEC2(func(in *ec2.DescribeInstancesInput) (*ec2.DescribeInstancesOutput, error) {
		if in.NextToken == nil {
			asked = append(asked, in.Filters[0].Values)
		}
		return describe(in)
	}))
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	list := func() []cluster.Instance {
		t.Helper()
		got, err := p.Instances(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	expectAsked := func(step string, want ...string) {
		t.Helper()
		var got []string
		for _, a := range asked {
			got = append(got, a...)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: DescribeInstances asked about %v, want %v", step, got, want)
		}
		asked = nil
	}

	list()
	expectAsked("first listing", "i-1", "i-2")
	got := list()
	expectAsked("unchanged group")
	if got[1].Address != "10.0.0.2" || got[1].State != cluster.InstanceRunning {
		t.Errorf("known instance listed as %+v", got[1])
	}

	group = append(group, healthy("i-3", "Pending"))
	list()
	expectAsked("a new instance", "i-3")
	list()
	expectAsked("the new instance still pending", "i-3")

	group[1].HealthStatus = aws.String("Unhealthy")
	machines[1].state = "stopped"
	describe = ec2Pages(machines...)
	got = list()
	expectAsked("an unhealthy instance", "i-2", "i-3")
	if got[1].State != cluster.InstanceStopped {
		t.Errorf("unhealthy, stopped instance listed as %s", got[1].State)
	}

	now = now.Add(fullDescribeEvery)
	list()
	expectAsked("after fullDescribeEvery", "i-1", "i-2", "i-3")
}

func TestInstancesUnknownNeverEmpty(t *testing.T) {
	throttled := &smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"}
	for _, tc := range []struct {
		name string
		asg  fakeASG
		ec2  fakeEC2
	}{
		{"own group lookup fails", fakeASG{
			instances: func(*autoscaling.DescribeAutoScalingInstancesInput) (*autoscaling.DescribeAutoScalingInstancesOutput, error) {
				return nil, throttled
			},
		}, ec2Pages()},
		{"instance in no group and untagged", fakeASG{
			instances: func(*autoscaling.DescribeAutoScalingInstancesInput) (*autoscaling.DescribeAutoScalingInstancesOutput, error) {
				return &autoscaling.DescribeAutoScalingInstancesOutput{}, nil
			},
		}, ec2Pages(machine{"i-1", "running", "10.0.0.1"})},
		{"group listing fails", fakeASG{instances: inGroup,
			groups: func(*autoscaling.DescribeAutoScalingGroupsInput) (*autoscaling.DescribeAutoScalingGroupsOutput, error) {
				return nil, throttled
			},
		}, ec2Pages()},
		{"group does not exist", fakeASG{instances: inGroup, groups: groupPages()}, ec2Pages()},
		{"group lists no instances", fakeASG{instances: inGroup, groups: groupPages([]astypes.Instance{})}, ec2Pages()},
		{"EC2 listing fails", fakeASG{instances: inGroup, groups: groupPages([]astypes.Instance{asgInstance("i-1", "InService")})},
			func(*ec2.DescribeInstancesInput) (*ec2.DescribeInstancesOutput, error) { return nil, throttled }},
		{"EC2 does not know an in-service instance yet", fakeASG{instances: inGroup,
			groups: groupPages([]astypes.Instance{asgInstance("i-1", "InService"), asgInstance("i-2", "InService")})},
			ec2Pages(machine{"i-1", "running", "10.0.0.1"})},
		{"running instance without address", fakeASG{instances: inGroup,
			groups: groupPages([]astypes.Instance{asgInstance("i-1", "InService")})},
			ec2Pages(machine{"i-1", "running", ""})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := fakeProvider(tc.asg, tc.ec2)
			got, err := p.Instances(context.Background())
			if !errors.Is(err, provider.ErrGroupUnknown) {
				t.Fatalf("Instances = %v, %v; want an error wrapping ErrGroupUnknown", got, err)
			}
			if got != nil {
				t.Fatalf("Instances returned %v with its error", got)
			}
		})
	}
}

func TestGroupNameFromTagWhenAutoScalingLetGo(t *testing.T) {
	p := fakeProvider(fakeASG{
		instances: func(*autoscaling.DescribeAutoScalingInstancesInput) (*autoscaling.DescribeAutoScalingInstancesOutput, error) {
			return &autoscaling.DescribeAutoScalingInstancesOutput{}, nil
		},
	}, fakeEC2(func(in *ec2.DescribeInstancesInput) (*ec2.DescribeInstancesOutput, error) {
		if !reflect.DeepEqual(in.InstanceIds, []string{"i-1"}) {
			return nil, fmt.Errorf("unexpected input %+v", in)
		}
		return &ec2.DescribeInstancesOutput{Reservations: []ec2types.Reservation{{Instances: []ec2types.Instance{{
			InstanceId: aws.String("i-1"),
			Tags:       []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String("x")}, {Key: aws.String(groupNameTag), Value: aws.String("tagged-asg")}},
		}}}}}, nil
	}))
	if name := p.Name(); name != "tagged-asg" {
		t.Fatalf("Name() = %q, want tagged-asg", name)
	}
}

func TestInstanceState(t *testing.T) {
	for _, tc := range []struct {
		lifecycle string
		ec2       string
		want      cluster.InstanceState
	}{
		{"InService", "running", cluster.InstanceRunning},
		{"Pending", "running", cluster.InstanceRunning},
		{"Pending:Wait", "running", cluster.InstanceRunning},
		{"Pending:Proceed", "running", cluster.InstanceRunning},
		{"Pending", "pending", cluster.InstancePending},
		{"InService", "pending", cluster.InstancePending},
		{"Terminating", "running", cluster.InstanceTerminating},
		{"Terminating:Wait", "running", cluster.InstanceTerminating},
		{"Terminating:Proceed", "running", cluster.InstanceTerminating},
		{"Terminating:Wait", "stopping", cluster.InstanceTerminated},
		{"Terminated", "running", cluster.InstanceTerminated},
		{"InService", "shutting-down", cluster.InstanceTerminated},
		{"InService", "terminated", cluster.InstanceTerminated},
		{"Pending", "terminated", cluster.InstanceTerminated},
		{"InService", "stopping", cluster.InstanceStopping},
		{"InService", "stopped", cluster.InstanceStopped},
		{"EnteringStandby", "running", cluster.InstanceStopping},
		{"Detaching", "running", cluster.InstanceStopping},
		{"Standby", "running", cluster.InstanceStopped},
		{"Detached", "running", cluster.InstanceStopped},
		{"Warmed:Running", "running", cluster.InstanceStopped},
		{"InService", "", cluster.InstancePending},
		{"InService", "rebooting-in-2040", cluster.InstancePending},
	} {
		if got := instanceState(tc.lifecycle, ec2types.InstanceStateName(tc.ec2)); got != tc.want {
			t.Errorf("instanceState(%q, %q) = %s, want %s", tc.lifecycle, tc.ec2, got, tc.want)
		}
	}
}
