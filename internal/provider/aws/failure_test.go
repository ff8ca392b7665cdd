package aws_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-appliance/etcd-appliance/internal/provider"
	"github.com/etcd-appliance/etcd-appliance/internal/provider/aws"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// newTestProvider builds a provider for instance i-self against endpoint.
func newTestProvider(t *testing.T, endpoint string) (*aws.Provider, *prometheus.Registry) {
	t.Helper()
	testcluster.IsolateAWSEnv(t)
	imds := testcluster.StartIMDS(testcluster.InstanceMetadata{
		InstanceID: "i-self", Region: "us-east-1", Zone: "us-east-1a", PrivateIP: "127.0.1.4",
	})
	t.Cleanup(imds.Close)
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := aws.New(ctx, aws.Options{Endpoint: endpoint, IMDSEndpoint: imds.URL, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return p, reg
}

// TestUnreachableAWSIsUnknown: with nothing listening on the endpoint, the
// listing fails within a bounded time after its retries, as unknown.
func TestUnreachableAWSIsUnknown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	p, reg := newTestProvider(t, closed)

	start := time.Now()
	got, err := p.Instances(context.Background())
	elapsed := time.Since(start)
	if !errors.Is(err, provider.ErrGroupUnknown) || got != nil {
		t.Fatalf("Instances = %v, %v; want an error wrapping ErrGroupUnknown", got, err)
	}
	if elapsed > 10*time.Second {
		t.Errorf("Instances took %s to give up", elapsed)
	}
	if n := testcluster.AWSRequests(t, reg, "DescribeAutoScalingInstances", "network"); n != 5 {
		t.Errorf("counted %v failed attempts, want 5 (every retry counted)", n)
	}
	if name := p.Name(); name != "" {
		t.Errorf("Name() = %q without AWS", name)
	}
	t.Logf("gave up after %s: %v", elapsed, err)
}

// TestHangingAWSTimesOut: an endpoint that accepts requests and never
// answers costs no more than the caller's deadline.
func TestHangingAWSTimesOut(t *testing.T) {
	stop := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the body so that the server notices the client going away.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	defer hang.Close()
	defer close(stop)
	p, reg := newTestProvider(t, hang.URL)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	got, err := p.Instances(ctx)
	elapsed := time.Since(start)
	if !errors.Is(err, provider.ErrGroupUnknown) || got != nil {
		t.Fatalf("Instances = %v, %v; want an error wrapping ErrGroupUnknown", got, err)
	}
	if elapsed > 3*time.Second {
		t.Errorf("Instances took %s with a 1s deadline", elapsed)
	}
	if n := testcluster.AWSRequests(t, reg, "DescribeAutoScalingInstances", "timeout"); n != 1 {
		t.Errorf("counted %v timed-out attempts, want 1", n)
	}
}

// TestPersistent5xxIsUnknown: AWS answering 500 to every attempt is retried
// up to the attempt limit, then reported as unknown.
func TestPersistent5xxIsUnknown(t *testing.T) {
	// No backend: every request is answered by the fault.
	proxy := startFaultProxy(t, "http://127.0.0.1:1",
		testcluster.Fault{Status: http.StatusInternalServerError, Code: "InternalFailure"})
	p, reg := newTestProvider(t, proxy.URL)

	start := time.Now()
	got, err := p.Instances(context.Background())
	if !errors.Is(err, provider.ErrGroupUnknown) || got != nil {
		t.Fatalf("Instances = %v, %v; want an error wrapping ErrGroupUnknown", got, err)
	}
	if n := testcluster.AWSRequests(t, reg, "DescribeAutoScalingInstances", "InternalFailure"); n != 5 {
		t.Errorf("counted %v attempts answered InternalFailure, want 5", n)
	}
	if n := injected(proxy); n != 5 {
		t.Errorf("AWS saw %d attempts, want 5", n)
	}
	t.Logf("gave up after %s: %v", time.Since(start), err)
}
