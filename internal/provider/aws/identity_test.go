package aws_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider/aws"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

func TestSelfFromIMDSv2(t *testing.T) {
	testcluster.IsolateAWSEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := testcluster.StartIMDS(testcluster.InstanceMetadata{
		InstanceID: "i-0123456789abcdef0", Region: "eu-central-1", Zone: "eu-central-1b", PrivateIP: "10.1.2.3",
		PublicIP: "3.120.1.2", PublicHostname: "ec2-3-120-1-2.eu-central-1.compute.amazonaws.com",
	})
	defer srv.Close()

	p, err := aws.New(ctx, aws.Options{IMDSEndpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if p.Region() != "eu-central-1" {
		t.Errorf("Region() = %q, want the region from IMDS", p.Region())
	}
	self, err := p.Self(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := cluster.Instance{ID: "i-0123456789abcdef0", Address: "10.1.2.3", State: cluster.InstanceRunning,
		Region: "eu-central-1", Zone: "eu-central-1b"}
	if self != want {
		t.Errorf("Self() = %+v, want %+v", self, want)
	}
	m, err := p.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.PublicIPv4 != "3.120.1.2" || m.PublicHostname != "ec2-3-120-1-2.eu-central-1.compute.amazonaws.com" {
		t.Errorf("Metadata() public address = %q %q", m.PublicIPv4, m.PublicHostname)
	}
	if n := srv.TokenlessRequests(); n != 0 {
		t.Errorf("IMDS saw %d requests without a token", n)
	}
	if n := srv.TokenRequests(); n < 1 {
		t.Errorf("IMDS saw no token request")
	}
}

// TestSelfWithoutPublicAddress: an instance without a public address gets 404
// for public-ipv4 and public-hostname; that is no error. The endpoint comes
// from the standard environment variable here.
func TestSelfWithoutPublicAddress(t *testing.T) {
	testcluster.IsolateAWSEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := testcluster.StartIMDS(testcluster.InstanceMetadata{
		InstanceID: "i-1", Region: "us-east-1", Zone: "us-east-1a", PrivateIP: "127.0.1.4",
	})
	defer srv.Close()
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.URL)

	p, err := aws.New(ctx, aws.Options{Region: "us-west-2"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Region() != "us-west-2" {
		t.Errorf("Region() = %q, want the one from Options", p.Region())
	}
	m, err := p.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.InstanceID != "i-1" || m.PrivateIPv4 != "127.0.1.4" || m.PublicIPv4 != "" || m.PublicHostname != "" {
		t.Errorf("Metadata() = %+v", m)
	}
}

func TestFakeIMDSRejectsRequestsWithoutToken(t *testing.T) {
	srv := testcluster.StartIMDS(testcluster.InstanceMetadata{InstanceID: "i-1"})
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/latest/meta-data/instance-id")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET without token: %s, want 401", resp.Status)
	}
}

// TestSelfNeverFallsBackToIMDSv1: when the token request fails, the provider
// fails, and it never asks for metadata without a token (which an IMDSv1
// service would answer).
func TestSelfNeverFallsBackToIMDSv1(t *testing.T) {
	for _, status := range []int{http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			testcluster.IsolateAWSEnv(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var tokenless atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/latest/api/token" {
					w.WriteHeader(status)
					return
				}
				// An IMDSv1 service answers without a token.
				tokenless.Add(1)
				_, _ = w.Write([]byte("i-v1"))
			}))
			defer srv.Close()

			if _, err := aws.New(ctx, aws.Options{IMDSEndpoint: srv.URL}); err == nil {
				t.Error("New found a region without an IMDSv2 token")
			}
			p, err := aws.New(ctx, aws.Options{IMDSEndpoint: srv.URL, Region: "us-east-1"})
			if err != nil {
				t.Fatal(err)
			}
			if self, err := p.Self(ctx); err == nil {
				t.Errorf("Self() = %+v without an IMDSv2 token", self)
			}
			if n := tokenless.Load(); n != 0 {
				t.Errorf("the provider sent %d metadata requests without a token (IMDSv1 fallback)", n)
			}
		})
	}
}
