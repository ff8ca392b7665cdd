package testcluster

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// IsolateAWSEnv gives the SDK of a test's own process dummy credentials and
// hides the machine's own AWS configuration, endpoints and region from it.
func IsolateAWSEnv(t testing.TB) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "no-such-file")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":                 "testing",
		"AWS_SECRET_ACCESS_KEY":             "testing",
		"AWS_SESSION_TOKEN":                 "",
		"AWS_PROFILE":                       "",
		"AWS_CONFIG_FILE":                   none,
		"AWS_SHARED_CREDENTIALS_FILE":       none,
		"AWS_REGION":                        "",
		"AWS_DEFAULT_REGION":                "",
		"AWS_ENDPOINT_URL":                  "",
		"AWS_ENDPOINT_URL_S3":               "",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT": "",
		"AWS_EC2_METADATA_DISABLED":         "",
		"AWS_MAX_ATTEMPTS":                  "",
		"AWS_RETRY_MODE":                    "",
	} {
		t.Setenv(k, v)
	}
}

// AWSRequests is the value of etcd_appliance_aws_requests_total{api, code}
// in reg: how many attempts of AWS calls to api the appliance's AWS clients
// saw answered with code (or "ok", "timeout", "network").
func AWSRequests(t testing.TB, reg prometheus.Gatherer, api, code string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "etcd_appliance_aws_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["api"] == api && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// MotoForTest starts a moto_server for a moto-backed test of what (as in
// "the S3 store tests"), stopped when t ends. Such tests run in the
// end-to-end tier and are skipped under -short; without moto they fail,
// for a missing emulator must not pass as a green run (SPEC §6).
func MotoForTest(t testing.TB, what string) *Moto {
	t.Helper()
	if testing.Short() {
		t.Skip("moto-backed test: runs in the end-to-end tier, not under -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, err := StartMoto(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("%s need moto_server (SPEC §6): %v", what, err)
	}
	t.Cleanup(m.Close)
	return m
}
