package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/miekg/dns"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// awsDNSTTL mirrors the appliance's default --dns-ttl.
const awsDNSTTL = 60

// hostedZone is a public Route53 hosted zone in moto where a group's
// appliances publish the cluster's records.
type hostedZone struct {
	name, id string
	r53      *route53.Client
}

// createHostedZone creates the public hosted zone name in moto; ref is the
// caller reference (the group's name).
func createHostedZone(ctx context.Context, log *slog.Logger, r53 *route53.Client, name, ref string) (*hostedZone, error) {
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	out, err := r53.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{
		Name:            sdkaws.String(name),
		CallerReference: sdkaws.String(ref),
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: creating hosted zone %s in moto: %w", name, err)
	}
	z := &hostedZone{name: name, id: strings.TrimPrefix(sdkaws.ToString(out.HostedZone.Id), "/hostedzone/"), r53: r53}
	log.Info("hosted zone created", "zone", name, "id", z.id)
	return z, nil
}

// dnsSpec is where the appliances of group publish the cluster's records
// in zone, with the appliance's defaults: the group's name (lower case),
// TTL 60, the default ports.
func dnsSpec(zone, group string) cluster.DNSSpec {
	return cluster.DNSSpec{
		Zone:       zone,
		Name:       strings.ToLower(group),
		TTL:        awsDNSTTL,
		ClientPort: cluster.DefaultPorts.Client,
		PeerPort:   cluster.DefaultPorts.Peer,
	}
}

// records reads from moto the records of the zone that spec owns (see
// cluster.DNSSpec.Owns): the SRV and A records the leader publishes, as
// Route53 holds them now. It reads with the fleet's own Route53 client,
// not the provider's, so that the appliance's reading is what the tests
// check rather than what they rely on.
func (z *hostedZone) records(ctx context.Context, spec cluster.DNSSpec) ([]cluster.DNSRecord, error) {
	if z == nil {
		return nil, errors.New("fleet: the group has no hosted zone (its options' HostedZone)")
	}
	in := &route53.ListResourceRecordSetsInput{HostedZoneId: sdkaws.String(z.id)}
	var out []cluster.DNSRecord
	for {
		cctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
		page, err := z.r53.ListResourceRecordSets(cctx, in)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("fleet: listing hosted zone %s: %w", z.name, err)
		}
		for _, rr := range page.ResourceRecordSets {
			name := strings.ToLower(sdkaws.ToString(rr.Name))
			if !strings.HasSuffix(name, ".") {
				name += "."
			}
			switch rr.Type {
			case r53types.RRTypeA, r53types.RRTypeAaaa, r53types.RRTypeSrv:
			default:
				continue
			}
			if !spec.Owns(name) {
				continue
			}
			rec := cluster.DNSRecord{Name: name, Type: string(rr.Type), TTL: sdkaws.ToInt64(rr.TTL)}
			for _, v := range rr.ResourceRecords {
				rec.Values = append(rec.Values, sdkaws.ToString(v.Value))
			}
			out = append(out, rec)
		}
		if !page.IsTruncated {
			return out, nil
		}
		in.StartRecordName = page.NextRecordName
		in.StartRecordType = page.NextRecordType
		in.StartRecordIdentifier = page.NextRecordIdentifier
	}
}

// HostedZoneID is the id of the hosted zone of AWSOptions.HostedZone, ""
// without one.
func (g *AWSGroup) HostedZoneID() string {
	if g.zone == nil {
		return ""
	}
	return g.zone.id
}

// DNSSpec is where the appliances publish the cluster's records (see
// dnsSpec). A test that passes --dns-name or --dns-ttl in AWSOptions.Args
// adjusts it.
func (g *AWSGroup) DNSSpec() cluster.DNSSpec {
	spec := dnsSpec(g.opts.HostedZone, g.name)
	spec.TLS = g.opts.TLS
	return spec
}

// Records reads the records the cluster owns in the hosted zone (see
// hostedZone.records).
func (g *AWSGroup) Records(ctx context.Context) ([]cluster.DNSRecord, error) {
	return g.zone.records(ctx, g.DNSSpec())
}

// DNSSpec is where the appliances publish the cluster's records (see
// dnsSpec).
func (g *AWSMulti) DNSSpec() cluster.DNSSpec { return dnsSpec(g.opts.HostedZone, g.name) }

// Records reads the records the cluster owns in the hosted zone of
// AWSMultiOptions.HostedZone (see hostedZone.records).
func (g *AWSMulti) Records(ctx context.Context) ([]cluster.DNSRecord, error) {
	return g.zone.records(ctx, g.DNSSpec())
}

// lookupA returns the values of the zone's A record name, as public DNS
// answers it; ok false when the zone holds none.
func (z *hostedZone) lookupA(ctx context.Context, name string) (addrs []string, ok bool) {
	name = strings.ToLower(dns.Fqdn(name))
	if !dns.IsSubDomain(dns.Fqdn(z.name), name) {
		return nil, false
	}
	out, err := z.r53.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{
		HostedZoneId:    sdkaws.String(z.id),
		StartRecordName: sdkaws.String(name),
		StartRecordType: r53types.RRTypeA,
		MaxItems:        sdkaws.Int32(1),
	})
	if err != nil || len(out.ResourceRecordSets) == 0 {
		return nil, false
	}
	rr := out.ResourceRecordSets[0]
	if rr.Type != r53types.RRTypeA || strings.ToLower(dns.Fqdn(sdkaws.ToString(rr.Name))) != name {
		return nil, false
	}
	for _, v := range rr.ResourceRecords {
		addrs = append(addrs, sdkaws.ToString(v.Value))
	}
	return addrs, true
}
