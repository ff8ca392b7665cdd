package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// imdsCloseTimeout bounds how long Close waits for requests in flight.
const imdsCloseTimeout = 2 * time.Second

// InstanceMetadata is what an IMDS tells about its instance.
type InstanceMetadata struct {
	InstanceID string
	Region     string
	Zone       string
	PrivateIP  string
	// PublicIP and PublicHostname are optional; without them IMDS answers
	// 404, as for an instance without a public address.
	PublicIP       string
	PublicHostname string
	AccountID      string
	// TargetLifecycleState, when set, is the instance's
	// autoscaling/target-lifecycle-state: an instance of an Auto Scaling
	// group has one (see IMDS.Set).
	TargetLifecycleState string
}

// IMDS is the instance metadata service of one instance, as EC2 serves it
// with HttpTokens=required (IMDSv2 only): PUT /latest/api/token with a TTL
// header gives a token, and every GET under /latest/ must carry it in
// X-aws-ec2-metadata-token, or gets 401. moto has no per-instance metadata
// service, so an AWSGroup runs one of these per instance and points the
// instance's SDK at it with AWS_EC2_METADATA_SERVICE_ENDPOINT=URL.
type IMDS struct {
	// URL is the service's base URL.
	URL  string
	srv  *http.Server
	done chan struct{} // closed when Serve returned

	mu         sync.Mutex
	values     map[string]string // by path under /latest/
	tokens     map[string]bool
	tokenless  int // GETs without a valid token
	tokenCalls int
}

// StartIMDS serves the metadata of one instance on a free port of 127.0.0.1.
func StartIMDS(m InstanceMetadata) (*IMDS, error) { return startIMDSOn("127.0.0.1", m) }

// startIMDSOn serves the metadata of one instance on a free port of host.
func startIMDSOn(host string, m InstanceMetadata) (*IMDS, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("serving the metadata of %s: %w", m.InstanceID, err)
	}
	s := &IMDS{
		URL:    "http://" + ln.Addr().String(),
		done:   make(chan struct{}),
		values: map[string]string{},
		tokens: map[string]bool{},
	}
	set := func(path, v string) {
		if v != "" {
			s.values[path] = v
		}
	}
	set("meta-data/instance-id", m.InstanceID)
	set("meta-data/placement/region", m.Region)
	set("meta-data/placement/availability-zone", m.Zone)
	set("meta-data/local-ipv4", m.PrivateIP)
	set("meta-data/public-ipv4", m.PublicIP)
	set("meta-data/public-hostname", m.PublicHostname)
	set("meta-data/autoscaling/target-lifecycle-state", m.TargetLifecycleState)
	account := m.AccountID
	if account == "" {
		account = "123456789012"
	}
	doc, _ := json.Marshal(map[string]string{
		"instanceId":       m.InstanceID,
		"region":           m.Region,
		"availabilityZone": m.Zone,
		"privateIp":        m.PrivateIP,
		"accountId":        account,
	})
	set("dynamic/instance-identity/document", string(doc))
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		// Serve returns ErrServerClosed on Close, or an Accept error after
		// which the appliance's requests fail and it reports them.
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Set sets (or, with "", removes) the value at path under /latest/meta-data/,
// e.g. "autoscaling/target-lifecycle-state" to "Terminated".
func (s *IMDS) Set(path, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := "meta-data/" + strings.TrimPrefix(path, "/")
	if value == "" {
		delete(s.values, key)
		return
	}
	s.values[key] = value
}

// TokenlessRequests counts the metadata requests that came without a valid
// token: IMDSv1 requests, which a v2-only client never sends.
func (s *IMDS) TokenlessRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenless
}

// TokenRequests counts the token requests.
func (s *IMDS) TokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenCalls
}

// Close stops the service: it lets the requests in flight finish for a
// moment, then cuts them off, and returns once the service is down.
func (s *IMDS) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), imdsCloseTimeout)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	<-s.done
}

func (s *IMDS) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.URL.Path == "/latest/api/token" {
		s.tokenCalls++
		if r.Method != http.MethodPut {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		ttl, err := strconv.Atoi(r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
		if err != nil || ttl < 1 || ttl > 21600 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		token := hex.EncodeToString(b)
		s.tokens[token] = true
		w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", strconv.Itoa(ttl))
		_, _ = w.Write([]byte(token))
		return
	}
	if !s.tokens[r.Header.Get("X-aws-ec2-metadata-token")] {
		s.tokenless++
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	v, ok := s.values[strings.TrimPrefix(r.URL.Path, "/latest/")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write([]byte(v))
}
