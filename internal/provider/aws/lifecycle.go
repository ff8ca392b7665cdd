package aws

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/smithy-go"

	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// terminatingTransition is the lifecycle transition of the hooks that hold
// an instance's termination.
const terminatingTransition = "autoscaling:EC2_INSTANCE_TERMINATING"

// lifecycleAPI is the part of the Auto Scaling client that the lifecycle
// hook path uses (SPEC §4.5).
type lifecycleAPI interface {
	DescribeLifecycleHooks(ctx context.Context, in *autoscaling.DescribeLifecycleHooksInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeLifecycleHooksOutput, error)
	CompleteLifecycleAction(ctx context.Context, in *autoscaling.CompleteLifecycleActionInput, optFns ...func(*autoscaling.Options)) (*autoscaling.CompleteLifecycleActionOutput, error)
	RecordLifecycleActionHeartbeat(ctx context.Context, in *autoscaling.RecordLifecycleActionHeartbeatInput, optFns ...func(*autoscaling.Options)) (*autoscaling.RecordLifecycleActionHeartbeatOutput, error)
}

var _ provider.Lifecycle = (*Provider)(nil)

// TargetState is the lifecycle state the group is moving this instance to,
// from IMDS (autoscaling/target-lifecycle-state): "InService",
// "Terminated", "Warmed:Stopped", ... It costs no AWS API call. An instance
// whose metadata has no such entry (not in a group) answers "".
func (p *Provider) TargetState(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	v, err := p.metadata(ctx, "autoscaling/target-lifecycle-state")
	if isNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading instance metadata autoscaling/target-lifecycle-state: %w", err)
	}
	return v, nil
}

// Heartbeat extends the timeout of this instance's termination hooks while
// it drains.
func (p *Provider) Heartbeat(ctx context.Context) error {
	return p.eachTerminationHook(ctx, "recording a lifecycle heartbeat", func(ctx context.Context, group, hook, id string) error {
		_, err := p.lc.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{
			AutoScalingGroupName: aws.String(group),
			LifecycleHookName:    aws.String(hook),
			InstanceId:           aws.String(id),
		})
		return err
	})
}

// Complete lets the group go on terminating this instance: it completes
// every termination hook with CONTINUE. A hook with no action in progress
// for the instance (it timed out, or the termination came without a hook)
// is not an error.
func (p *Provider) Complete(ctx context.Context) error {
	return p.eachTerminationHook(ctx, "completing the lifecycle action", func(ctx context.Context, group, hook, id string) error {
		_, err := p.lc.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
			AutoScalingGroupName:  aws.String(group),
			LifecycleHookName:     aws.String(hook),
			InstanceId:            aws.String(id),
			LifecycleActionResult: aws.String("CONTINUE"),
		})
		return err
	})
}

func (p *Provider) eachTerminationHook(ctx context.Context, what string, call func(ctx context.Context, group, hook, id string) error) error {
	self, err := p.Metadata(ctx)
	if err != nil {
		return err
	}
	group, err := p.groupName(ctx)
	if err != nil {
		return err
	}
	hooks, err := p.terminationHooks(ctx, group)
	if err != nil {
		return err
	}
	var errs []error
	for _, hook := range hooks {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		err := call(cctx, group, hook, self.InstanceID)
		cancel()
		switch {
		case err == nil:
			p.log.Info(what, "group", group, "hook", hook)
		case noActionInProgress(err):
			p.log.Info(what+": no action in progress", "group", group, "hook", hook, "err", err)
		default:
			errs = append(errs, fmt.Errorf("%s of hook %s of group %s: %w", what, hook, group, err))
		}
	}
	return errors.Join(errs...)
}

// terminationHooks are the group's hooks on termination: the configured
// one, or those the group has. They are looked up once.
func (p *Provider) terminationHooks(ctx context.Context, group string) ([]string, error) {
	p.mu.Lock()
	hooks := p.hooks
	p.mu.Unlock()
	if hooks != nil {
		return hooks, nil
	}
	if p.hookName != "" {
		hooks = []string{p.hookName}
	} else {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		out, err := p.lc.DescribeLifecycleHooks(cctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(group)})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("listing the lifecycle hooks of group %s: %w", group, err)
		}
		hooks = []string{}
		for _, h := range out.LifecycleHooks {
			if aws.ToString(h.LifecycleTransition) == terminatingTransition {
				hooks = append(hooks, aws.ToString(h.LifecycleHookName))
			}
		}
		p.log.Info("termination lifecycle hooks", "group", group, "hooks", hooks)
	}
	p.mu.Lock()
	p.hooks = hooks
	p.mu.Unlock()
	return hooks, nil
}

// noActionInProgress recognizes Auto Scaling's answer for a hook that holds
// no action of the instance: "No active Lifecycle Action found with
// instance ID i-...".
func noActionInProgress(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "ValidationError" &&
		strings.Contains(strings.ToLower(ae.ErrorMessage()), "no active lifecycle action")
}
