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
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider"
)

// route53API is the part of the Route53 client the DNS uses.
type route53API interface {
	ListHostedZonesByName(ctx context.Context, in *route53.ListHostedZonesByNameInput, optFns ...func(*route53.Options)) (*route53.ListHostedZonesByNameOutput, error)
	ListResourceRecordSets(ctx context.Context, in *route53.ListResourceRecordSetsInput, optFns ...func(*route53.Options)) (*route53.ListResourceRecordSetsOutput, error)
	ChangeResourceRecordSets(ctx context.Context, in *route53.ChangeResourceRecordSetsInput, optFns ...func(*route53.Options)) (*route53.ChangeResourceRecordSetsOutput, error)
}

// DNS is a cluster's records in a Route53 hosted zone: the records that
// its cluster.DNSSpec owns, and no others.
type DNS struct {
	log  *slog.Logger
	api  route53API
	spec cluster.DNSSpec

	mu     sync.Mutex
	zoneID string // found once; forgotten when Route53 no longer knows it
}

var _ provider.DNS = (*DNS)(nil)

// DNS returns the cluster's records in the hosted zone named spec.Zone,
// public or private. The zone is looked up on first use; it must exist and
// be the only zone of that name.
func (p *Provider) DNS(spec cluster.DNSSpec) (*DNS, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	return &DNS{log: p.log.With("component", "dns", "domain", spec.Domain()), api: p.r53, spec: spec}, nil
}

// Records reads the owned records back from the zone. Records with a
// routing policy or an alias are not the appliance's and are left out.
func (d *DNS) Records(ctx context.Context) ([]cluster.DNSRecord, error) {
	zoneID, err := d.zone(ctx)
	if err != nil {
		return nil, err
	}
	recs, err := d.records(ctx, zoneID)
	if err != nil {
		d.forgetZone(err)
		return nil, fmt.Errorf("reading the records of %s in hosted zone %s: %w", d.spec.Domain(), zoneID, err)
	}
	return recs, nil
}

func (d *DNS) records(ctx context.Context, zoneID string) ([]cluster.DNSRecord, error) {
	domain := d.spec.Domain()
	// Route53 lists a zone's records sorted by name with the labels
	// reversed, so the domain's subtree follows the domain itself: one page
	// for a cluster, however large the zone.
	in := &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zoneID), StartRecordName: aws.String(domain)}
	var out []cluster.DNSRecord
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		page, err := d.api.ListResourceRecordSets(cctx, in)
		cancel()
		if err != nil {
			return nil, err
		}
		for _, rr := range page.ResourceRecordSets {
			name := strings.ToLower(aws.ToString(rr.Name))
			if pastDomain(name, domain) {
				return out, nil
			}
			typ := string(rr.Type)
			if !d.spec.Owns(name) || !publishedType(typ) {
				continue
			}
			if rr.AliasTarget != nil || rr.SetIdentifier != nil {
				d.log.Debug("ignoring a record with a routing policy or an alias", "name", name, "type", typ)
				continue
			}
			rec := cluster.DNSRecord{Name: name, Type: typ, TTL: aws.ToInt64(rr.TTL)}
			for _, v := range rr.ResourceRecords {
				rec.Values = append(rec.Values, aws.ToString(v.Value))
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

// Apply sends the changes as one change batch, which Route53 applies all or
// nothing. Nothing to change sends nothing.
func (d *DNS) Apply(ctx context.Context, upserts, deletes []cluster.DNSRecord) error {
	if len(upserts) == 0 && len(deletes) == 0 {
		return nil
	}
	zoneID, err := d.zone(ctx)
	if err != nil {
		return err
	}
	var changes []r53types.Change
	for _, r := range deletes {
		changes = append(changes, r53types.Change{Action: r53types.ChangeActionDelete, ResourceRecordSet: recordSet(r)})
	}
	for _, r := range upserts {
		changes = append(changes, r53types.Change{Action: r53types.ChangeActionUpsert, ResourceRecordSet: recordSet(r)})
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err = d.api.ChangeResourceRecordSets(cctx, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(zoneID),
		ChangeBatch: &r53types.ChangeBatch{
			Comment: aws.String("etcd-appliance: members of " + d.spec.Domain()),
			Changes: changes,
		},
	})
	if err != nil {
		d.forgetZone(err)
		return fmt.Errorf("changing %d records of %s in hosted zone %s: %w", len(changes), d.spec.Domain(), zoneID, err)
	}
	d.log.Debug("changed records", "zone", zoneID, "upserts", len(upserts), "deletes", len(deletes))
	return nil
}

func recordSet(r cluster.DNSRecord) *r53types.ResourceRecordSet {
	rs := &r53types.ResourceRecordSet{Name: aws.String(r.Name), Type: r53types.RRType(r.Type), TTL: aws.Int64(r.TTL)}
	for _, v := range r.Values {
		rs.ResourceRecords = append(rs.ResourceRecords, r53types.ResourceRecord{Value: aws.String(v)})
	}
	return rs
}

// zone finds the hosted zone's id by its name, once.
func (d *DNS) zone(ctx context.Context) (string, error) {
	d.mu.Lock()
	id := d.zoneID
	d.mu.Unlock()
	if id != "" {
		return id, nil
	}
	want := strings.ToLower(strings.TrimSuffix(d.spec.Zone, ".")) + "."
	var ids []string
	// Route53 lists zones sorted by name from DNSName on, zones of one name
	// next to each other.
	in := &route53.ListHostedZonesByNameInput{DNSName: aws.String(want)}
	for done := false; !done; {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		page, err := d.api.ListHostedZonesByName(cctx, in)
		cancel()
		if err != nil {
			return "", fmt.Errorf("finding hosted zone %s: %w", want, err)
		}
		for _, z := range page.HostedZones {
			if strings.ToLower(aws.ToString(z.Name)) != want {
				done = true
				break
			}
			ids = append(ids, strings.TrimPrefix(aws.ToString(z.Id), "/hostedzone/"))
		}
		if !page.IsTruncated {
			break
		}
		in.DNSName, in.HostedZoneId = page.NextDNSName, page.NextHostedZoneId
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("no hosted zone is named %s: create it or fix --hosted-zone", want)
	case 1:
	default:
		slices.Sort(ids)
		return "", fmt.Errorf("%d hosted zones are named %s (%s): the appliance cannot tell which to use; keep one",
			len(ids), want, strings.Join(ids, ", "))
	}
	d.mu.Lock()
	d.zoneID = ids[0]
	d.mu.Unlock()
	d.log.Info("found the hosted zone", "zone", want, "id", ids[0])
	return ids[0], nil
}

// forgetZone drops the cached zone id when Route53 says the zone is gone,
// so that a zone made again is found again.
func (d *DNS) forgetZone(err error) {
	var gone *r53types.NoSuchHostedZone
	if errors.As(err, &gone) {
		d.mu.Lock()
		d.zoneID = ""
		d.mu.Unlock()
	}
}

func publishedType(typ string) bool {
	switch typ {
	case cluster.RecordA, cluster.RecordAAAA, cluster.RecordSRV:
		return true
	}
	return false
}

// pastDomain reports whether a listed name comes after every name of the
// domain's subtree in Route53's order (names compared with their labels
// reversed). It is true only when the name is past the subtree both when
// the reversed names are compared label by label and as plain strings, so
// the listing stops early whichever of the two a server implements.
func pastDomain(name, domain string) bool {
	n, d := reversedLabels(name), reversedLabels(domain)
	if len(n) >= len(d) && slices.Equal(n[:len(d)], d) {
		return false // in the subtree
	}
	byLabel := slices.Compare(n, d) > 0
	byString := strings.Join(n, ".") > strings.Join(d, ".")+"/" // '/' sorts right after '.'
	return byLabel && byString
}

func reversedLabels(name string) []string {
	labels := strings.Split(strings.TrimSuffix(strings.ToLower(name), "."), ".")
	slices.Reverse(labels)
	return labels
}
