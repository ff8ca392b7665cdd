package aws

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/smithy-go"

	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// fakeHooks is the lifecycle part of Auto Scaling, recording the calls.
type fakeHooks struct {
	hooks     []astypes.LifecycleHook
	describes int
	completed []string // hook names, in call order
	results   []string // the LifecycleActionResult of each completion
	beats     []string
	err       map[string]error // by hook name
}

func (f *fakeHooks) DescribeLifecycleHooks(_ context.Context, in *autoscaling.DescribeLifecycleHooksInput, _ ...func(*autoscaling.Options)) (*autoscaling.DescribeLifecycleHooksOutput, error) {
	f.describes++
	if aws.ToString(in.AutoScalingGroupName) != testGroup {
		return nil, errors.New("wrong group")
	}
	return &autoscaling.DescribeLifecycleHooksOutput{LifecycleHooks: f.hooks}, nil
}

func (f *fakeHooks) CompleteLifecycleAction(_ context.Context, in *autoscaling.CompleteLifecycleActionInput, _ ...func(*autoscaling.Options)) (*autoscaling.CompleteLifecycleActionOutput, error) {
	if aws.ToString(in.InstanceId) != "i-1" || aws.ToString(in.AutoScalingGroupName) != testGroup {
		return nil, errors.New("wrong input")
	}
	f.completed = append(f.completed, aws.ToString(in.LifecycleHookName))
	f.results = append(f.results, aws.ToString(in.LifecycleActionResult))
	return &autoscaling.CompleteLifecycleActionOutput{}, f.err[aws.ToString(in.LifecycleHookName)]
}

func (f *fakeHooks) RecordLifecycleActionHeartbeat(_ context.Context, in *autoscaling.RecordLifecycleActionHeartbeatInput, _ ...func(*autoscaling.Options)) (*autoscaling.RecordLifecycleActionHeartbeatOutput, error) {
	f.beats = append(f.beats, aws.ToString(in.LifecycleHookName))
	return &autoscaling.RecordLifecycleActionHeartbeatOutput{}, f.err[aws.ToString(in.LifecycleHookName)]
}

func hook(name, transition string) astypes.LifecycleHook {
	return astypes.LifecycleHook{LifecycleHookName: aws.String(name), LifecycleTransition: aws.String(transition)}
}

func TestCompleteFindsTheTerminationHooksOnce(t *testing.T) {
	p := fakeProvider(fakeASG{instances: inGroup}, ec2Pages())
	lc := &fakeHooks{hooks: []astypes.LifecycleHook{
		hook("launching", "autoscaling:EC2_INSTANCE_LAUNCHING"),
		hook("drain", terminatingTransition),
		hook("backup", terminatingTransition),
	}}
	p.lc = lc
	ctx := context.Background()
	if err := p.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Complete(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []string{"drain", "backup"}; !reflect.DeepEqual(lc.completed, want) || !reflect.DeepEqual(lc.beats, want) {
		t.Errorf("completed %v, heartbeats %v; want both %v", lc.completed, lc.beats, want)
	}
	if want := []string{"CONTINUE", "CONTINUE"}; !reflect.DeepEqual(lc.results, want) {
		t.Errorf("completed with %v, want %v", lc.results, want)
	}
	if lc.describes != 1 {
		t.Errorf("hooks described %d times, want once", lc.describes)
	}
}

func TestCompleteTheConfiguredHookOnly(t *testing.T) {
	p := fakeProvider(fakeASG{instances: inGroup}, ec2Pages())
	lc := &fakeHooks{hooks: []astypes.LifecycleHook{hook("other", terminatingTransition)}}
	p.lc, p.hookName = lc, "etcd-appliance-terminate"
	if err := p.Complete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"etcd-appliance-terminate"}; !reflect.DeepEqual(lc.completed, want) || lc.describes != 0 {
		t.Errorf("completed %v after %d describes; want %v without describing", lc.completed, lc.describes, want)
	}
}

func TestCompleteWithoutActionInProgressIsDone(t *testing.T) {
	p := fakeProvider(fakeASG{instances: inGroup}, ec2Pages())
	p.lc = &fakeHooks{
		hooks: []astypes.LifecycleHook{hook("timed-out", terminatingTransition), hook("broken", terminatingTransition)},
		err: map[string]error{
			"timed-out": &smithy.GenericAPIError{Code: "ValidationError", Message: "No active Lifecycle Action found with instance ID i-1"},
			"broken":    &smithy.GenericAPIError{Code: "InternalFailure", Message: "boom"},
		},
	}
	err := p.Complete(context.Background())
	if err == nil {
		t.Fatal("Complete succeeded although one hook failed")
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InternalFailure" {
		t.Errorf("Complete = %v; want only the broken hook's failure", err)
	}
}

// TestLaunchHooksApartFromTerminationHooks: the launch path completes the
// group's launch hooks only, with the result it is given, looking them up
// once; --lifecycle-hook names a termination hook and never restricts the
// launch hooks.
func TestLaunchHooksApartFromTerminationHooks(t *testing.T) {
	p := fakeProvider(fakeASG{instances: inGroup}, ec2Pages())
	lc := &fakeHooks{hooks: []astypes.LifecycleHook{
		hook("launch", launchingTransition),
		hook("drain", terminatingTransition),
		hook("warmup", launchingTransition),
	}}
	p.lc, p.hookName = lc, "drain"
	ctx := context.Background()
	if err := p.LaunchHeartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.CompleteLaunch(ctx, provider.LaunchAbandon); err != nil {
		t.Fatal(err)
	}
	if err := p.CompleteLaunch(ctx, provider.LaunchContinue); err != nil {
		t.Fatal(err)
	}
	if err := p.Complete(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []string{"launch", "warmup"}; !reflect.DeepEqual(lc.beats, want) {
		t.Errorf("launch heartbeats on %v, want %v", lc.beats, want)
	}
	if want := []string{"launch", "warmup", "launch", "warmup", "drain"}; !reflect.DeepEqual(lc.completed, want) {
		t.Errorf("completed %v, want %v", lc.completed, want)
	}
	if want := []string{"ABANDON", "ABANDON", "CONTINUE", "CONTINUE", "CONTINUE"}; !reflect.DeepEqual(lc.results, want) {
		t.Errorf("completed with %v, want %v", lc.results, want)
	}
	if lc.describes != 1 {
		t.Errorf("hooks described %d times, want once", lc.describes)
	}
}

// TestCompleteLaunchWithoutHookOrAction: a group without a launch hook, or
// an instance whose launch action is over (a restarted appliance), has
// nothing to complete.
func TestCompleteLaunchWithoutHookOrAction(t *testing.T) {
	p := fakeProvider(fakeASG{instances: inGroup}, ec2Pages())
	lc := &fakeHooks{hooks: []astypes.LifecycleHook{hook("drain", terminatingTransition)}}
	p.lc = lc
	if err := p.CompleteLaunch(context.Background(), provider.LaunchContinue); err != nil || len(lc.completed) != 0 {
		t.Errorf("CompleteLaunch without a launch hook = %v after completing %v; want nothing done", err, lc.completed)
	}

	p = fakeProvider(fakeASG{instances: inGroup}, ec2Pages())
	p.lc = &fakeHooks{
		hooks: []astypes.LifecycleHook{hook("launch", launchingTransition)},
		err: map[string]error{
			"launch": &smithy.GenericAPIError{Code: "ValidationError", Message: "No active Lifecycle Action found with instance ID i-1"},
		},
	}
	if err := p.CompleteLaunch(context.Background(), provider.LaunchContinue); err != nil {
		t.Errorf("CompleteLaunch without an action in progress = %v, want done", err)
	}
}

// TestTerminationHooksAddedAfterTheLaunch: the launch gate looks the hooks
// up early in the instance's life; a termination hook added later is still
// found when the instance drains.
func TestTerminationHooksAddedAfterTheLaunch(t *testing.T) {
	p := fakeProvider(fakeASG{instances: inGroup}, ec2Pages())
	lc := &fakeHooks{hooks: []astypes.LifecycleHook{hook("launch", launchingTransition)}}
	p.lc = lc
	ctx := context.Background()
	if err := p.CompleteLaunch(ctx, provider.LaunchContinue); err != nil {
		t.Fatal(err)
	}
	lc.hooks = append(lc.hooks, hook("drain", terminatingTransition))
	if err := p.Complete(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []string{"launch", "drain"}; !reflect.DeepEqual(lc.completed, want) {
		t.Errorf("completed %v, want %v", lc.completed, want)
	}
}
