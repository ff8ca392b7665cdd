package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/miekg/dns"
)

// startFaithful puts the machines on the faithful network: the EC2
// endpoint that fills in the public addresses, each instance's namespace,
// and the security groups followed into every namespace.
func (g *AWSMulti) startFaithful(ctx context.Context) error {
	f := g.faithful
	var err error
	g.endpoint, err = startEC2Endpoint(f.service, g.moto.URL, &g.launchMu, func(id string) (string, string, bool) {
		h, ok := f.host(id)
		return h.public, h.name, ok
	})
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	g.ipPath = f.ip
	g.place = func(ctx context.Context, id string) (string, string, error) {
		h, err := f.setupHost(ctx, id)
		return h.ns, f.service, err
	}
	if err := g.syncSecurityGroups(ctx); err != nil {
		return err
	}
	sgctx, cancel := context.WithCancel(context.Background())
	g.stopSG, g.sgStopped = cancel, make(chan struct{})
	go g.followSecurityGroups(sgctx, g.sgStopped)
	return nil
}

// admitWithinGroup adds the rules the stack's template adds: the cluster's
// ports 2378-2381 open to the security group itself, which on AWS admits
// the group's instances by their private addresses (in their VPC), not by
// their public ones.
func (g *AWSMulti) admitWithinGroup(ctx context.Context, r *awsRegion) error {
	cctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	_, err := r.ec2.AuthorizeSecurityGroupIngress(cctx, &ec2.AuthorizeSecurityGroupIngressInput{
		GroupId: sdkaws.String(r.sg),
		IpPermissions: []ec2types.IpPermission{{
			IpProtocol: sdkaws.String("tcp"), FromPort: sdkaws.Int32(2378), ToPort: sdkaws.Int32(2381),
			UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: sdkaws.String(r.sg), Description: sdkaws.String("within the cluster")}},
		}},
	})
	if err != nil {
		return fmt.Errorf("fleet: opening %s to itself in %s: %w", r.sg, r.name, err)
	}
	return nil
}

// Faithful reports whether the group runs on the faithful network.
func (g *AWSMulti) Faithful() bool { return g.faithful != nil }

// PublicIP is an instance's public address on the faithful network, ""
// on loopback or for an instance the fleet never launched.
func (g *AWSMulti) PublicIP(id string) string {
	if g.faithful == nil {
		return ""
	}
	h, _ := g.faithful.host(id)
	return h.public
}

// PublicName is an instance's public DNS name on the faithful network.
func (g *AWSMulti) PublicName(id string) string {
	if g.faithful == nil {
		return ""
	}
	h, _ := g.faithful.host(id)
	return h.name
}

// Resolver is the address (host:53) of the faithful network's resolver,
// which answers a public name with the private address to askers of the
// name's region and with the public one elsewhere.
func (g *AWSMulti) Resolver() string {
	if g.faithful == nil {
		return ""
	}
	return g.faithful.service + ":53"
}

// SetInterRegionRTT changes the round trip that the public proxy adds
// between regions, for the connections opened from then on.
func (g *AWSMulti) SetInterRegionRTT(rtt time.Duration) error {
	if g.faithful == nil {
		return fmt.Errorf("fleet: delaying between regions: %w", ErrNotNetns)
	}
	g.faithful.proxy.oneWay.Store(int64(rtt / 2))
	g.log.Info("inter-region round trip set", "rtt", rtt)
	return nil
}

// IsolateRegion cuts region off the Internet (see publicProxy.isolate):
// its instances reach each other, and no one else reaches them, until
// HealRegion.
func (g *AWSMulti) IsolateRegion(region string) error {
	if g.faithful == nil {
		return fmt.Errorf("fleet: isolating %s: %w", region, ErrNotNetns)
	}
	if _, ok := g.regions[region]; !ok {
		return fmt.Errorf("fleet: %s is not a region of group %s", region, g.name)
	}
	g.faithful.proxy.isolate(region)
	return nil
}

// HealRegion ends the isolation of region.
func (g *AWSMulti) HealRegion(region string) {
	if g.faithful != nil {
		g.faithful.proxy.heal(region)
	}
}

// PublicConnections counts the connections the public proxy forwarded and
// those that the destination did not accept (its security group dropped
// them), by "from→to" region.
func (g *AWSMulti) PublicConnections() (forwarded, refused map[string]int) {
	if g.faithful == nil {
		return nil, nil
	}
	return g.faithful.proxy.counts()
}

// LookupFrom resolves name as instance id's machine does: with the
// faithful network's resolver, asked from the instance's namespace.
func (g *AWSMulti) LookupFrom(ctx context.Context, id, name string) ([]string, error) {
	inst := g.Instance(id)
	if g.faithful == nil || inst == nil || inst.Netns == "" {
		return nil, fmt.Errorf("fleet: resolving from %s: %w", id, ErrNotNetns)
	}
	// One query, on the namespace's thread: Go's own resolver would ask
	// from goroutines on other threads, in the root namespace.
	var addrs []string
	err := inNetns(inst.Netns, func() error {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeA)
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		in, _, err := c.ExchangeContext(ctx, q, g.Resolver())
		if err != nil {
			return err
		}
		if in.Rcode != dns.RcodeSuccess {
			return fmt.Errorf("answer %s", dns.RcodeToString[in.Rcode])
		}
		for _, rr := range in.Answer {
			if a, ok := rr.(*dns.A); ok {
				addrs = append(addrs, a.A.String())
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: resolving %s from %s: %w", name, id, err)
	}
	return addrs, nil
}

// DialFrom opens a TCP connection to address (host:port) from instance
// id's namespace and closes it: nil when the network, the security group
// and a listener let it through before ctx ends. To a public address it
// reaches the public proxy only, which accepts at once: what the
// destination's security group says shows in PublicConnections.
func (g *AWSMulti) DialFrom(ctx context.Context, id, address string) error {
	inst := g.Instance(id)
	if g.faithful == nil || inst == nil || inst.Netns == "" {
		return fmt.Errorf("fleet: dialing from %s: %w", id, ErrNotNetns)
	}
	err := inNetns(inst.Netns, func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", address)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		return fmt.Errorf("fleet: dialing %s from %s: %w", address, inst, err)
	}
	return nil
}

// GetFrom makes an HTTP GET of url from instance id's namespace, the
// url's host resolved as the instance resolves it (LookupFrom), and
// returns the status and the body: what a client on that machine gets.
func (g *AWSMulti) GetFrom(ctx context.Context, id, url string) (int, []byte, error) {
	inst := g.Instance(id)
	if g.faithful == nil || inst == nil || inst.Netns == "" {
		return 0, nil, fmt.Errorf("fleet: a GET from %s: %w", id, ErrNotNetns)
	}
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return nil, err
		}
		addrs := []string{host}
		if net.ParseIP(host) == nil {
			if addrs, err = g.LookupFrom(ctx, id, host); err != nil {
				return nil, err
			}
		}
		var errs []error
		for _, a := range addrs {
			var c net.Conn
			// The socket belongs to the namespace it was made in, whatever
			// thread uses it later.
			err := inNetns(inst.Netns, func() (err error) {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, net.JoinHostPort(a, port))
				return err
			})
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		}
		return nil, fmt.Errorf("dialing %s (%v): %w", address, addrs, errors.Join(errs...))
	}
	client := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("fleet: GET %s from %s: %w", url, inst, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}
