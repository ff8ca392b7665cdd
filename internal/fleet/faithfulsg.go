package fleet

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

const (
	// sgTable is the faithful network's table in each instance's
	// namespace: the region's security group on the cluster's ports.
	sgTable = "etcd_appliance_sg"
	// sgPollInterval is how often the faithful network reads the security
	// groups: AWS applies a rule change within about a second.
	sgPollInterval = 500 * time.Millisecond
)

// sgAllow is a source a security group admits on a TCP port range.
type sgAllow struct {
	CIDR     string
	From, To int
}

// sgAllows reads a security group's ingress permissions as sources by
// port range: CIDR ranges as they are; a reference to the group itself
// (the template's rules "within the cluster") as the region's private
// subnet, which only the group's instances use in the harness; other
// referenced groups not at all (no instance of the harness is in them).
// All protocols ("-1") is every port; other protocols than TCP admit
// nothing on the cluster's ports.
func sgAllows(perms []ec2types.IpPermission, self, privateCIDR string) []sgAllow {
	var out []sgAllow
	for _, p := range perms {
		from, to := int(sdkaws.ToInt32(p.FromPort)), int(sdkaws.ToInt32(p.ToPort))
		switch sdkaws.ToString(p.IpProtocol) {
		case "tcp", "6":
		case "-1":
			from, to = 0, 65535
		default:
			continue
		}
		for _, r := range p.IpRanges {
			out = append(out, sgAllow{CIDR: sdkaws.ToString(r.CidrIp), From: from, To: to})
		}
		for _, g := range p.UserIdGroupPairs {
			if sdkaws.ToString(g.GroupId) == self {
				out = append(out, sgAllow{CIDR: privateCIDR, From: from, To: to})
			}
		}
	}
	slices.SortFunc(out, func(a, b sgAllow) int {
		return strings.Compare(fmt.Sprint(a.From, a.To, a.CIDR), fmt.Sprint(b.From, b.To, b.CIDR))
	})
	return slices.Compact(out)
}

// sgScript is the nft input that makes an instance's namespace admit, on
// the cluster's ports, only what allows says, plus the root namespace at
// root (the test's own vantage point, as the netlab keeps it) and the
// replies of connections already admitted (security groups are
// stateful): the table replaced whole.
func sgScript(allows []sgAllow, root string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n", sgTable, sgTable)
	fmt.Fprintf(&b, "table inet %s {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n", sgTable)
	b.WriteString("\t\tct state established,related accept\n")
	b.WriteString("\t\tiif \"lo\" accept\n")
	fmt.Fprintf(&b, "\t\tip saddr %s accept\n", root)
	for _, a := range allows {
		fmt.Fprintf(&b, "\t\tip saddr %s tcp dport %d-%d accept\n", a.CIDR, a.From, a.To)
	}
	lo, hi := slices.Min(instancePorts), slices.Max(instancePorts)
	fmt.Fprintf(&b, "\t\ttcp dport %d-%d drop\n", lo, hi)
	b.WriteString("\t}\n}\n")
	return b.String()
}

// syncSecurityGroups reads each region's cluster security group from moto
// and rewrites the table of every namespace of the region whose script
// changed. Regions that moto does not answer keep their tables.
func (g *AWSMulti) syncSecurityGroups(ctx context.Context) error {
	f := g.faithful
	var errs []error
	for _, name := range g.opts.Regions {
		r := g.regions[name]
		cctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
		out, err := r.ec2.DescribeSecurityGroups(cctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{r.sg}})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("reading security group %s in %s: %w", r.sg, name, err))
			continue
		}
		var perms []ec2types.IpPermission
		for _, sg := range out.SecurityGroups {
			perms = append(perms, sg.IpPermissions...)
		}
		lab := f.labs[name]
		script := sgScript(sgAllows(perms, r.sg, lab.net.String()), lab.net.address(bridgeHost))
		f.sgMu.Lock()
		f.mu.Lock()
		changed := f.sgScript[name] != script
		f.sgScript[name] = script
		var nss []string
		for _, h := range f.hosts {
			if h.region == name && h.ready {
				nss = append(nss, h.ns)
			}
		}
		f.mu.Unlock()
		if changed {
			for _, ns := range nss {
				if err := f.applyNft(ctx, ns, script); err != nil {
					errs = append(errs, err)
				}
			}
		}
		f.sgMu.Unlock()
		if !changed {
			continue
		}
		g.log.Debug("security group applied", "region", name, "namespaces", len(nss), "rules", len(perms))
	}
	if len(errs) > 0 {
		return fmt.Errorf("fleet: %v", errs)
	}
	return nil
}

// followSecurityGroups keeps the namespaces' tables in step with moto
// until ctx ends.
func (g *AWSMulti) followSecurityGroups(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(sgPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := g.syncSecurityGroups(ctx); err != nil && ctx.Err() == nil {
			g.log.Warn("security groups not applied", "err", err)
		}
	}
}
