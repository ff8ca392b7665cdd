package cluster

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// FirewallRecheck is how long the leader may trust the ingress rules it last
// read or wrote before it reads them again although the wanted rules did not
// change: as DNSRecheck, a read every cycle would cost a call per region
// every --reconcile-interval.
const FirewallRecheck = 5 * time.Minute

// firewallMark starts the description of every rule the appliance owns.
const firewallMark = "etcd-appliance"

// FirewallSpec is how a multi-region cluster keeps its members reachable
// across regions (§4.4): every member's IPv4 address is allowed, as one /32
// rule per port, in the cluster security group of every region.
//
// The rules a cluster owns carry the description
// "etcd-appliance <cluster> <instance id>"; every other rule of the
// security group is someone else's and is never revoked.
type FirewallSpec struct {
	// Cluster names the cluster in the rules' descriptions.
	Cluster string
	// Regions are the regions whose cluster security groups hold the rules.
	Regions []string
	// Ports are the TCP ports allowed: etcd's client and peer ports, and
	// the appliance API's, which peers in other regions ask during startup
	// (§4.2) before any of them runs etcd.
	Ports []int
}

// Validate checks that rules made by the spec can be told apart from other
// rules and are valid rules of a security group.
func (s FirewallSpec) Validate() error {
	var errs []error
	if s.Cluster == "" || strings.ContainsAny(s.Cluster, " \t\n") {
		errs = append(errs, fmt.Errorf("firewall: cluster name %q must be non-empty without spaces: it marks the cluster's rules", s.Cluster))
	}
	if len(s.Regions) == 0 {
		errs = append(errs, errors.New("firewall: no region"))
	}
	if len(s.Ports) == 0 {
		errs = append(errs, errors.New("firewall: no port"))
	}
	for _, p := range s.Ports {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("firewall: port %d is out of range 1-65535", p))
		}
	}
	return errors.Join(errs...)
}

// Description is the description of the rules that admit an instance.
func (s FirewallSpec) Description(instance string) string {
	return firewallMark + " " + s.Cluster + " " + instance
}

// Owns reports whether a rule is this cluster's, by its description.
func (s FirewallSpec) Owns(r IngressRule) bool {
	prefix := firewallMark + " " + s.Cluster
	return r.Description == prefix || strings.HasPrefix(r.Description, prefix+" ")
}

// owner is the instance an owned rule admits, from its description.
func (s FirewallSpec) owner(r IngressRule) string {
	if !s.Owns(r) {
		return ""
	}
	return strings.TrimSpace(strings.TrimPrefix(r.Description, firewallMark+" "+s.Cluster))
}

// IngressRule allows TCP from one CIDR to one port in the cluster security
// group of one region.
type IngressRule struct {
	Region string `json:"region"`
	Port   int    `json:"port"`
	CIDR   string `json:"cidr"`
	// Description is the rule's as the security group holds it; it tells
	// the rules the cluster owns (FirewallSpec.Owns) from all others.
	Description string `json:"description,omitempty"`
}

func (r IngressRule) String() string {
	return fmt.Sprintf("%s tcp/%d from %s (%s)", r.Region, r.Port, r.CIDR, r.Description)
}

// ruleKey is what a security group tells rules apart by: it refuses a
// second rule of the same protocol, port and CIDR, whatever its description.
type ruleKey struct {
	region string
	port   int
	cidr   string
}

func keyOf(r IngressRule) ruleKey { return ruleKey{r.Region, r.Port, r.CIDR} }

// FirewallInputs are what the leader knows when it keeps the rules.
type FirewallInputs struct {
	// Members is the health view of the member list.
	Members []MemberStatus
	// Group is the group listing, valid only when GroupKnown.
	Group      []Instance
	GroupKnown bool
}

// FirewallIP is the IPv4 address an instance's traffic to its peers comes
// from, as the security groups of other regions see it: its public IP when
// it has one, else its own address (an instance without a public address
// reaches its peers over private networking). "" when it has no IPv4
// address.
func FirewallIP(inst Instance) string {
	for _, a := range []string{inst.PublicIP, inst.Address, inst.BindAddress} {
		if ip := net.ParseIP(a); ip != nil && ip.To4() != nil && !ip.IsUnspecified() {
			return ip.String()
		}
	}
	return ""
}

// WantedIngress is the rules the cluster needs in every region, sorted:
//
//   - every instance of the group that is pending or running, so that a new
//     instance can ask its peers and join before it is a member;
//   - every member, as long as it is a member: by its listed instance's
//     address, by its peer URL when that is an IP, or else by the rules the
//     security groups already hold for it (have), so that a member whose
//     instance is missing from a listing keeps its rules until housekeeping
//     removes the member.
//
// A member whose instance is listed as stopped or terminated needs no rule.
// IPv6 addresses get none: the rules are IPv4 /32s.
func WantedIngress(spec FirewallSpec, in FirewallInputs, have []IngressRule) []IngressRule {
	addrs := map[string]string{} // by instance id
	listed := map[string]bool{}
	if in.GroupKnown {
		for _, inst := range in.Group {
			listed[inst.ID] = true
			if inst.State.InGroup() {
				if ip := FirewallIP(inst); ip != "" {
					addrs[inst.ID] = ip + "/32"
				}
			}
		}
	}
	var kept []IngressRule
	for _, m := range in.Members {
		if m.Name == "" || listed[m.Name] {
			continue
		}
		if ip := net.ParseIP(hostOf(m.PeerURL)); ip != nil && ip.To4() != nil {
			addrs[m.Name] = ip.String() + "/32"
			continue
		}
		for _, r := range have {
			if spec.owner(r) == m.Name {
				kept = append(kept, r)
			}
		}
	}
	seen := map[ruleKey]bool{}
	var out []IngressRule
	add := func(r IngressRule) {
		if !seen[keyOf(r)] {
			seen[keyOf(r)] = true
			out = append(out, r)
		}
	}
	ids := make([]string, 0, len(addrs))
	for id := range addrs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		for _, region := range spec.Regions {
			for _, port := range spec.Ports {
				add(IngressRule{Region: region, Port: port, CIDR: addrs[id], Description: spec.Description(id)})
			}
		}
	}
	for _, r := range kept {
		if slices.Contains(spec.Regions, r.Region) && slices.Contains(spec.Ports, r.Port) {
			add(r)
		}
	}
	sortRules(out)
	return out
}

// DiffIngress returns the rules to authorize (wanted, and not held by the
// security group under any description: a group refuses a duplicate) and
// the rules to revoke (owned, held, not wanted). Rules others own are never
// revoked. Both are sorted; both are empty when the groups are in shape.
func DiffIngress(want, have []IngressRule, owns func(IngressRule) bool) (authorize, revoke []IngressRule) {
	held := map[ruleKey]bool{}
	for _, r := range have {
		held[keyOf(r)] = true
	}
	wanted := map[ruleKey]bool{}
	for _, w := range want {
		wanted[keyOf(w)] = true
		if !held[keyOf(w)] {
			authorize = append(authorize, w)
		}
	}
	for _, h := range have {
		if !wanted[keyOf(h)] && owns(h) {
			revoke = append(revoke, h)
		}
	}
	sortRules(authorize)
	sortRules(revoke)
	return authorize, revoke
}

// FirewallPlan is the firewall change of one housekeeping cycle.
type FirewallPlan struct {
	Authorize []IngressRule `json:"authorize,omitempty"`
	Revoke    []IngressRule `json:"revoke,omitempty"`
	// Held says why a change was refused.
	Held string `json:"held,omitempty"`
}

// Empty reports whether the plan changes nothing.
func (p FirewallPlan) Empty() bool { return len(p.Authorize) == 0 && len(p.Revoke) == 0 }

// DecideFirewall is the firewall part of the leader's housekeeping: the
// changes that make the security groups (have, read back) hold exactly the
// rules of WantedIngress among the cluster's own. It refuses to act on a
// view that cannot be right, since a revoked rule cuts a member off its
// peers: with no healthy member in the view (the leader is one, so the
// health view failed) it changes nothing, and while the group is unknown it
// authorizes but revokes nothing.
func DecideFirewall(spec FirewallSpec, in FirewallInputs, have []IngressRule) FirewallPlan {
	if !slices.ContainsFunc(in.Members, func(m MemberStatus) bool { return m.Healthy }) {
		return FirewallPlan{Held: "no healthy member in the view: keeping the ingress rules"}
	}
	want := WantedIngress(spec, in, have)
	if len(want) == 0 {
		return FirewallPlan{Held: "no member or instance with an IPv4 address: keeping the ingress rules"}
	}
	plan := FirewallPlan{}
	plan.Authorize, plan.Revoke = DiffIngress(want, have, spec.Owns)
	if !in.GroupKnown && len(plan.Revoke) > 0 {
		plan.Held = fmt.Sprintf("group unknown: keeping %d rules that may belong to instances not listed", len(plan.Revoke))
		plan.Revoke = nil
	}
	return plan
}

// FirewallCheckDue reports whether the leader should read the rules this
// cycle: when the wanted rules differ from those of its last read
// (lastWant), or when it last read them FirewallRecheck or longer ago, so
// that a rule changed by hand is repaired without a read every cycle.
func FirewallCheckDue(want, lastWant []IngressRule, lastRead, now time.Time) bool {
	return lastRead.IsZero() || !now.Before(lastRead.Add(FirewallRecheck)) || !EqualIngress(want, lastWant)
}

// EqualIngress reports whether a and b hold the same rules (region, port,
// CIDR), whatever their order and descriptions.
func EqualIngress(a, b []IngressRule) bool {
	ka, kb := map[ruleKey]bool{}, map[ruleKey]bool{}
	for _, r := range a {
		ka[keyOf(r)] = true
	}
	for _, r := range b {
		kb[keyOf(r)] = true
	}
	if len(ka) != len(kb) {
		return false
	}
	for k := range ka {
		if !kb[k] {
			return false
		}
	}
	return true
}

// AppliedIngress is what the security groups hold after plan was applied
// to have: the leader's memory of them until its next read.
func AppliedIngress(have []IngressRule, plan FirewallPlan) []IngressRule {
	gone := map[ruleKey]bool{}
	for _, r := range plan.Revoke {
		gone[keyOf(r)] = true
	}
	var out []IngressRule
	for _, r := range have {
		if !gone[keyOf(r)] {
			out = append(out, r)
		}
	}
	out = append(out, plan.Authorize...)
	sortRules(out)
	return out
}

func sortRules(rs []IngressRule) {
	slices.SortFunc(rs, func(a, b IngressRule) int {
		return cmp.Or(strings.Compare(a.Region, b.Region), cmp.Compare(a.Port, b.Port), strings.Compare(a.CIDR, b.CIDR))
	})
}
