package cluster

import (
	"slices"
	"testing"
)

func TestElsewhere(t *testing.T) {
	spec := &DNSSpec{Zone: "example.org.", Name: "orders", ClientPort: 2379}
	records := []DNSRecord{
		{Name: "orders.example.org.", Type: RecordA, Values: []string{"10.0.0.1", "10.0.0.2"}},
		{Name: "i-3.orders.example.org.", Type: RecordA, Values: []string{"10.0.0.3"}},
		{Name: "_etcd-client._tcp.orders.example.org.", Type: RecordSRV, Values: []string{"0 0 2379 i-3.orders.example.org."}},
		{Name: "billing.example.org.", Type: RecordA, Values: []string{"10.9.9.9"}},
		{Name: "v6.orders.example.org.", Type: RecordAAAA, Values: []string{"fd00::4"}},
	}
	got := Elsewhere(spec, records, []string{"http://10.0.0.2:2379", "http://10.0.0.7:2379"})
	want := []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379", "http://10.0.0.7:2379", "http://[fd00::4]:2379"}
	if !slices.Equal(got, want) {
		t.Errorf("Elsewhere = %q, want %q (the cluster's own A/AAAA records and the URLs seen, once each; never another name's)", got, want)
	}
	if got := Elsewhere(nil, records, nil); len(got) != 0 {
		t.Errorf("without DNS: %q, want nothing", got)
	}
}

// TestElsewhereWithTLS: with TLS the members' client URLs are https.
func TestElsewhereWithTLS(t *testing.T) {
	spec := &DNSSpec{Zone: "example.org.", Name: "orders", ClientPort: 2379, TLS: true}
	records := []DNSRecord{{Name: "orders.example.org.", Type: RecordA, Values: []string{"10.0.0.1"}}}
	if got, want := Elsewhere(spec, records, nil), []string{"https://10.0.0.1:2379"}; !slices.Equal(got, want) {
		t.Errorf("Elsewhere = %q, want %q", got, want)
	}
}
