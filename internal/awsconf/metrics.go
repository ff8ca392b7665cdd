package awsconf

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count the appliance's AWS requests; they answer §7's "AWS calls
// per hour".
type Metrics struct {
	requests *prometheus.CounterVec
}

// NewMetrics registers etcd_appliance_aws_requests_total with reg; nil
// registers nowhere. A registry that has it already, from another client of
// the appliance, counts both into one metric.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_appliance_aws_requests_total",
			Help: "AWS API requests, every retry counted, by API and outcome (ok, the AWS error code, timeout, network).",
		}, []string{"api", "code"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.requests); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("registering AWS metrics: %w", err)
		}
		existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
		if !ok {
			return nil, fmt.Errorf("registering AWS metrics: %w", err)
		}
		m.requests = existing
	}
	return m, nil
}

// countRequests adds a middleware that counts every attempt of every call.
// It sits in the deserialize step, inside the retry loop (finalize step) and
// outside the operation's deserializer, so it sees each attempt's outcome
// with its AWS error code.
func (m *Metrics) countRequests(stack *middleware.Stack) error {
	return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("EtcdApplianceRequestMetrics",
		func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (
			middleware.DeserializeOutput, middleware.Metadata, error,
		) {
			out, md, err := next.HandleDeserialize(ctx, in)
			m.requests.WithLabelValues(middleware.GetOperationName(ctx), errorCode(ctx, err)).Inc()
			return out, md, err
		}), middleware.Before)
}

// errorCode is the metric label of an attempt's outcome.
func errorCode(ctx context.Context, err error) string {
	if err == nil {
		return "ok"
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() != "" {
		return apiErr.ErrorCode()
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded ||
		(errors.As(err, &netErr) && netErr.Timeout()) {
		return "timeout"
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	var sendErr *smithyhttp.RequestSendError
	if errors.As(err, &sendErr) {
		return "network"
	}
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) && respErr.HTTPStatusCode() != 0 {
		return fmt.Sprintf("http_%d", respErr.HTTPStatusCode())
	}
	return "error"
}
