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
)

// fakeHooks is the lifecycle part of Auto Scaling, recording the calls.
type fakeHooks struct {
	hooks     []astypes.LifecycleHook
	describes int
	completed []string // hook names, in call order
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
	if aws.ToString(in.InstanceId) != "i-1" || aws.ToString(in.LifecycleActionResult) != "CONTINUE" {
		return nil, errors.New("wrong input")
	}
	f.completed = append(f.completed, aws.ToString(in.LifecycleHookName))
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
