package cluster

import (
	"net"
	"slices"
	"strconv"
)

// Elsewhere lists the client URLs where a live cluster may run outside the
// instances that answered: the members the cluster's own DNS records name
// (A and AAAA records under spec's domain, which the leader keeps to the
// healthy members), and the client URLs seen before (remembered from peers'
// answers and member lists). Before an instance creates, restores or
// recovers a cluster it asks every one of them: instances taken out of
// service (Standby, detached) keep running their members, and a second
// cluster beside them would split the clients.
func Elsewhere(spec *DNSSpec, records []DNSRecord, seen []string) []string {
	var out []string
	if spec != nil {
		scheme := "http"
		if spec.TLS {
			scheme = "https"
		}
		for _, r := range records {
			if !spec.Owns(r.Name) || (r.Type != RecordA && r.Type != RecordAAAA) {
				continue
			}
			for _, ip := range r.Values {
				if net.ParseIP(ip) != nil {
					out = append(out, scheme+"://"+net.JoinHostPort(ip, strconv.Itoa(spec.ClientPort)))
				}
			}
		}
	}
	out = append(out, seen...)
	slices.Sort(out)
	return slices.Compact(out)
}
