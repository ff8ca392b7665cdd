package testcluster

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/route53"
)

// apiError is smithy.APIError's code, the part the test reads.
type apiError interface {
	error
	ErrorCode() string
}

// fakeAWS answers every DescribeAutoScalingGroups with an empty group list
// and remembers the Action of each form it got, to prove the proxy hands
// the body on untouched.
type fakeAWS struct {
	mu      sync.Mutex
	actions []string
}

func (f *fakeAWS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	f.mu.Lock()
	f.actions = append(f.actions, form.Get("Action"))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml")
	_, _ = io.WriteString(w, `<DescribeAutoScalingGroupsResponse><DescribeAutoScalingGroupsResult><AutoScalingGroups/></DescribeAutoScalingGroupsResult></DescribeAutoScalingGroupsResponse>`)
}

func TestFaultProxy(t *testing.T) {
	backend := &fakeAWS{}
	srv := httptest.NewServer(backend)
	defer srv.Close()
	p, err := StartFaultProxy(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cfg := sdkaws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: sdkaws.String(p.URL),
	}
	once := func(o *ec2.Options) { o.RetryMaxAttempts = 1 }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Throttled twice, then forwarded: the SDK's retries get through.
	throttle := Throttle("autoscaling", "DescribeAutoScalingGroups")
	throttle.Times = 2
	p.Inject(throttle)
	asg := autoscaling.NewFromConfig(cfg, func(o *autoscaling.Options) { o.RetryMaxAttempts = 3 })
	if _, err := asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{}); err != nil {
		t.Fatalf("DescribeAutoScalingGroups after 2 throttles: %v", err)
	}
	if c, i := p.Calls()["DescribeAutoScalingGroups"], p.Injected()["DescribeAutoScalingGroups"]; c != 3 || i != 2 {
		t.Errorf("DescribeAutoScalingGroups: %d calls, %d faulted; want 3 and 2", c, i)
	}
	if len(backend.actions) != 1 || backend.actions[0] != "DescribeAutoScalingGroups" {
		t.Errorf("moto got actions %q, want the one call that got through with its form intact", backend.actions)
	}

	// Each service's error format, as its SDK client reads it.
	p.Inject(ServerError("ec2", "DescribeInstances"))
	_, err = ec2.NewFromConfig(cfg, once).DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
	assertAPIError(t, err, "InternalError")
	p.Inject(Throttle("ec2", "DescribeInstances"))
	p.Inject(Throttle("route53", ""))
	_, err = route53.NewFromConfig(cfg, func(o *route53.Options) { o.RetryMaxAttempts = 1 }).
		ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: sdkaws.String("Z1")})
	assertAPIError(t, err, "Throttling")
	if n := p.Calls()["ListResourceRecordSets"]; n != 1 {
		t.Errorf("ListResourceRecordSets counted %d times, want 1: %v", n, p.Calls())
	}

	p.Clear()
	_, err = ec2.NewFromConfig(cfg, once).DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
	var apiErr apiError
	if errors.As(err, &apiErr) {
		t.Errorf("DescribeInstances after Clear: %v, want it forwarded", err)
	}
	if n := p.Calls()["DescribeInstances"]; n != 2 {
		t.Errorf("DescribeInstances counted %d times, want 2", n)
	}
}

func assertAPIError(t *testing.T, err error, code string) {
	t.Helper()
	var apiErr apiError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != code {
		t.Errorf("got %v, want an AWS error %s", err, code)
	}
}

// TestFaultProxyAnswerObserves: an Answer plays an API moto lacks, and its
// Observe sees each call's parameters before the caller gets the answer.
func TestFaultProxyAnswerObserves(t *testing.T) {
	backend := &fakeAWS{}
	srv := httptest.NewServer(backend)
	defer srv.Close()
	p, err := StartFaultProxy(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var seen []url.Values
	answer := Answer("autoscaling", "CompleteLifecycleAction")
	answer.Observe = func(params url.Values) { seen = append(seen, params) }
	p.Inject(answer)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	asg := autoscaling.NewFromConfig(sdkaws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: sdkaws.String(p.URL),
	})
	_, err = asg.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName:  sdkaws.String("g"),
		LifecycleHookName:     sdkaws.String("launch"),
		InstanceId:            sdkaws.String("i-1"),
		LifecycleActionResult: sdkaws.String("ABANDON"),
	})
	if err != nil {
		t.Fatalf("CompleteLifecycleAction through the answer: %v", err)
	}
	if len(seen) != 1 || seen[0].Get("InstanceId") != "i-1" || seen[0].Get("LifecycleActionResult") != "ABANDON" ||
		seen[0].Get("LifecycleHookName") != "launch" {
		t.Errorf("observed %v, want the one call's parameters", seen)
	}
	if len(backend.actions) != 0 {
		t.Errorf("moto got %v, want nothing: the proxy answered", backend.actions)
	}
}

// groupListing answers DescribeAutoScalingGroups with a group of two
// instances InService, in the layout of moto's answer: lists of tags and
// zones around the instances, each instance a <member> with its launch
// template.
type groupListing struct{}

func (groupListing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	member := func(id string) string {
		return `<member><InstanceId>` + id + `</InstanceId><InstanceType>t3.micro</InstanceType><AvailabilityZone>us-east-1a</AvailabilityZone>` +
			`<LifecycleState>InService</LifecycleState><HealthStatus>Healthy</HealthStatus>` +
			`<LaunchTemplate><LaunchTemplateId>lt-1</LaunchTemplateId><Version>1</Version></LaunchTemplate>` +
			`<ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>`
	}
	w.Header().Set("Content-Type", "text/xml")
	_, _ = io.WriteString(w, `<DescribeAutoScalingGroupsResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><DescribeAutoScalingGroupsResult><AutoScalingGroups><member>`+
		`<AutoScalingGroupName>g</AutoScalingGroupName><AvailabilityZones><member>us-east-1a</member></AvailabilityZones>`+
		`<Instances>`+member("i-1")+member("i-2")+`</Instances>`+
		`<Tags><member><Key>k</Key><Value>v</Value><ResourceId>g</ResourceId></member></Tags>`+
		`</member></AutoScalingGroups></DescribeAutoScalingGroupsResult></DescribeAutoScalingGroupsResponse>`)
}

// TestFaultProxyLifecycleState: the proxy makes Auto Scaling's listing say
// the lifecycle state the harness plays for one instance, leaves the
// others as moto says, and lets moto's through again once cleared.
func TestFaultProxyLifecycleState(t *testing.T) {
	srv := httptest.NewServer(groupListing{})
	defer srv.Close()
	p, err := StartFaultProxy(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	asg := autoscaling.NewFromConfig(sdkaws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: sdkaws.String(p.URL),
	})
	states := func() map[string]string {
		t.Helper()
		out, err := asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, g := range out.AutoScalingGroups {
			for _, i := range g.Instances {
				got[sdkaws.ToString(i.InstanceId)] = string(i.LifecycleState)
			}
			if n := len(g.Tags); n != 1 {
				t.Errorf("the group has %d tags after the rewrite, want 1", n)
			}
		}
		return got
	}

	p.SetLifecycleState("i-2", "Terminating:Wait")
	if got := states(); got["i-1"] != "InService" || got["i-2"] != "Terminating:Wait" || len(got) != 2 {
		t.Errorf("with i-2 terminating the listing says %v", got)
	}
	p.ClearLifecycleState("i-2")
	if got := states(); got["i-1"] != "InService" || got["i-2"] != "InService" {
		t.Errorf("once cleared the listing says %v, want moto's own", got)
	}
}
