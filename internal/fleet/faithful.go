package fleet

// The faithful network of a multi-region group (AWSMultiOptions.Faithful):
// what moto leaves out of EC2's network, played on network namespaces so
// that the appliances meet the path they meet on AWS.
//
// Layout. Each region is a netlab of its own (see netlab.go): a /24 of
// 198.18.0.0/15 behind a bridge, which is also the region's VPC and subnet
// in moto, so moto hands out private addresses inside it; every instance
// runs in its own namespace there. The public side is one more /24 of the
// same range, reserved with the same locks, whose addresses sit on a bridge
// without ports in the root namespace, named like a region's (so that the netlab sweep
// removes it too): the host .254 is the "service" address where the
// namespaces reach the harness (the EC2 endpoint proxy, each instance's
// IMDS, the resolver), the others are the instances' public addresses. The
// root namespace does not forward: a namespace reaches another region's
// private addresses not at all, and a public address only through the
// public proxy (faithfulproxy.go), which opens its connection to the
// private address from the public address of the source instance, after
// the inter-region delay. An nftables table in each namespace admits on the
// cluster's ports only what the region's security group in moto admits
// (faithfulsg.go).
//
// Names. An instance's public DNS name is ec2-A-B-C-D.<region>.compute.test
// for its public address A.B.C.D. The resolver (miekg/dns on the service
// address, port 53, which every namespace uses through
// /etc/netns/<ns>/resolv.conf that `ip netns exec` mounts over
// /etc/resolv.conf) answers it, as Amazon's resolver does, with the private
// address to askers in the instance's region and the public one elsewhere.
//
// Cleanup. Close stops the servers, removes the resolv.conf directories,
// the namespaces, bridges and the dummy link; New removes the resolv.conf
// directories whose namespace is gone (left by a killed test binary), and
// the netlab sweep the rest.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	// etcNetnsDir holds the per-namespace files that `ip netns exec`
	// mounts over /etc.
	etcNetnsDir = "/etc/netns"
	// publicDomain ends every public DNS name of the faithful network.
	publicDomain = "compute.test"
	// serviceHost is the host number of the service address in the public
	// subnet.
	serviceHost = 254
	// dnsTTL is the TTL of the resolver's answers: short, as a test's
	// instances come and go.
	dnsTTL = 5
	// publicLookupTimeout bounds the resolver's reading of the hosted
	// zone for one question.
	publicLookupTimeout = 2 * time.Second
)

// publicHost is an instance as the faithful network knows it.
type publicHost struct {
	id      string
	region  string
	private string
	public  string
	name    string // public DNS name, lower case, without the final dot
	ns      string
	// ready says that the namespace exists (setupHost).
	ready bool
}

// faithfulNet is the network of a faithful multi-region group.
type faithfulNet struct {
	log     *slog.Logger
	ip, nft string
	labs    map[string]*netlab // by region
	pub     *subnet
	pubLink string
	service string // the service address

	dnsUDP, dnsTCP *dns.Server
	proxy          *publicProxy

	// sgMu orders the writes of the security-group tables: a sync and a
	// new namespace's first table.
	sgMu sync.Mutex

	mu    sync.Mutex
	hosts map[string]*publicHost // by instance id
	// public answers, when set, a name that is no instance's: the
	// addresses public DNS (the group's hosted zone) holds for it, the
	// same from everywhere; ok false for a name it does not hold.
	public func(ctx context.Context, name string) (addrs []string, ok bool)
	// router is the peering router's namespace, "" unless the regions are
	// peered (faithfulpeering.go).
	router   string
	nextPub  int
	resolvs  []string          // /etc/netns/<ns> directories created
	sgScript map[string]string // the security-group table of each region, as applied

	closeOnce sync.Once
	closeErr  error
}

// newFaithfulNet builds a netlab per region, the public subnet with its
// dummy link, and starts the resolver and the public proxy.
func newFaithfulNet(ctx context.Context, log *slog.Logger, regions []string) (*faithfulNet, error) {
	ip, nft, err := checkNetlabTools()
	if err != nil {
		return nil, err
	}
	sweepResolvConfs(log)
	f := &faithfulNet{log: log, ip: ip, nft: nft, labs: map[string]*netlab{}, hosts: map[string]*publicHost{},
		nextPub: 1, sgScript: map[string]string{}}
	for _, r := range regions {
		lab, err := newNetlab(ctx, log.With("region", r))
		if err != nil {
			f.close()
			return nil, fmt.Errorf("the network of region %s: %w", r, err)
		}
		f.labs[r] = lab
	}
	dir := filepath.Join(os.TempDir(), lockDir)
	if f.pub, err = reserveNetlabSubnet(dir); err != nil {
		f.close()
		return nil, fmt.Errorf("the public subnet: %w", err)
	}
	f.pubLink = bridgeName(netlabNet(f.pub.prefix))
	f.service = f.pub.address(serviceHost)
	if err := f.runIP(ctx,
		[]string{"link", "add", f.pubLink, "type", "bridge"},
		[]string{"addr", "add", f.service + "/24", "dev", f.pubLink},
		[]string{"link", "set", f.pubLink, "up"},
	); err != nil {
		f.close()
		return nil, fmt.Errorf("creating the public link %s: %w", f.pubLink, err)
	}
	if err := f.startDNS(); err != nil {
		f.close()
		return nil, err
	}
	f.proxy = newPublicProxy(log, f.lookupSource)
	log.Info("faithful network created", "public", f.pub.String(), "service", f.service)
	return f, nil
}

func (f *faithfulNet) runIP(ctx context.Context, cmds ...[]string) error {
	return (&netlab{ip: f.ip}).run(ctx, cmds...)
}

// startDNS serves the resolver on the service address, UDP and TCP.
func (f *faithfulNet) startDNS() error {
	addr := net.JoinHostPort(f.service, "53")
	udp, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("the resolver on %s: %w", addr, err)
	}
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		udp.Close()
		return fmt.Errorf("the resolver on %s: %w", addr, err)
	}
	h := dns.HandlerFunc(f.serveDNS)
	f.dnsUDP = &dns.Server{PacketConn: udp, Handler: h}
	f.dnsTCP = &dns.Server{Listener: tcp, Handler: h}
	for _, s := range []*dns.Server{f.dnsUDP, f.dnsTCP} {
		go func() { _ = s.ActivateAndServe() }()
	}
	return nil
}

// answer is the resolver's decision for a name asked from asker: the
// address, whether the name is known. With peered regions an asker in any
// region gets the private address. Pure, for tests.
func answer(hosts []publicHost, regionOf func(ip string) string, peered bool, asker, name string) (string, bool) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	for _, h := range hosts {
		if h.name != name {
			continue
		}
		if from := regionOf(asker); from == h.region || (peered && from != "") {
			return h.private, true
		}
		return h.public, true
	}
	return "", false
}

func (f *faithfulNet) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	asker := ""
	if a, _, err := net.SplitHostPort(w.RemoteAddr().String()); err == nil {
		asker = a
	}
	f.mu.Lock()
	hosts := make([]publicHost, 0, len(f.hosts))
	for _, h := range f.hosts {
		hosts = append(hosts, *h)
	}
	public, peered := f.public, f.router != ""
	f.mu.Unlock()
	for _, q := range req.Question {
		var addrs []string
		if addr, ok := answer(hosts, f.regionOfAddress, peered, asker, q.Name); ok {
			addrs = []string{addr}
		} else if public != nil {
			ctx, cancel := context.WithTimeout(context.Background(), publicLookupTimeout)
			addrs, ok = public(ctx, q.Name)
			cancel()
			if !ok {
				m.Rcode = dns.RcodeNameError
				continue
			}
		} else {
			m.Rcode = dns.RcodeNameError
			continue
		}
		if q.Qtype != dns.TypeA || q.Qclass != dns.ClassINET {
			continue
		}
		for _, addr := range addrs {
			if ip := net.ParseIP(addr).To4(); ip != nil {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: dnsTTL},
					A:   ip,
				})
			}
		}
	}
	_ = w.WriteMsg(m)
}

// regionOfAddress is the region whose private subnet holds ip, "" for
// any other address (the root namespace, a public address).
func (f *faithfulNet) regionOfAddress(ip string) string {
	p := net.ParseIP(ip)
	for r, lab := range f.labs {
		if p != nil && lab.net.contains(p) {
			return r
		}
	}
	return ""
}

// reserveHost gives instance id of region, on the private address, a
// public address and name at once, as EC2 does at launch: the EC2
// endpoint and the resolver know them from here on.
func (f *faithfulNet) reserveHost(id, region, private string) (publicHost, error) {
	lab, ok := f.labs[region]
	if !ok {
		return publicHost{}, fmt.Errorf("no network for region %s", region)
	}
	hn, err := lab.host(private)
	if err != nil {
		return publicHost{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nextPub >= serviceHost {
		return publicHost{}, fmt.Errorf("the public subnet %s is full", f.pub)
	}
	public := f.pub.address(f.nextPub)
	f.nextPub++
	h := &publicHost{id: id, region: region, private: private, public: public, ns: hostName(lab.n, hn),
		name: "ec2-" + strings.ReplaceAll(public, ".", "-") + "." + region + "." + publicDomain}
	f.hosts[id] = h
	return *h, nil
}

// setupHost makes the machine of a reserved host: its namespace with its
// resolv.conf and the region's security-group table, its public address
// and the public proxy's listeners on it.
func (f *faithfulNet) setupHost(ctx context.Context, id string) (publicHost, error) {
	h, ok := f.host(id)
	if !ok {
		return publicHost{}, fmt.Errorf("instance %s has no public address", id)
	}
	ns, err := f.labs[h.region].namespace(ctx, h.private)
	if err != nil {
		return h, err
	}
	f.mu.Lock()
	peered := f.router != ""
	f.mu.Unlock()
	if peered {
		if err := f.routePeers(ctx, ns, h.region); err != nil {
			return h, err
		}
	}
	dir := filepath.Join(etcNetnsDir, ns)
	f.mu.Lock()
	f.resolvs = append(f.resolvs, dir)
	f.mu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return h, fmt.Errorf("the resolv.conf of %s: %w", ns, err)
	}
	conf := fmt.Sprintf("# etcd-appliance faithful network: the resolver of the test\nnameserver %s\noptions timeout:1 attempts:3\n", f.service)
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(conf), 0o644); err != nil {
		return h, fmt.Errorf("the resolv.conf of %s: %w", ns, err)
	}
	if err := f.runIP(ctx, []string{"addr", "add", h.public + "/32", "dev", f.pubLink}); err != nil {
		return h, fmt.Errorf("the public address of %s: %w", id, err)
	}
	f.sgMu.Lock()
	f.mu.Lock()
	script := f.sgScript[h.region]
	f.mu.Unlock()
	if script != "" {
		if err := f.applyNft(ctx, ns, script); err != nil {
			f.sgMu.Unlock()
			return h, err
		}
	}
	f.mu.Lock()
	f.hosts[id].ready = true
	f.mu.Unlock()
	f.sgMu.Unlock()
	if err := f.proxy.listen(h); err != nil {
		return h, err
	}
	f.log.Info("instance on the faithful network", "id", id, "region", h.region, "private", h.private,
		"public", h.public, "public_name", h.name, "netns", ns)
	return h, nil
}

// removeHost stops proxying to the public address of an instance that is
// gone; its namespace stays until Close (the address is not reused).
func (f *faithfulNet) removeHost(id string) {
	f.mu.Lock()
	h := f.hosts[id]
	f.mu.Unlock()
	if h != nil {
		f.proxy.unlisten(h.public)
	}
}

// host returns the host of instance id.
func (f *faithfulNet) host(id string) (publicHost, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h, ok := f.hosts[id]
	if !ok {
		return publicHost{}, false
	}
	return *h, true
}

// lookupSource finds the instance a connection to the public proxy comes
// from, by its address.
func (f *faithfulNet) lookupSource(addr string) (publicHost, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.hosts {
		if h.private == addr {
			return *h, true
		}
	}
	return publicHost{}, false
}

// applyNft runs an nft script in namespace ns.
func (f *faithfulNet) applyNft(ctx context.Context, ns, script string) error {
	return (&netlab{ip: f.ip, nft: f.nft}).nftIn(ctx, ns, script)
}

// nftIn runs an nft script in namespace ns.
func (nl *netlab) nftIn(ctx context.Context, ns, script string) error {
	ctx, cancel := context.WithTimeout(ctx, killTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, nl.ip, "netns", "exec", ns, nl.nft, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s\ninput:\n%s", ns, err, strings.TrimSpace(string(out)), script)
	}
	return nil
}

// sweepResolvConfs removes the /etc/netns directories of netlab namespaces
// that no longer exist.
func sweepResolvConfs(log *slog.Logger) {
	entries, err := os.ReadDir(etcNetnsDir)
	if err != nil {
		return
	}
	nss, _ := netlabNamespaces()
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), netlabPrefix) && !slices.Contains(nss, e.Name()) {
			if os.RemoveAll(filepath.Join(etcNetnsDir, e.Name())) == nil {
				log.Info("leftover resolv.conf removed", "netns", e.Name())
			}
		}
	}
}

// close stops the servers and removes everything the network created.
// The processes in the namespaces must be gone.
func (f *faithfulNet) close() error {
	f.closeOnce.Do(func() {
		var errs []error
		if f.proxy != nil {
			f.proxy.close()
		}
		for _, s := range []*dns.Server{f.dnsUDP, f.dnsTCP} {
			if s != nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = s.ShutdownContext(ctx)
				cancel()
			}
		}
		f.mu.Lock()
		resolvs := slices.Clone(f.resolvs)
		f.mu.Unlock()
		for _, dir := range resolvs {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		defer cancel()
		// The router first: its legs lie in every region's bridge, so no
		// region's netlab is clean before it is gone.
		f.mu.Lock()
		router := f.router
		f.mu.Unlock()
		if router != "" {
			if err := removeNetlabObjects(ctx, f.ip, []string{router}); err != nil {
				errs = append(errs, err)
			}
		}
		for _, lab := range f.labs {
			if err := lab.close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if f.pub != nil {
			if f.pubLink != "" {
				if err := removeNetlabObjects(ctx, f.ip, []string{f.pubLink}); err != nil {
					errs = append(errs, err)
				}
			}
			f.pub.release()
		}
		f.closeErr = errors.Join(errs...)
	})
	return f.closeErr
}
