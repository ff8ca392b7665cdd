package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/etcd-appliance/etcd-appliance/internal/pki"
	"github.com/etcd-appliance/etcd-appliance/internal/pki/awssecret"
)

// fleetTLS is a group run with --tls auto (Options.TLS): the appliances
// keep the cluster CA in a directory of the group (the first to start
// creates it), and the fleet's own clients — its calls to the appliance
// APIs and its etcd clients — show a user certificate it issues from that
// CA, as an operator with CA access would (`client-cert`).
type fleetTLS struct {
	// dir is the CA directory of a local group, "" for an AWS group.
	dir string
	// store keeps the CA: dir, or the AWS group's secret in moto.
	store pki.Store
	// flags are the flags of `etcd-appliance run` that turn TLS on.
	flags []string

	mu    sync.Mutex
	creds *staticCredentials // nil until the CA exists
	http  *http.Client
	// member reads /v1/peer, which admits members only: the fleet holds
	// the CA, as the cloud's operator does, and shows a member
	// certificate there.
	member *http.Client
}

// userCertLifetime is the lifetime of the fleet's own certificate: longer
// than any test or demo.
const userCertLifetime = 24 * time.Hour

// tlsArgs are the flags of `etcd-appliance run` that turn TLS on.
func (t *fleetTLS) args() []string {
	if t == nil {
		return nil
	}
	return t.flags
}

// credentials are the fleet's certificate and the cluster's trust, issued
// once the first appliance created the CA; before, an error.
func (t *fleetTLS) credentials(ctx context.Context) (*staticCredentials, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.creds != nil {
		return t.creds, nil
	}
	ca, _, err := pki.EnsureCA(ctx, t.store, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("fleet: the cluster CA: %w", err)
	}
	kp, err := ca.Issue(pki.LeafRequest{Kind: pki.User, CommonName: "fleet", Lifetime: userCertLifetime}, time.Now())
	if err != nil {
		return nil, fmt.Errorf("fleet: issuing the fleet's certificate: %w", err)
	}
	mkp, err := ca.Issue(pki.LeafRequest{Kind: pki.Member, CommonName: "fleet", IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		Lifetime: userCertLifetime}, time.Now())
	if err != nil {
		return nil, fmt.Errorf("fleet: issuing the fleet's member certificate: %w", err)
	}
	t.creds = &staticCredentials{cert: kp.TLSCertificate(), trust: ca.Trust}
	t.http = &http.Client{Transport: pki.MemberTransport(t.creds)}
	t.http.Transport.(*http.Transport).DisableKeepAlives = true
	t.member = &http.Client{Transport: pki.MemberTransport(&staticCredentials{cert: mkp.TLSCertificate(), trust: ca.Trust})}
	t.member.Transport.(*http.Transport).DisableKeepAlives = true
	return t.creds, nil
}

// staticCredentials are a certificate that does not change and the bundle
// it trusts (pki.Credentials).
type staticCredentials struct {
	cert  *tls.Certificate
	trust *pki.Bundle
}

var _ pki.Credentials = (*staticCredentials)(nil)

func (c *staticCredentials) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cert, nil
}

func (c *staticCredentials) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.cert, nil
}

func (c *staticCredentials) Trust() *pki.Bundle { return c.trust }

// ReloadTLS has the fleet's clients read the cluster CA again at their next
// use, as an operator does after a step of a CA rotation: a certificate of
// the signer of now, the bundle of now. Clients made before keep theirs.
func (g *Group) ReloadTLS() {
	if g.tls == nil {
		return
	}
	g.tls.mu.Lock()
	defer g.tls.mu.Unlock()
	g.tls.creds = nil
}

// TLS reports whether the group runs with --tls auto.
func (g *Group) TLS() bool { return g.tls != nil }

// CADir is the directory of the cluster CA of a group run with TLS, "" without.
func (g *Group) CADir() string {
	if g.tls == nil {
		return ""
	}
	return g.tls.dir
}

// ClientTLS is the TLS config of a client of the group's etcd: the fleet's
// user certificate, verifying the members' certificates under the cluster
// CA; nil for a group without TLS. It fails until the first appliance has
// created the CA.
func (g *Group) ClientTLS(ctx context.Context) (*tls.Config, error) {
	if g.tls == nil {
		return nil, nil
	}
	creds, err := g.tls.credentials(ctx)
	if err != nil {
		return nil, err
	}
	return pki.EtcdClientTLS(creds), nil
}

// scheme is the scheme of the group's etcd URLs and appliance APIs.
func (g *Group) scheme() string {
	if g.tls != nil {
		return "https"
	}
	return "http"
}

// apiClient is the HTTP client of the appliance APIs for path: with TLS,
// showing the fleet's user certificate, or its member certificate for
// /v1/peer.
func (g *Group) apiClient(ctx context.Context, path string) (*http.Client, error) {
	if g.tls == nil {
		return httpClient, nil
	}
	if _, err := g.tls.credentials(ctx); err != nil {
		return nil, err
	}
	g.tls.mu.Lock()
	defer g.tls.mu.Unlock()
	if strings.HasPrefix(path, "/v1/peer") {
		return g.tls.member, nil
	}
	return g.tls.http, nil
}

// newFleetTLS is the TLS of a group in dir, or nil when off.
func newFleetTLS(on bool, dir string) *fleetTLS {
	if !on {
		return nil
	}
	dir = filepath.Join(dir, "ca")
	return &fleetTLS{dir: dir, store: pki.DirStore{Dir: dir}, flags: []string{"--tls", "auto", "--tls-ca-dir", dir}}
}

// awsSecretTLS is the TLS of an AWS group: the CA in the Secrets Manager
// secret name of moto at endpoint, which the first appliance creates.
func awsSecretTLS(endpoint, name string) *fleetTLS {
	sm := secretsmanager.NewFromConfig(motoConfig(endpoint, AWSRegion))
	return &fleetTLS{store: awssecret.New(sm, name), flags: []string{"--tls", "auto", "--tls-ca-secret", name}}
}

// ClusterCA is the cluster CA of an AWS group run with TLS, read back from
// the Secrets Manager secret of moto that its appliances share, and the
// names of every secret moto holds: the appliances must have made one.
func (g *AWSGroup) ClusterCA(ctx context.Context) (*pki.ClusterCA, []string, error) {
	if g.procs.tls == nil {
		return nil, nil, errors.New("fleet: the group runs without TLS")
	}
	ca, _, err := pki.EnsureCA(ctx, g.procs.tls.store, nil, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet: the cluster CA: %w", err)
	}
	sm := secretsmanager.NewFromConfig(motoConfig(g.moto.URL, AWSRegion))
	var names []string
	p := secretsmanager.NewListSecretsPaginator(sm, &secretsmanager.ListSecretsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("fleet: listing moto's secrets: %w", err)
		}
		for _, s := range page.SecretList {
			names = append(names, sdkaws.ToString(s.Name))
		}
	}
	return ca, names, nil
}
