package testcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault is what a FaultProxy does to the requests it matches instead of
// forwarding them at once: hold them for Delay, then answer with an AWS
// error (Status and Code) or, with Status 0, forward them late.
type Fault struct {
	// Service is the SigV4 signing name of the service ("ec2",
	// "autoscaling", "route53"); "" matches every service.
	Service string
	// Action is the API action ("DescribeInstances"); "" matches every
	// action of Service.
	Action string
	// Status is the HTTP status of the error answer; 0 forwards the
	// request (after Delay) instead.
	Status int
	// Code is the AWS error code of the answer, e.g. "Throttling".
	Code string
	// Delay holds each matching request this long first.
	Delay time.Duration
	// Rate is the share of matching requests the fault hits, drawn at
	// random per request: 0.8 fails four in five. 0 (or ≥ 1) hits all.
	Rate float64
	// Times ends the fault after it hit that many requests; 0 never does.
	Times int
	// Body, with a 2xx Status, is the answer itself: the harness plays an
	// API that moto lacks (see Answer).
	Body string
	// Observe, when set, is called with the parameters of each request the
	// fault hits (the form of a query-protocol request), before the answer:
	// the test sees the call at the moment the API would, while its caller
	// waits.
	Observe func(params url.Values)
}

// Answer is a successful answer of a service's query API to an action,
// with an empty result: what AWS says to an action that returns nothing.
// The harness plays with it the APIs moto does not serve, such as
// CompleteLifecycleAction (moto 5.2 answers it with 500).
func Answer(service, action string) Fault {
	body := fmt.Sprintf(`<%[1]sResponse xmlns="http://%[2]s.amazonaws.com/doc/"><%[1]sResult/><ResponseMetadata><RequestId>testcluster</RequestId></ResponseMetadata></%[1]sResponse>`,
		action, service)
	return Fault{Service: service, Action: action, Status: http.StatusOK, Body: body}
}

// Throttle is the throttling answer of a service to an action ("" for
// every action): EC2 says RequestLimitExceeded with 503, the query and
// REST/XML services (Auto Scaling, Route53) Throttling with 400, as AWS
// does. The SDK's retryer backs off on both.
func Throttle(service, action string) Fault {
	if service == "ec2" {
		return Fault{Service: service, Action: action, Status: http.StatusServiceUnavailable, Code: "RequestLimitExceeded"}
	}
	return Fault{Service: service, Action: action, Status: http.StatusBadRequest, Code: "Throttling"}
}

// ServerError is a 500 answer of a service to an action ("" for every
// action): InternalError from EC2, InternalFailure from the others.
func ServerError(service, action string) Fault {
	if service == "ec2" {
		return Fault{Service: service, Action: action, Status: http.StatusInternalServerError, Code: "InternalError"}
	}
	return Fault{Service: service, Action: action, Status: http.StatusInternalServerError, Code: "InternalFailure"}
}

// injection is a Fault in force, with the count of requests it hit.
type injection struct {
	Fault
	hits int
}

// FaultProxy stands between AWS clients (the appliances' SDK) and moto: it
// forwards every request to moto, except those that a Fault injected with
// Inject matches, which it delays or answers with an error in the
// service's own error format (SPEC §6: throttling and 5xx from AWS). It
// counts every request by API action, faulted or not, so that tests and
// benchmarks read how often each API was called.
//
// The action is read from the request as the SDK sends it: the Action
// parameter of the query protocols (EC2, Auto Scaling, STS: in the form
// body), X-Amz-Target of the JSON protocols, and the method and path of
// Route53's REST API. The service is the signing name in the SigV4
// Authorization header.
type FaultProxy struct {
	// URL is the proxy's base URL: give it to the clients as their AWS
	// endpoint (AWS_ENDPOINT_URL).
	URL string

	srv     *httptest.Server
	backend *httputil.ReverseProxy

	mu       sync.Mutex
	faults   []*injection
	calls    map[string]int // by action
	injected map[string]int // by action
	// lifecycle is the lifecycle state that Auto Scaling's listings say
	// for an instance instead of moto's, by instance id (see
	// SetLifecycleState).
	lifecycle map[string]string
}

// StartFaultProxy serves a proxy to backend (moto's URL) on a free port of
// 127.0.0.1. Close stops it.
func StartFaultProxy(backend string) (*FaultProxy, error) {
	u, err := url.Parse(backend)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("testcluster: fault proxy backend %q is no URL", backend)
	}
	p := &FaultProxy{
		backend:   httputil.NewSingleHostReverseProxy(u),
		calls:     map[string]int{},
		injected:  map[string]int{},
		lifecycle: map[string]string{},
	}
	p.backend.ModifyResponse = p.rewriteLifecycle
	p.srv = httptest.NewServer(p)
	p.URL = p.srv.URL
	return p, nil
}

// Inject puts f in force until lift is called (or Clear, or f.Times hits).
// Of several faults that would hit a request, the one injected first does.
func (p *FaultProxy) Inject(f Fault) (lift func()) {
	in := &injection{Fault: f}
	p.mu.Lock()
	p.faults = append(p.faults, in)
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for k, x := range p.faults {
			if x == in {
				p.faults = append(p.faults[:k], p.faults[k+1:]...)
				return
			}
		}
	}
}

// Clear lifts every fault.
func (p *FaultProxy) Clear() {
	p.mu.Lock()
	p.faults = nil
	p.mu.Unlock()
}

// Calls returns how many requests each action got, faulted ones included,
// since the start or the last ResetCounts. Each attempt of a retried call
// counts.
func (p *FaultProxy) Calls() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.calls)
}

// Injected returns how many requests of each action a fault hit.
func (p *FaultProxy) Injected() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.injected)
}

// ResetCounts zeroes Calls and Injected.
func (p *FaultProxy) ResetCounts() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = map[string]int{}
	p.injected = map[string]int{}
}

// SetLifecycleState makes Auto Scaling's listings of instances
// (DescribeAutoScalingGroups, DescribeAutoScalingInstances) that pass the
// proxy say state as the lifecycle state of instance id, whatever moto
// says, until ClearLifecycleState. The harness plays with it a state that
// moto never shows: Terminating:Wait, where a termination lifecycle hook
// holds an instance that the group is terminating (moto terminates at
// once). Once moto drops the instance from its listings, there is nothing
// left to rewrite.
func (p *FaultProxy) SetLifecycleState(id, state string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lifecycle[id] = state
}

// ClearLifecycleState lets moto's own lifecycle state of instance id
// through again.
func (p *FaultProxy) ClearLifecycleState(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.lifecycle, id)
}

// actionKey is the context key under which ServeHTTP hands the request's
// action to the backend's ModifyResponse.
type actionKey struct{}

// rewriteLifecycle puts the states of SetLifecycleState into moto's
// answers to the Auto Scaling listings.
func (p *FaultProxy) rewriteLifecycle(resp *http.Response) error {
	action, _ := resp.Request.Context().Value(actionKey{}).(string)
	if action != "DescribeAutoScalingGroups" && action != "DescribeAutoScalingInstances" {
		return nil
	}
	p.mu.Lock()
	states := maps.Clone(p.lifecycle)
	p.mu.Unlock()
	if len(states) == 0 || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "" {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("reading moto's answer to %s: %w", action, err)
	}
	body = rewriteLifecycleStates(body, states)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// lifecycleElement is the lifecycle state of an instance in the XML of
// the Auto Scaling listings.
var lifecycleElement = regexp.MustCompile(`<LifecycleState>[^<]*</LifecycleState>`)

// rewriteLifecycleStates sets the lifecycle state of the instances of
// states in an Auto Scaling listing: each instance is a <member> element
// that holds its <InstanceId> and its <LifecycleState>, and no element of
// its own is a list (so its first </member> closes it).
func rewriteLifecycleStates(body []byte, states map[string]string) []byte {
	const end = "</member>"
	var out bytes.Buffer
	for rest := body; len(rest) > 0; {
		k := bytes.Index(rest, []byte(end))
		if k < 0 {
			out.Write(rest)
			break
		}
		chunk := rest[:k+len(end)]
		rest = rest[k+len(end):]
		for id, state := range states {
			if bytes.Contains(chunk, []byte("<InstanceId>"+id+"</InstanceId>")) {
				var b strings.Builder
				_ = xml.EscapeText(&b, []byte(state))
				chunk = lifecycleElement.ReplaceAllLiteral(chunk, []byte("<LifecycleState>"+b.String()+"</LifecycleState>"))
				break
			}
		}
		out.Write(chunk)
	}
	return out.Bytes()
}

// Close stops the proxy; requests in flight are cut off.
func (p *FaultProxy) Close() {
	p.srv.CloseClientConnections()
	p.srv.Close()
}

func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	service := signingService(r.Header.Get("Authorization"))
	action, params, err := requestAction(service, r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f := p.match(service, action)
	if f != nil && f.Observe != nil {
		f.Observe(params)
	}
	if f != nil && f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	if f == nil || f.Status == 0 {
		p.backend.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), actionKey{}, action)))
		return
	}
	if f.Status >= 200 && f.Status < 300 {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(f.Status)
		_, _ = io.WriteString(w, f.Body)
		return
	}
	writeAWSError(w, service, r.Header.Get("X-Amz-Target") != "", f.Status, f.Code)
}

// match counts the request and returns the fault that hits it, if any.
func (p *FaultProxy) match(service, action string) *Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[action]++
	for k, in := range p.faults {
		if (in.Service != "" && in.Service != service) || (in.Action != "" && in.Action != action) {
			continue
		}
		if in.Rate > 0 && in.Rate < 1 && rand.Float64() >= in.Rate {
			continue
		}
		in.hits++
		if in.Times > 0 && in.hits >= in.Times {
			p.faults = append(p.faults[:k], p.faults[k+1:]...)
		}
		if in.Status != 0 {
			p.injected[action]++
		}
		f := in.Fault
		return &f
	}
	return nil
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

// route53Actions map Route53's REST paths to the API actions, the most
// specific first.
var route53Actions = []struct {
	method string
	path   *regexp.Regexp
	action string
}{
	{http.MethodGet, regexp.MustCompile(`^/[0-9-]+/hostedzonesbyname$`), "ListHostedZonesByName"},
	{http.MethodGet, regexp.MustCompile(`^/[0-9-]+/hostedzone/[^/]+/rrset/?$`), "ListResourceRecordSets"},
	{http.MethodPost, regexp.MustCompile(`^/[0-9-]+/hostedzone/[^/]+/rrset/?$`), "ChangeResourceRecordSets"},
	{http.MethodGet, regexp.MustCompile(`^/[0-9-]+/hostedzone/[^/]+$`), "GetHostedZone"},
	{http.MethodDelete, regexp.MustCompile(`^/[0-9-]+/hostedzone/[^/]+$`), "DeleteHostedZone"},
	{http.MethodGet, regexp.MustCompile(`^/[0-9-]+/hostedzone/?$`), "ListHostedZones"},
	{http.MethodPost, regexp.MustCompile(`^/[0-9-]+/hostedzone/?$`), "CreateHostedZone"},
	{http.MethodGet, regexp.MustCompile(`^/[0-9-]+/change/[^/]+$`), "GetChange"},
}

// requestAction names the API action of a request, with its parameters
// when it has a query or form (the query protocols). The form body of a
// query-protocol request is read and put back for the backend.
func requestAction(service string, r *http.Request) (string, url.Values, error) {
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		_, action, _ := strings.Cut(target, ".")
		return action, nil, nil
	}
	if q := r.URL.Query(); q.Get("Action") != "" {
		return q.Get("Action"), q, nil
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" {
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return "", nil, fmt.Errorf("reading the request: %w", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, err := url.ParseQuery(string(body))
		if err == nil && form.Get("Action") != "" {
			return form.Get("Action"), form, nil
		}
	}
	if service == "route53" || strings.HasPrefix(r.URL.Path, "/2013-04-01/") {
		for _, a := range route53Actions {
			if r.Method == a.method && a.path.MatchString(r.URL.Path) {
				return a.action, nil, nil
			}
		}
	}
	if service == "" {
		service = "unknown"
	}
	return service + " " + r.Method + " " + r.URL.Path, nil, nil
}

// writeAWSError answers in the error format of the service's protocol:
// EC2's own XML, JSON for the JSON protocols, and the ErrorResponse XML of
// the query and REST/XML protocols (Auto Scaling, Route53).
func writeAWSError(w http.ResponseWriter, service string, jsonProtocol bool, status int, code string) {
	const message = "injected by the test's fault proxy"
	requestID := fmt.Sprintf("fault-%08x", rand.Uint32())
	w.Header().Set("X-Amzn-RequestId", requestID)
	errType := "Sender"
	if status >= 500 {
		errType = "Receiver"
	}
	if jsonProtocol {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.Header().Set("X-Amzn-ErrorType", code)
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": message})
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	esc := func(s string) string {
		var b strings.Builder
		_ = xml.EscapeText(&b, []byte(s))
		return b.String()
	}
	if service == "ec2" {
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`,
			esc(code), message, requestID)
		return
	}
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<ErrorResponse><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`,
		errType, esc(code), message, requestID)
}
