package awsconf

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
)

// TestLoadSetsRegionEndpointAndRetries: what the provider and the snapshot
// store rely on, with no AWS to ask.
func TestLoadSetsRegionEndpointAndRetries(t *testing.T) {
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_ENDPOINT_URL", "")
	cfg, err := Load(context.Background(), Options{Region: "eu-west-1", Endpoint: "http://127.0.0.1:5000"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != "eu-west-1" {
		t.Errorf("Region = %q, want eu-west-1", cfg.Region)
	}
	if cfg.BaseEndpoint == nil || *cfg.BaseEndpoint != "http://127.0.0.1:5000" {
		t.Errorf("BaseEndpoint = %v, want http://127.0.0.1:5000", cfg.BaseEndpoint)
	}
	r := cfg.Retryer()
	if _, ok := r.(*retry.Standard); !ok {
		t.Errorf("Retryer = %T, want the SDK's standard one", r)
	}
	if n := r.MaxAttempts(); n != maxAttempts {
		t.Errorf("MaxAttempts = %d, want %d", n, maxAttempts)
	}
}
