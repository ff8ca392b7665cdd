package aws_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/provider/aws"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

var dnsTestSpec = cluster.DNSSpec{Zone: "example.org.", Name: "etcd", TTL: 60, ClientPort: 2379, PeerPort: 2380}

func healthyVoter(name, addr string) cluster.MemberStatus {
	return cluster.MemberStatus{Name: name, Role: cluster.RoleVoter, Healthy: true,
		PeerURL: "http://" + addr + ":2380", ClientURL: "http://" + addr + ":2379"}
}

// dnsAdmin is the test's own Route53 client: it makes zones and the records
// of others that the appliance must leave alone.
type dnsAdmin struct{ r53 *route53.Client }

func newDNSAdmin(endpoint string) dnsAdmin {
	return dnsAdmin{r53: route53.NewFromConfig(sdkaws.Config{
		Region:       motoRegion,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: sdkaws.String(endpoint),
	})}
}

func (a dnsAdmin) createZone(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	out, err := a.r53.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{
		Name: sdkaws.String(name), CallerReference: sdkaws.String(fmt.Sprintf("%s-%d", name, time.Now().UnixNano())),
	})
	if err != nil {
		t.Fatalf("creating hosted zone %s: %v", name, err)
	}
	return sdkaws.ToString(out.HostedZone.Id)
}

func (a dnsAdmin) upsert(t *testing.T, ctx context.Context, zoneID string, recs ...cluster.DNSRecord) {
	t.Helper()
	var changes []r53types.Change
	for _, r := range recs {
		rs := &r53types.ResourceRecordSet{Name: sdkaws.String(r.Name), Type: r53types.RRType(r.Type), TTL: sdkaws.Int64(r.TTL)}
		for _, v := range r.Values {
			rs.ResourceRecords = append(rs.ResourceRecords, r53types.ResourceRecord{Value: sdkaws.String(v)})
		}
		changes = append(changes, r53types.Change{Action: r53types.ChangeActionUpsert, ResourceRecordSet: rs})
	}
	_, err := a.r53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: sdkaws.String(zoneID), ChangeBatch: &r53types.ChangeBatch{Changes: changes},
	})
	if err != nil {
		t.Fatalf("creating records: %v", err)
	}
}

// all lists every record of the zone, as name/type strings.
func (a dnsAdmin) all(t *testing.T, ctx context.Context, zoneID string) []string {
	t.Helper()
	var out []string
	in := &route53.ListResourceRecordSetsInput{HostedZoneId: sdkaws.String(zoneID)}
	for {
		page, err := a.r53.ListResourceRecordSets(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		for _, rr := range page.ResourceRecordSets {
			out = append(out, sdkaws.ToString(rr.Name)+" "+string(rr.Type))
		}
		if !page.IsTruncated {
			break
		}
		in.StartRecordName, in.StartRecordType = page.NextRecordName, page.NextRecordType
	}
	slices.Sort(out)
	return out
}

func newTestDNS(t *testing.T, endpoint string, spec cluster.DNSSpec) (*aws.DNS, *prometheus.Registry) {
	t.Helper()
	testcluster.IsolateAWSEnv(t)
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := aws.New(ctx, aws.Options{Region: motoRegion, Endpoint: endpoint, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.DNS(spec)
	if err != nil {
		t.Fatal(err)
	}
	return d, reg
}

// TestDNSLifecycle walks the records of a cluster through its life against
// moto: published for three members, one member replaced, a cycle with no
// change, and the cluster withdrawn; the zone's other records stay as they
// were throughout.
func TestDNSLifecycle(t *testing.T) {
	moto := startMoto(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := newDNSAdmin(moto.URL)
	zoneID := admin.createZone(t, ctx, "example.org")
	admin.createZone(t, ctx, "other.example.org") // a zone whose name starts like ours

	// Records of others: beside the cluster's names, sorted into its
	// subtree by moto's string order (etcd-2), and deeper in the subtree.
	foreign := []cluster.DNSRecord{
		{Name: "www.example.org.", Type: "A", TTL: 300, Values: []string{"192.0.2.1"}},
		{Name: "etcd-2.example.org.", Type: "A", TTL: 60, Values: []string{"192.0.2.2"}},
		{Name: "i-0a.etcd-2.example.org.", Type: "A", TTL: 60, Values: []string{"192.0.2.3"}},
		{Name: "etcd.example.org.", Type: "TXT", TTL: 300, Values: []string{`"owner=ops"`}},
		{Name: "x.i-0a.etcd.example.org.", Type: "A", TTL: 300, Values: []string{"192.0.2.4"}},
	}
	admin.upsert(t, ctx, zoneID, foreign...)
	// Enough records in the cluster's subtree that reading it takes more
	// than one page (Route53 and moto: 300 records a page).
	var deep []cluster.DNSRecord
	for i := range 310 {
		deep = append(deep, cluster.DNSRecord{Name: fmt.Sprintf("n%03d.deep.etcd.example.org.", i), Type: "A", TTL: 300, Values: []string{"192.0.2.9"}})
	}
	admin.upsert(t, ctx, zoneID, deep...)
	before := admin.all(t, ctx, zoneID)

	d, reg := newTestDNS(t, moto.URL, dnsTestSpec)
	// cycle is one housekeeping pass as the leader does it: read back,
	// decide, apply. It returns the plan applied.
	cycle := func(members []cluster.MemberStatus, withdraw bool) cluster.DNSPlan {
		t.Helper()
		have, err := d.Records(ctx)
		if err != nil {
			t.Fatalf("Records: %v", err)
		}
		plan := cluster.DecideDNS(dnsTestSpec, members, have, withdraw)
		if err := d.Apply(ctx, plan.Upserts, plan.Deletes); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		return plan
	}
	readBack := func() []cluster.DNSRecord {
		t.Helper()
		got, err := d.Records(ctx)
		if err != nil {
			t.Fatalf("Records: %v", err)
		}
		return got
	}
	changes := func() float64 { return testcluster.AWSRequests(t, reg, "ChangeResourceRecordSets", "ok") }

	three := []cluster.MemberStatus{
		healthyVoter("i-0a", "127.0.1.4"), healthyVoter("i-0b", "127.0.1.5"), healthyVoter("i-0c", "127.0.1.6"),
	}
	if got := readBack(); len(got) != 0 {
		t.Fatalf("a fresh zone reads back %v, want no owned record", got)
	}
	want := cluster.WantedRecords(dnsTestSpec, three)
	cycle(three, false)
	if got := readBack(); !cluster.EqualRecords(got, want) {
		t.Fatalf("read back after publishing:\n%v\nwant\n%v", got, want)
	}
	if n := changes(); n != 1 {
		t.Errorf("publishing took %v change batches, want 1", n)
	}

	// i-0c replaced by i-0d at a new address: one batch with the diff.
	replaced := []cluster.MemberStatus{three[0], three[1], healthyVoter("i-0d", "127.0.1.7")}
	plan := cycle(replaced, false)
	if got := names(plan.Deletes); !reflect.DeepEqual(got, []string{"i-0c.etcd.example.org."}) {
		t.Errorf("replacement deletes %q", got)
	}
	if got := names(plan.Upserts); !reflect.DeepEqual(got, []string{"_etcd-client._tcp.etcd.example.org.",
		"_etcd-server._tcp.etcd.example.org.", "etcd.example.org.", "i-0d.etcd.example.org."}) {
		t.Errorf("replacement upserts %q", got)
	}
	if n := changes(); n != 2 {
		t.Errorf("after the replacement: %v change batches, want 2", n)
	}
	if got, want := readBack(), cluster.WantedRecords(dnsTestSpec, replaced); !cluster.EqualRecords(got, want) {
		t.Fatalf("read back after the replacement:\n%v\nwant\n%v", got, want)
	}

	// Steady state: nothing to change, no change sent (§7).
	if plan := cycle(replaced, false); !plan.Empty() {
		t.Errorf("steady state plans %+v, want no change", plan)
	}
	if n := changes(); n != 2 {
		t.Errorf("steady state sent a change: %v batches, want still 2", n)
	}

	// An empty health view keeps the records.
	if plan := cycle(nil, false); !plan.Empty() || plan.Held == "" {
		t.Errorf("empty view plans %+v, want the records held", plan)
	}
	if got := readBack(); len(got) == 0 {
		t.Fatal("an empty health view removed the records")
	}

	// Withdrawn: every owned record goes, the others stay.
	cycle(nil, true)
	if got := readBack(); len(got) != 0 {
		t.Errorf("after withdrawing, the zone still holds %v", got)
	}
	if after := admin.all(t, ctx, zoneID); !reflect.DeepEqual(after, before) {
		t.Errorf("the zone's other records changed:\nbefore %q\nafter  %q", before, after)
	}
	// Ten reads of a subtree of over 300 records: two pages each.
	if n := testcluster.AWSRequests(t, reg, "ListResourceRecordSets", "ok"); n != 20 {
		t.Errorf("read the records in %v pages, want 20 (10 reads of 2 pages)", n)
	}
	if n := testcluster.AWSRequests(t, reg, "ListHostedZonesByName", "ok"); n != 1 {
		t.Errorf("looked the zone up %v times, want once", n)
	}
}

func TestDNSZoneMissingOrAmbiguous(t *testing.T) {
	moto := startMoto(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := newDNSAdmin(moto.URL)

	d, _ := newTestDNS(t, moto.URL, dnsTestSpec)
	if _, err := d.Records(ctx); err == nil || !strings.Contains(err.Error(), "no hosted zone is named example.org.") {
		t.Errorf("without the zone: Records error %v", err)
	}
	// Found once it exists: a missing zone is not remembered.
	admin.createZone(t, ctx, "example.org")
	if _, err := d.Records(ctx); err != nil {
		t.Errorf("after creating the zone: %v", err)
	}

	admin.createZone(t, ctx, "example.org")
	d2, _ := newTestDNS(t, moto.URL, dnsTestSpec)
	if err := d2.Apply(ctx, cluster.WantedRecords(dnsTestSpec, []cluster.MemberStatus{healthyVoter("i-a", "127.0.1.4")}), nil); err == nil ||
		!strings.Contains(err.Error(), "2 hosted zones are named example.org.") {
		t.Errorf("two zones of the name: Apply error %v", err)
	}
}

// TestDNSThrottlingRetried: Route53 throttling is retried and counted, and
// the read succeeds.
func TestDNSThrottlingRetried(t *testing.T) {
	moto := startMoto(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	newDNSAdmin(moto.URL).createZone(t, ctx, "example.org")
	proxy := startFaultProxy(t, moto.URL,
		testcluster.Fault{Service: "route53", Status: 400, Code: "Throttling", Times: 1},
		testcluster.Fault{Service: "route53", Status: 400, Code: "PriorRequestNotComplete", Times: 1},
	)

	d, reg := newTestDNS(t, proxy.URL, dnsTestSpec)
	if _, err := d.Records(ctx); err != nil {
		t.Fatalf("Records after throttling: %v", err)
	}
	if n := injected(proxy); n != 2 {
		t.Errorf("injected %d faults, want 2", n)
	}
	if n := testcluster.AWSRequests(t, reg, "ListHostedZonesByName", "Throttling") + testcluster.AWSRequests(t, reg, "ListHostedZonesByName", "PriorRequestNotComplete"); n != 2 {
		t.Errorf("counted %v throttled attempts, want 2", n)
	}
}

func TestDNSRejectsInvalidSpec(t *testing.T) {
	testcluster.IsolateAWSEnv(t)
	p, err := aws.New(context.Background(), aws.Options{Region: motoRegion, Endpoint: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DNS(cluster.DNSSpec{Zone: "example.org", Name: "my_cluster", TTL: 60}); err == nil {
		t.Error("DNS accepted the name my_cluster")
	}
}

func names(rs []cluster.DNSRecord) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}
