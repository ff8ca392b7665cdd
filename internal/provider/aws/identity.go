package aws

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// Metadata is what the instance metadata service tells about this instance.
type Metadata struct {
	InstanceID  string
	Region      string
	Zone        string
	PrivateIPv4 string
	// PublicIPv4 and PublicHostname are empty when the instance has none.
	PublicIPv4     string
	PublicHostname string
}

// Self is this instance as a group member: its private address (in
// multi-region mode its public name, see peerAddress), region and zone.
func (p *Provider) Self(ctx context.Context) (cluster.Instance, error) {
	m, err := p.Metadata(ctx)
	if err != nil {
		return cluster.Instance{}, err
	}
	self := cluster.Instance{
		ID:      m.InstanceID,
		Address: m.PrivateIPv4,
		State:   cluster.InstanceRunning,
		Region:  m.Region,
		Zone:    m.Zone,
	}
	if p.multi != nil && !p.multi.private {
		// Peers in other regions reach this instance by its public name;
		// it serves on its private IP (see peerAddress).
		self.Address = peerAddress(m.PublicHostname, m.PublicIPv4, m.PrivateIPv4)
		self.BindAddress, self.PublicIP = m.PrivateIPv4, m.PublicIPv4
	}
	return self, nil
}

// Metadata reads this instance's identity from IMDS (v2, with a session
// token) once and caches it: none of it changes while the process runs.
func (p *Provider) Metadata(ctx context.Context) (Metadata, error) {
	p.mu.Lock()
	cached := p.self
	p.mu.Unlock()
	if cached != nil {
		return *cached, nil
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var m Metadata
	required := []struct {
		path string
		v    *string
	}{
		{"instance-id", &m.InstanceID},
		{"placement/region", &m.Region},
		{"placement/availability-zone", &m.Zone},
		{"local-ipv4", &m.PrivateIPv4},
	}
	for _, r := range required {
		v, err := p.metadata(ctx, r.path)
		if err != nil {
			return Metadata{}, fmt.Errorf("reading instance metadata %s: %w", r.path, err)
		}
		if v == "" {
			return Metadata{}, fmt.Errorf("reading instance metadata %s: empty answer", r.path)
		}
		*r.v = v
	}
	if net.ParseIP(m.PrivateIPv4) == nil {
		return Metadata{}, fmt.Errorf("instance metadata local-ipv4 %q is not an IP address", m.PrivateIPv4)
	}
	// An instance without a public address answers 404 for these.
	optional := []struct {
		path string
		v    *string
	}{
		{"public-ipv4", &m.PublicIPv4},
		{"public-hostname", &m.PublicHostname},
	}
	for _, o := range optional {
		v, err := p.metadata(ctx, o.path)
		if err != nil && !isNotFound(err) {
			return Metadata{}, fmt.Errorf("reading instance metadata %s: %w", o.path, err)
		}
		*o.v = v
	}
	p.mu.Lock()
	p.self = &m
	p.mu.Unlock()
	p.log.Info("identified instance from IMDSv2", "instance", m.InstanceID, "region", m.Region, "zone", m.Zone,
		"address", m.PrivateIPv4, "public_address", m.PublicIPv4, "public_hostname", m.PublicHostname)
	return m, nil
}

func (p *Provider) metadata(ctx context.Context, path string) (string, error) {
	out, err := p.meta.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
	if err != nil {
		return "", err
	}
	defer out.Content.Close()
	b, err := io.ReadAll(io.LimitReader(out.Content, 64<<10))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func isNotFound(err error) bool {
	var se interface{ HTTPStatusCode() int }
	return errors.As(err, &se) && se.HTTPStatusCode() == http.StatusNotFound
}
