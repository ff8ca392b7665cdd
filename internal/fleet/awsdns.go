package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// awsDNSTTL mirrors the appliance's default --dns-ttl.
const awsDNSTTL = 60

// createZone creates the public hosted zone of opts.HostedZone in moto.
func (g *AWSGroup) createZone(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	out, err := g.r53.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{
		Name:            sdkaws.String(g.opts.HostedZone),
		CallerReference: sdkaws.String(g.name),
	})
	if err != nil {
		return fmt.Errorf("fleet: creating hosted zone %s in moto: %w", g.opts.HostedZone, err)
	}
	g.zoneID = strings.TrimPrefix(sdkaws.ToString(out.HostedZone.Id), "/hostedzone/")
	g.log.Info("hosted zone created", "zone", g.opts.HostedZone, "id", g.zoneID)
	return nil
}

// HostedZoneID is the id of the hosted zone of AWSOptions.HostedZone, ""
// without one.
func (g *AWSGroup) HostedZoneID() string { return g.zoneID }

// DNSSpec is where the appliances publish the cluster's records, with the
// appliance's defaults: the group's name (lower case) in the hosted zone,
// TTL 60, the default ports. A test that passes --dns-name or --dns-ttl in
// AWSOptions.Args adjusts it.
func (g *AWSGroup) DNSSpec() cluster.DNSSpec {
	return cluster.DNSSpec{
		Zone:       g.opts.HostedZone,
		Name:       strings.ToLower(g.name),
		TTL:        awsDNSTTL,
		ClientPort: cluster.DefaultPorts.Client,
		PeerPort:   cluster.DefaultPorts.Peer,
	}
}

// Records reads from moto the records that the cluster owns in the hosted
// zone (see cluster.DNSSpec.Owns): the SRV and A records the leader
// publishes, as Route53 holds them now. It reads with its own Route53
// client, not the provider's, so that the appliance's reading is what the
// tests check rather than what they rely on.
func (g *AWSGroup) Records(ctx context.Context) ([]cluster.DNSRecord, error) {
	if g.zoneID == "" {
		return nil, errors.New("fleet: the group has no hosted zone (AWSOptions.HostedZone)")
	}
	spec := g.DNSSpec()
	in := &route53.ListResourceRecordSetsInput{HostedZoneId: sdkaws.String(g.zoneID)}
	var out []cluster.DNSRecord
	for {
		cctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
		page, err := g.r53.ListResourceRecordSets(cctx, in)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("fleet: listing hosted zone %s: %w", g.opts.HostedZone, err)
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
