package fleet

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"
)

// ec2Endpoint is the appliances' AWS endpoint on the faithful network: a
// reverse proxy to moto on the service address, which the namespaces
// reach, that fills in what moto leaves out of EC2's DescribeInstances:
// the public DNS name and public address of each instance (moto gives an
// instance in a VPC of ours none).
type ec2Endpoint struct {
	URL  string
	srv  *http.Server
	done chan struct{}
}

// actionCtxKey carries a request's API action to ModifyResponse.
type actionCtxKey struct{}

// startEC2Endpoint serves the proxy on host (a free port) to moto,
// asking public for the public address and name of an instance id.
func startEC2Endpoint(host, moto string, gate *sync.RWMutex, public func(id string) (ip, name string, ok bool)) (*ec2Endpoint, error) {
	u, err := url.Parse(moto)
	if err != nil {
		return nil, fmt.Errorf("moto's URL %q: %w", moto, err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("the EC2 endpoint on %s: %w", host, err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		if a, _ := resp.Request.Context().Value(actionCtxKey{}).(string); a != "DescribeInstances" ||
			resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "" {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("reading moto's DescribeInstances: %w", err)
		}
		body = fillPublicAddresses(body, public)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	e := &ec2Endpoint{URL: "http://" + ln.Addr().String(), done: make(chan struct{})}
	e.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		action := ""
		if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" {
			b, err := io.ReadAll(r.Body)
			r.Body.Close()
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
			if form, err := url.ParseQuery(string(b)); err == nil {
				action = form.Get("Action")
			}
		}
		if action == "DescribeInstances" {
			gate.RLock()
			defer gate.RUnlock()
		}
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), actionCtxKey{}, action)))
	})}
	go func() {
		defer close(e.done)
		_ = e.srv.Serve(ln)
	}()
	return e, nil
}

func (e *ec2Endpoint) close() {
	ctx, cancel := context.WithTimeout(context.Background(), imdsCloseTimeout)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		e.srv.Close()
	}
	<-e.done
}

var (
	// instanceIDElement is an instance's id in EC2's XML; the instance's
	// own elements are its siblings.
	instanceIDElement = regexp.MustCompile(`<instanceId>([^<]*)</instanceId>`)
	// publicElements are an instance's public name and address in EC2's
	// XML (the network interfaces say publicDnsName and publicIp).
	publicElements = regexp.MustCompile(`<dnsName>[^<]*</dnsName>|<dnsName/>|<ipAddress>[^<]*</ipAddress>|<ipAddress/>`)
)

// fillPublicAddresses gives the instances of a DescribeInstances answer
// that public knows their public name and address, and takes moto's own
// (none, or made up) from the others: the element order does not matter
// to the SDK's decoder.
func fillPublicAddresses(body []byte, public func(id string) (ip, name string, ok bool)) []byte {
	body = publicElements.ReplaceAll(body, nil)
	return instanceIDElement.ReplaceAllFunc(body, func(m []byte) []byte {
		id := string(instanceIDElement.FindSubmatch(m)[1])
		ip, name, ok := public(id)
		if !ok {
			return m
		}
		// m is a window on body: appending to it in place would write over
		// the elements that follow.
		return fmt.Appendf(slices.Clip(m), "<dnsName>%s</dnsName><ipAddress>%s</ipAddress>", name, ip)
	})
}
