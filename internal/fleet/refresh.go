package fleet

import (
	"context"
	"fmt"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
)

// The capacity moves of an instance refresh that launches before it
// terminates (minimum healthy 100 %, maximum healthy above 100 %): the
// group's maximum leaves room above the desired capacity, the refresh
// raises the desired capacity by one to launch a new instance, then
// terminates an old one with a decrement. moto 5.2 does not implement
// StartInstanceRefresh nor DescribeInstanceRefreshes (it answers 500,
// NotImplementedError), so the tests play the refresh with these and
// TerminateInASG. Unlike SetDesired, they change one bound at a time.

// Capacity is an Auto Scaling group's size bounds and desired capacity.
type Capacity struct {
	Min, Max, Desired int
}

func (c Capacity) String() string {
	return fmt.Sprintf("min %d, max %d, desired %d", c.Min, c.Max, c.Desired)
}

// Capacity reads the group's bounds and desired capacity.
func (g *AWSGroup) Capacity(ctx context.Context) (Capacity, error) {
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	out, err := g.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{
		AutoScalingGroupNames: []string{g.name},
	})
	if err != nil {
		return Capacity{}, fmt.Errorf("fleet: describing group %s: %w", g.name, err)
	}
	if len(out.AutoScalingGroups) != 1 {
		return Capacity{}, fmt.Errorf("fleet: moto lists %d groups named %s", len(out.AutoScalingGroups), g.name)
	}
	asg := out.AutoScalingGroups[0]
	return Capacity{
		Min:     int(sdkaws.ToInt32(asg.MinSize)),
		Max:     int(sdkaws.ToInt32(asg.MaxSize)),
		Desired: int(sdkaws.ToInt32(asg.DesiredCapacity)),
	}, nil
}

// SetMaxSize sets only the group's maximum size: the room above the
// desired capacity that a launch before a termination takes.
func (g *AWSGroup) SetMaxSize(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	_, err := g.asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: sdkaws.String(g.name),
		MaxSize:              sdkaws.Int32(int32(n)),
	})
	if err != nil {
		return fmt.Errorf("fleet: setting the max size of group %s to %d: %w", g.name, n, err)
	}
	g.log.Info("group max size set", "max", n)
	return nil
}

// SetDesiredCapacity sets only the group's desired capacity, within its
// bounds, as an instance refresh or a scaling policy does. moto launches
// (or terminates) at once; Sync follows.
func (g *AWSGroup) SetDesiredCapacity(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	_, err := g.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: sdkaws.String(g.name),
		DesiredCapacity:      sdkaws.Int32(int32(n)),
	})
	if err != nil {
		return fmt.Errorf("fleet: setting the desired capacity of group %s to %d: %w", g.name, n, err)
	}
	g.log.Info("group desired capacity set", "desired", n)
	return nil
}
