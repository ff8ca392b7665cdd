package aws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// ec2FirewallAPI is the part of the EC2 client the firewall uses.
type ec2FirewallAPI interface {
	DescribeSecurityGroups(ctx context.Context, in *ec2.DescribeSecurityGroupsInput, optFns ...func(*ec2.Options)) (*ec2.DescribeSecurityGroupsOutput, error)
	AuthorizeSecurityGroupIngress(ctx context.Context, in *ec2.AuthorizeSecurityGroupIngressInput, optFns ...func(*ec2.Options)) (*ec2.AuthorizeSecurityGroupIngressOutput, error)
	RevokeSecurityGroupIngress(ctx context.Context, in *ec2.RevokeSecurityGroupIngressInput, optFns ...func(*ec2.Options)) (*ec2.RevokeSecurityGroupIngressOutput, error)
}

// Firewall is a multi-region cluster's ingress rules in the cluster security
// group of each region: the one security group there that carries the
// cluster tag with this instance's value (CloudFormation tags a stack's
// security group so). It touches only the rules its cluster.FirewallSpec
// owns.
type Firewall struct {
	log      *slog.Logger
	spec     cluster.FirewallSpec
	tagKey   string
	tagValue func(ctx context.Context) (string, error)
	api      map[string]ec2FirewallAPI // by region

	mu     sync.Mutex
	groups map[string]string // security group id by region, from the last read
}

var _ provider.Firewall = (*Firewall)(nil)

// Firewall returns the cluster's ingress rules in the regions of spec,
// which must be the provider's own (--regions). It needs multi-region mode.
func (p *Provider) Firewall(spec cluster.FirewallSpec) (*Firewall, error) {
	if p.multi == nil {
		return nil, errors.New("firewall: the ingress rules are kept in multi-region mode only (--regions)")
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	api := map[string]ec2FirewallAPI{}
	for _, r := range spec.Regions {
		c, ok := p.multi.ec2[r].(ec2FirewallAPI)
		if !ok {
			return nil, fmt.Errorf("firewall: region %s is not one of --regions %s", r, strings.Join(p.multi.regions, ","))
		}
		api[r] = c
	}
	return &Firewall{
		log:      p.log.With("component", "firewall"),
		spec:     spec,
		tagKey:   p.multi.tagKey,
		tagValue: p.clusterTagValue,
		api:      api,
		groups:   map[string]string{},
	}, nil
}

// Rules reads the single-port TCP IPv4 rules of the cluster security group
// of every region. One DescribeSecurityGroups call per region both finds the
// group by its tag and reads its rules, so that a security group replaced
// by a stack update is found again without a cache to invalidate.
func (f *Firewall) Rules(ctx context.Context) ([]cluster.IngressRule, error) {
	value, err := f.tagValue(ctx)
	if err != nil {
		return nil, err
	}
	lists := make([][]cluster.IngressRule, len(f.spec.Regions))
	errs := make([]error, len(f.spec.Regions))
	var wg sync.WaitGroup
	for k, region := range f.spec.Regions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lists[k], errs[k] = f.rules(ctx, region, value)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return slices.Concat(lists...), nil
}

func (f *Firewall) rules(ctx context.Context, region, value string) ([]cluster.IngressRule, error) {
	pages := ec2.NewDescribeSecurityGroupsPaginator(f.api[region], &ec2.DescribeSecurityGroupsInput{
		Filters: []ec2types.Filter{{Name: aws.String("tag:" + f.tagKey), Values: []string{value}}},
	})
	var groups []ec2types.SecurityGroup
	for pages.HasMorePages() {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		page, err := pages.NextPage(cctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("describing the security groups tagged %s=%s in %s: %w", f.tagKey, value, region, err)
		}
		groups = append(groups, page.SecurityGroups...)
	}
	switch len(groups) {
	case 0:
		return nil, fmt.Errorf("no security group in %s carries the tag %s=%s: tag the cluster's security group there", region, f.tagKey, value)
	case 1:
	default:
		var ids []string
		for _, g := range groups {
			ids = append(ids, aws.ToString(g.GroupId))
		}
		slices.Sort(ids)
		return nil, fmt.Errorf("%d security groups in %s carry the tag %s=%s (%s): the appliance cannot tell which is the cluster's; keep the tag on one",
			len(groups), region, f.tagKey, value, strings.Join(ids, ", "))
	}
	sg := groups[0]
	f.mu.Lock()
	if old := f.groups[region]; old != aws.ToString(sg.GroupId) {
		f.log.Info("found the cluster security group", "region", region, "group", aws.ToString(sg.GroupId), "tag", f.tagKey+"="+value)
	}
	f.groups[region] = aws.ToString(sg.GroupId)
	f.mu.Unlock()
	var out []cluster.IngressRule
	for _, perm := range sg.IpPermissions {
		// Rules of other shapes (port ranges, other protocols, references
		// to security groups) are never the appliance's, nor duplicates of
		// its rules.
		if aws.ToString(perm.IpProtocol) != "tcp" || perm.FromPort == nil || perm.ToPort == nil ||
			aws.ToInt32(perm.FromPort) != aws.ToInt32(perm.ToPort) {
			continue
		}
		for _, r := range perm.IpRanges {
			out = append(out, cluster.IngressRule{
				Region: region, Port: int(aws.ToInt32(perm.FromPort)),
				CIDR: aws.ToString(r.CidrIp), Description: aws.ToString(r.Description),
			})
		}
	}
	return out, nil
}

// Apply authorizes, then revokes, with one call of each per region, so that
// access is never narrowed before it is widened. A region's failure does
// not stop the others; the errors are joined.
func (f *Firewall) Apply(ctx context.Context, authorize, revoke []cluster.IngressRule) error {
	for _, r := range revoke {
		if !f.spec.Owns(r) {
			return fmt.Errorf("firewall: refusing to revoke %s: the rule is not this cluster's", r)
		}
	}
	var errs []error
	for _, region := range f.spec.Regions {
		add, drop := inRegion(authorize, region), inRegion(revoke, region)
		if len(add) == 0 && len(drop) == 0 {
			continue
		}
		if err := f.applyRegion(ctx, region, add, drop); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (f *Firewall) applyRegion(ctx context.Context, region string, authorize, revoke []cluster.IngressRule) error {
	f.mu.Lock()
	group := f.groups[region]
	f.mu.Unlock()
	if group == "" {
		return fmt.Errorf("firewall: the cluster security group of %s is not known yet: read the rules first", region)
	}
	if len(authorize) > 0 {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err := f.api[region].AuthorizeSecurityGroupIngress(cctx, &ec2.AuthorizeSecurityGroupIngressInput{
			GroupId: aws.String(group), IpPermissions: permissions(authorize, true),
		})
		cancel()
		if err != nil {
			return fmt.Errorf("authorizing %d rules in security group %s (%s): %w", len(authorize), group, region, err)
		}
		f.log.Debug("authorized", "region", region, "group", group, "rules", len(authorize))
	}
	if len(revoke) > 0 {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err := f.api[region].RevokeSecurityGroupIngress(cctx, &ec2.RevokeSecurityGroupIngressInput{
			GroupId: aws.String(group), IpPermissions: permissions(revoke, false),
		})
		cancel()
		if err != nil {
			return fmt.Errorf("revoking %d rules in security group %s (%s): %w", len(revoke), group, region, err)
		}
		f.log.Debug("revoked", "region", region, "group", group, "rules", len(revoke))
	}
	return nil
}

func inRegion(rules []cluster.IngressRule, region string) []cluster.IngressRule {
	var out []cluster.IngressRule
	for _, r := range rules {
		if r.Region == region {
			out = append(out, r)
		}
	}
	return out
}

// permissions groups rules by port, one permission per port. A revocation
// matches by protocol, port and CIDR; the description is for authorizing.
func permissions(rules []cluster.IngressRule, described bool) []ec2types.IpPermission {
	var out []ec2types.IpPermission
	byPort := map[int]int{}
	for _, r := range rules {
		k, ok := byPort[r.Port]
		if !ok {
			k = len(out)
			byPort[r.Port] = k
			out = append(out, ec2types.IpPermission{
				IpProtocol: aws.String("tcp"), FromPort: aws.Int32(int32(r.Port)), ToPort: aws.Int32(int32(r.Port)),
			})
		}
		rng := ec2types.IpRange{CidrIp: aws.String(r.CIDR)}
		if described {
			rng.Description = aws.String(r.Description)
		}
		out[k].IpRanges = append(out[k].IpRanges, rng)
	}
	return out
}
