package cluster

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DNS record types the appliance publishes.
const (
	RecordA    = "A"
	RecordAAAA = "AAAA"
	RecordSRV  = "SRV"
)

// DNSRecheck is how long the leader may trust the records it last read or
// wrote before it reads the zone again although nothing changed in the
// cluster. A re-read every cycle would cost 720 Route53 calls an hour at the
// default --reconcile-interval, twice §7's budget for all AWS calls.
const DNSRecheck = 5 * time.Minute

// DNSRecord is one resource record set: every value of one name and type.
// Names are absolute and lower case ("etcd.example.org."), as Route53 lists
// them.
type DNSRecord struct {
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	TTL    int64    `json:"ttl"`
	Values []string `json:"values"`
}

func (r DNSRecord) String() string {
	return fmt.Sprintf("%s %d %s %s", r.Name, r.TTL, r.Type, strings.Join(r.Values, ","))
}

// DNSSpec is where and how a cluster publishes its records (§4.4).
//
// The layout under Domain() = "<name>.<zone>", for the started, healthy
// voters:
//
//	<label>.<name>.<zone>                 A/AAAA  the member's address (one per member)
//	_etcd-server._tcp.<name>.<zone>       SRV     0 0 <peer port> <label>.<name>.<zone>.
//	_etcd-client._tcp.<name>.<zone>       SRV     0 0 <client port> <label>.<name>.<zone>.
//	<name>.<zone>                         A/AAAA  every member's address
//
// with _etcd-server-ssl and _etcd-client-ssl instead when TLS is on. SRV
// targets must be host names that resolve (RFC 2782): etcd's --discovery-srv
// and clients resolve each target and compare the addresses with the peer
// URLs, and an IP literal is no such name. Hence one A record per member,
// named by the member's name (the instance id, lower case; its hex member
// id when the name is no DNS label). A member that advertises a host name
// instead of an IP address (multi-region: its public DNS name, which EC2
// resolves to the private address inside the member's VPC and to the
// public one elsewhere) is the SRV target itself and gets no A record of
// its own; the cluster name's A record then holds its public IP, which
// clients in every region reach. With TLS, clients that discover by SRV verify the
// certificate against the target, so the member's certificate must carry
// <label>.<name>.<zone> as a SAN.
type DNSSpec struct {
	// Zone is the hosted zone's name, "example.org." (the final dot optional).
	Zone string
	// Name is the cluster's name in the zone (--dns-name).
	Name string
	TTL  int64
	TLS  bool
	// ClientPort and PeerPort are used when a member's URL has no port.
	ClientPort int
	PeerPort   int
}

// Domain is "<name>.<zone>", lower case and absolute.
func (s DNSSpec) Domain() string {
	return fqdn(strings.Trim(s.Name, ".") + "." + strings.Trim(s.Zone, "."))
}

// Validate checks that the spec names a valid domain and a positive TTL.
func (s DNSSpec) Validate() error {
	if strings.Trim(s.Zone, ".") == "" {
		return fmt.Errorf("dns: no hosted zone")
	}
	if strings.Trim(s.Name, ".") == "" {
		return fmt.Errorf("dns: no name for the cluster in zone %s", s.Zone)
	}
	for _, l := range strings.Split(strings.TrimSuffix(s.Domain(), "."), ".") {
		if !validLabel(l) {
			return fmt.Errorf("dns: %q is not a valid domain name: label %q must be 1-63 of a-z, 0-9 and -", s.Domain(), l)
		}
	}
	if s.TTL <= 0 {
		return fmt.Errorf("dns: TTL %d must be positive", s.TTL)
	}
	return nil
}

// CertNames are the DNS names a member's certificate carries so that
// clients resolving the layout verify it: the member's own name
// (<label>.<name>.<zone>, when its name is a DNS label; a member whose name
// is not is known by its member id, which exists only once it joined) and
// the cluster's (<name>.<zone>), without the final dot.
func (s DNSSpec) CertNames(memberName string) []string {
	d := strings.TrimSuffix(s.Domain(), ".")
	if l := strings.ToLower(memberName); validLabel(l) {
		return []string{l + "." + d, d}
	}
	return []string{d}
}

// serviceNames are the SRV names of the layout, the ones in use first.
func (s DNSSpec) serviceNames() (server, client string, unused []string) {
	d := s.Domain()
	plain := [2]string{"_etcd-server._tcp." + d, "_etcd-client._tcp." + d}
	ssl := [2]string{"_etcd-server-ssl._tcp." + d, "_etcd-client-ssl._tcp." + d}
	if s.TLS {
		return ssl[0], ssl[1], plain[:]
	}
	return plain[0], plain[1], ssl[:]
}

// Owns reports whether a record name belongs to this cluster's layout: the
// domain itself, the four SRV names (both TLS variants, so that switching
// TLS removes the old ones), and the member names one label below the
// domain. Anything else in the zone, deeper names included, is left alone.
// Two clusters in one zone therefore must not be named so that one's domain
// is a member name of the other's ("a" and "b.a").
func (s DNSSpec) Owns(name string) bool {
	name = fqdn(name)
	d := s.Domain()
	server, client, unused := s.serviceNames()
	if name == d || name == server || name == client || slices.Contains(unused, name) {
		return true
	}
	label, ok := strings.CutSuffix(name, "."+d)
	return ok && validLabel(label)
}

// WantedRecords is the layout of DNSSpec for the started, healthy voters
// among members, sorted by name and type with sorted values, so that equal
// sets of records compare equal. Learners are left out: they refuse client
// requests and are promoted within seconds of catching up. An empty result
// means "no member to publish"; DecideDNS, not the caller, decides whether
// that may remove what is published.
func WantedRecords(spec DNSSpec, members []MemberStatus) []DNSRecord {
	d := spec.Domain()
	serverName, clientName, _ := spec.serviceNames()
	byKey := map[[2]string]*DNSRecord{}
	add := func(name, typ, value string) {
		k := [2]string{name, typ}
		r, ok := byKey[k]
		if !ok {
			r = &DNSRecord{Name: name, Type: typ, TTL: spec.TTL}
			byKey[k] = r
		}
		if !slices.Contains(r.Values, value) {
			r.Values = append(r.Values, value)
		}
	}
	for _, m := range members {
		if m.Role != RoleVoter || !m.Healthy {
			continue
		}
		peerHost, peerPort := hostPort(m.PeerURL, spec.PeerPort)
		clientHost, clientPort := hostPort(m.ClientURL, spec.ClientPort)
		host := peerHost
		if host == "" {
			host = clientHost
		}
		if host == "" {
			continue
		}
		target := fqdn(host)
		if ip := net.ParseIP(host); ip != nil {
			target = memberLabel(m) + "." + d
			typ := addressType(ip)
			add(target, typ, ip.String())
			add(d, typ, ip.String())
		} else if ip := net.ParseIP(m.PublicIP); ip != nil {
			add(d, addressType(ip), ip.String())
		}
		if peerPort > 0 {
			add(serverName, RecordSRV, fmt.Sprintf("0 0 %d %s", peerPort, target))
		}
		if clientPort > 0 {
			add(clientName, RecordSRV, fmt.Sprintf("0 0 %d %s", clientPort, target))
		}
	}
	out := make([]DNSRecord, 0, len(byKey))
	for _, r := range byKey {
		slices.Sort(r.Values)
		out = append(out, *r)
	}
	sortRecords(out)
	return out
}

// DiffRecords compares the wanted records with those the zone holds (have,
// as read back) and returns the changes that make the zone hold want:
// upserts for wanted records that are missing or differ in TTL or values,
// and deletes for records that owned names, of a type the appliance
// publishes, that are no longer wanted. A delete carries the record exactly
// as read, since Route53 deletes only an exact match. An empty want deletes
// every owned record; see DecideDNS for when that is allowed. Both results
// are sorted; both are empty when the zone is in shape.
func DiffRecords(want, have []DNSRecord, owned func(name string) bool) (upserts, deletes []DNSRecord) {
	held := map[[2]string]DNSRecord{}
	for _, r := range have {
		held[recordKey(r)] = r
	}
	wanted := map[[2]string]bool{}
	for _, w := range want {
		wanted[recordKey(w)] = true
		h, ok := held[recordKey(w)]
		if !ok || h.TTL != w.TTL || !sameValues(h.Values, w.Values) {
			upserts = append(upserts, w)
		}
	}
	for _, h := range have {
		if wanted[recordKey(h)] || !published(h.Type) || !owned(h.Name) {
			continue
		}
		deletes = append(deletes, h)
	}
	sortRecords(upserts)
	sortRecords(deletes)
	return upserts, deletes
}

// DNSPlan is the DNS change of one housekeeping cycle.
type DNSPlan struct {
	Upserts []DNSRecord `json:"upserts,omitempty"`
	Deletes []DNSRecord `json:"deletes,omitempty"`
	// Held says why a change was refused.
	Held string `json:"held,omitempty"`
}

// Empty reports whether the plan changes nothing.
func (p DNSPlan) Empty() bool { return len(p.Upserts) == 0 && len(p.Deletes) == 0 }

// DecideDNS is the DNS part of the leader's housekeeping: the changes that
// make the zone (have, read back) list exactly the started, healthy voters
// of members. When no member qualifies, the records are kept, unless
// withdraw is set: the leader itself is a healthy voter, so an empty view
// means the health view failed, not that the cluster is gone, and DNS must
// not go dark because of it. withdraw is for a deliberate end of the
// cluster (the last member leaving), which removes every owned record.
func DecideDNS(spec DNSSpec, members []MemberStatus, have []DNSRecord, withdraw bool) DNSPlan {
	want := WantedRecords(spec, members)
	if len(want) == 0 && !withdraw {
		return DNSPlan{Held: "no started, healthy voter in the view: keeping the published records"}
	}
	up, del := DiffRecords(want, have, spec.Owns)
	return DNSPlan{Upserts: up, Deletes: del}
}

// DNSCheckDue reports whether the leader should read the zone this cycle:
// when the wanted records differ from those it last saw in the zone
// (synced), or when it last read the zone DNSRecheck or longer ago, so that
// a record changed by hand is repaired without a read every cycle.
func DNSCheckDue(want, synced []DNSRecord, lastRead, now time.Time) bool {
	return lastRead.IsZero() || !now.Before(lastRead.Add(DNSRecheck)) || !EqualRecords(want, synced)
}

// EqualRecords reports whether a and b hold the same records, whatever
// their order and the order of their values.
func EqualRecords(a, b []DNSRecord) bool {
	if len(a) != len(b) {
		return false
	}
	up, del := DiffRecords(a, b, func(string) bool { return true })
	return len(up) == 0 && len(del) == 0
}

func recordKey(r DNSRecord) [2]string {
	return [2]string{fqdn(r.Name), strings.ToUpper(r.Type)}
}

func published(typ string) bool {
	switch strings.ToUpper(typ) {
	case RecordA, RecordAAAA, RecordSRV:
		return true
	}
	return false
}

func sameValues(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	for i := range a {
		a[i], b[i] = strings.ToLower(a[i]), strings.ToLower(b[i])
	}
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func sortRecords(rs []DNSRecord) {
	slices.SortFunc(rs, func(a, b DNSRecord) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Type, b.Type)
	})
}

// memberLabel is the member's own DNS label: its name (the instance id)
// when that is a DNS label, else its hex member id.
func memberLabel(m MemberStatus) string {
	if l := strings.ToLower(m.Name); validLabel(l) {
		return l
	}
	return m.ID.String()
}

func addressType(ip net.IP) string {
	if ip.To4() != nil {
		return RecordA
	}
	return RecordAAAA
}

// hostPort is the host and port of a URL, the port defaulting to def.
func hostPort(rawURL string, def int) (string, int) {
	if rawURL == "" {
		return "", 0
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", 0
	}
	port := def
	if p, err := strconv.Atoi(u.Port()); err == nil {
		port = p
	}
	return strings.ToLower(u.Hostname()), port
}

func fqdn(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, c := range l {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}
