package awsconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"
)

func TestErrorCode(t *testing.T) {
	deadline, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-deadline.Done()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want string
	}{
		{"success", context.Background(), nil, "ok"},
		{"api error", context.Background(), &smithy.OperationError{Err: &smithy.GenericAPIError{Code: "Throttling"}}, "Throttling"},
		{"deadline", context.Background(), fmt.Errorf("x: %w", context.DeadlineExceeded), "timeout"},
		{"context expired", deadline, errors.New("request canceled"), "timeout"},
		{"net timeout", context.Background(), &net.OpError{Op: "dial", Err: timeoutErr{}}, "timeout"},
		{"canceled", context.Background(), fmt.Errorf("x: %w", context.Canceled), "canceled"},
		{"bare 5xx", context.Background(), &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 503}}, Err: errors.New("x")}, "http_503"},
		{"refused", context.Background(), &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{}},
			Err: &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}}, "network"},
		{"other", context.Background(), errors.New("serializing"), "error"},
	} {
		if got := errorCode(tc.ctx, tc.err); got != tc.want {
			t.Errorf("%s: errorCode = %q, want %q", tc.name, got, tc.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestMetricsShareARegistry: the provider and the snapshot store register
// the metric on one registry; the second counts into the first's.
func TestMetricsShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewMetrics(reg)
	if err != nil {
		t.Fatalf("second NewMetrics on one registry: %v", err)
	}
	if a.requests != b.requests {
		t.Error("the second NewMetrics counts into a counter of its own")
	}
}
