package aws_test

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// isolateAWSEnv gives the SDK dummy credentials and hides the machine's own
// AWS configuration, endpoints and region from the test.
func isolateAWSEnv(t *testing.T) {
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
		"AWS_EC2_METADATA_SERVICE_ENDPOINT": "",
		"AWS_EC2_METADATA_DISABLED":         "",
		"AWS_MAX_ATTEMPTS":                  "",
		"AWS_RETRY_MODE":                    "",
	} {
		t.Setenv(k, v)
	}
}

// requests is the value of etcd_appliance_aws_requests_total{api, code}.
func requests(t *testing.T, reg *prometheus.Registry, api, code string) float64 {
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

// fault is one injected AWS error answer.
type fault struct {
	status int
	code   string
}

// faultProxy stands in front of an AWS endpoint (moto) and answers the first
// requests of each service with the injected faults, in the XML error format
// of the service's query protocol, before it forwards to the backend. With
// always set it answers every request with that fault.
type faultProxy struct {
	backend *httputil.ReverseProxy

	mu       sync.Mutex
	faults   map[string][]fault // by the service's signing name: autoscaling, ec2
	always   *fault
	injected int
}

func newFaultProxy(t *testing.T, backend string, faults map[string][]fault) *faultProxy {
	t.Helper()
	p := &faultProxy{faults: faults}
	if backend != "" {
		u, err := url.Parse(backend)
		if err != nil {
			t.Fatal(err)
		}
		p.backend = httputil.NewSingleHostReverseProxy(u)
	}
	return p
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	service := signingService(r.Header.Get("Authorization"))
	p.mu.Lock()
	var f *fault
	switch {
	case p.always != nil:
		f = p.always
	case len(p.faults[service]) > 0:
		f = &p.faults[service][0]
		p.faults[service] = p.faults[service][1:]
	}
	if f != nil {
		p.injected++
	}
	p.mu.Unlock()
	if f == nil {
		if p.backend == nil {
			http.Error(w, "no backend", http.StatusBadGateway)
			return
		}
		p.backend.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(f.status)
	if service == "ec2" {
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>injected by the test</Message></Error></Errors><RequestID>fault</RequestID></Response>`, f.code)
		return
	}
	fmt.Fprintf(w, `<ErrorResponse xmlns="https://autoscaling.amazonaws.com/doc/2011-01-01/">
<Error><Type>Sender</Type><Code>%s</Code><Message>injected by the test</Message></Error><RequestId>fault</RequestId></ErrorResponse>`, f.code)
}

func (p *faultProxy) injectedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.injected
}

// signingService reads the service from a SigV4 Authorization header:
// Credential=AKID/DATE/REGION/SERVICE/aws4_request.
func signingService(auth string) string {
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return ""
	}
	parts := strings.Split(cred, "/")
	if len(parts) < 4 {
		return ""
	}
	return parts[3]
}
