package fleet

import (
	"context"
	"fmt"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
)

// The termination lifecycle hook of SPEC §4.5, as far as moto goes. moto
// 5.2 stores a hook (PutLifecycleHook, DescribeLifecycleHooks) but neither
// holds a terminating instance in Terminating:Wait nor serves
// CompleteLifecycleAction (it answers 500). The fleet plays the rest:
// StartTermination turns the instance's target lifecycle state in its IMDS
// to Terminated, as EC2 does when the group starts terminating it; the
// tests' fault proxy answers CompleteLifecycleAction (testcluster.Answer);
// the test then terminates the instance through the group, as the hook's
// CONTINUE would.

//
// The launch hook goes less far still: moto launches a new instance
// InService at once, hook or not. The appliance completes the hook all
// the same, and the fault proxy answers (and shows the test) its
// CompleteLifecycleAction.

// PutTerminationHook adds a termination lifecycle hook named name to the
// group.
func (g *AWSGroup) PutTerminationHook(ctx context.Context, name string) error {
	return g.putHook(ctx, name, "autoscaling:EC2_INSTANCE_TERMINATING", "CONTINUE")
}

// PutLaunchHook adds a launch lifecycle hook named name to the group,
// abandoning (terminating) an instance that does not complete it, as the
// CloudFormation template's does.
func (g *AWSGroup) PutLaunchHook(ctx context.Context, name string) error {
	return g.putHook(ctx, name, "autoscaling:EC2_INSTANCE_LAUNCHING", "ABANDON")
}

func (g *AWSGroup) putHook(ctx context.Context, name, transition, defaultResult string) error {
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	_, err := g.asg.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{
		AutoScalingGroupName: sdkaws.String(g.name),
		LifecycleHookName:    sdkaws.String(name),
		LifecycleTransition:  sdkaws.String(transition),
		HeartbeatTimeout:     sdkaws.Int32(120),
		DefaultResult:        sdkaws.String(defaultResult),
	})
	if err != nil {
		return fmt.Errorf("fleet: putting lifecycle hook %s on group %s: %w", name, g.name, err)
	}
	g.log.Info("lifecycle hook put", "hook", name, "transition", transition)
	return nil
}

// StartTermination makes the instance's IMDS say that the group is
// terminating it: autoscaling/target-lifecycle-state turns Terminated.
func (g *AWSGroup) StartTermination(id string) error {
	md := g.IMDS(id)
	if md == nil {
		return fmt.Errorf("fleet: instance %s has no metadata service", id)
	}
	md.Set("autoscaling/target-lifecycle-state", "Terminated")
	g.log.Info("target lifecycle state set", "id", id, "state", "Terminated")
	return nil
}

// LogTail returns the last n lines of an instance's log.
func (g *AWSGroup) LogTail(id string, n int) string { return g.procs.LogTail(id, n) }
