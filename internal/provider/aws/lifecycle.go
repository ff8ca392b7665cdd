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

// The lifecycle transitions of the hooks the appliance completes: a
// termination hook holds the instance until it has left the cluster
// (§4.5), a launch hook holds it out of service until it is a healthy
// voter (issue 10).
const (
	terminatingTransition = "autoscaling:EC2_INSTANCE_TERMINATING"
	launchingTransition   = "autoscaling:EC2_INSTANCE_LAUNCHING"
)

// lifecycleAPI is the part of the Auto Scaling client that the lifecycle
// hooks use: the termination hook (SPEC §4.5) and the launch hook.
type lifecycleAPI interface {
	DescribeLifecycleHooks(ctx context.Context, in *autoscaling.DescribeLifecycleHooksInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeLifecycleHooksOutput, error)
	CompleteLifecycleAction(ctx context.Context, in *autoscaling.CompleteLifecycleActionInput, optFns ...func(*autoscaling.Options)) (*autoscaling.CompleteLifecycleActionOutput, error)
	RecordLifecycleActionHeartbeat(ctx context.Context, in *autoscaling.RecordLifecycleActionHeartbeatInput, optFns ...func(*autoscaling.Options)) (*autoscaling.RecordLifecycleActionHeartbeatOutput, error)
}

var (
	_ provider.Lifecycle = (*Provider)(nil)
	_ provider.Launch    = (*Provider)(nil)
)

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
	return p.eachHook(ctx, terminatingTransition, "recording a lifecycle heartbeat", p.heartbeat)
}

// Complete lets the group go on terminating this instance: it completes
// every termination hook with CONTINUE. A hook with no action in progress
// for the instance (it timed out, or the termination came without a hook)
// is not an error.
func (p *Provider) Complete(ctx context.Context) error {
	return p.eachHook(ctx, terminatingTransition, "completing the lifecycle action", p.completeWith("CONTINUE"))
}

// LaunchHeartbeat extends the timeout of this instance's launch hooks
// while it joins the cluster.
func (p *Provider) LaunchHeartbeat(ctx context.Context) error {
	return p.eachHook(ctx, launchingTransition, "recording a launch heartbeat", p.heartbeat)
}

// CompleteLaunch completes every launch hook of the group for this
// instance with result: CONTINUE puts it in service, ABANDON has the group
// terminate it. Without an action in progress (the instance was launched
// before the hook existed, or this is a restart of its appliance) there is
// nothing to complete, and that is no error.
func (p *Provider) CompleteLaunch(ctx context.Context, result provider.LaunchResult) error {
	return p.eachHook(ctx, launchingTransition, "completing the launch action "+string(result), p.completeWith(string(result)))
}

func (p *Provider) heartbeat(ctx context.Context, group, hook, id string) error {
	_, err := p.lc.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{
		AutoScalingGroupName: aws.String(group),
		LifecycleHookName:    aws.String(hook),
		InstanceId:           aws.String(id),
	})
	return err
}

func (p *Provider) completeWith(result string) func(ctx context.Context, group, hook, id string) error {
	return func(ctx context.Context, group, hook, id string) error {
		_, err := p.lc.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
			AutoScalingGroupName:  aws.String(group),
			LifecycleHookName:     aws.String(hook),
			InstanceId:            aws.String(id),
			LifecycleActionResult: aws.String(result),
		})
		return err
	}
}

// eachHook calls call for every hook of the instance's group on
// transition.
func (p *Provider) eachHook(ctx context.Context, transition, what string, call func(ctx context.Context, group, hook, id string) error) error {
	self, err := p.Metadata(ctx)
	if err != nil {
		return err
	}
	group, err := p.groupName(ctx)
	if err != nil {
		return err
	}
	hooks, err := p.hooksOn(ctx, group, transition)
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

// hooksOn are the group's hooks on transition: for termination the
// configured one, else those the group has. Each transition's hooks are
// looked up once, when first needed: the launch gate's look-up, early in
// an instance's life, does not fix the termination hooks, which may be
// added later.
func (p *Provider) hooksOn(ctx context.Context, group, transition string) ([]string, error) {
	if transition == terminatingTransition && p.hookName != "" {
		return []string{p.hookName}, nil
	}
	p.mu.Lock()
	hooks, known := p.hooks[transition]
	p.mu.Unlock()
	if known {
		return hooks, nil
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	out, err := p.lc.DescribeLifecycleHooks(cctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(group)})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("listing the lifecycle hooks of group %s: %w", group, err)
	}
	hooks = []string{}
	for _, h := range out.LifecycleHooks {
		if aws.ToString(h.LifecycleTransition) == transition {
			hooks = append(hooks, aws.ToString(h.LifecycleHookName))
		}
	}
	p.log.Info("lifecycle hooks", "group", group, "transition", transition, "hooks", hooks)
	p.mu.Lock()
	if p.hooks == nil {
		p.hooks = map[string][]string{}
	}
	p.hooks[transition] = hooks
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
