package cluster

import (
	"fmt"
	"slices"
	"strings"
)

// The move of a running cluster from plaintext to TLS (SPEC §4.8). Each
// instance restarted with --tls on first runs its member with the
// certificates but its peer URL still http, serving clients both ways; its
// etcd then advertises an https client URL besides the http one. A member
// switches its peer URL to https only once every member can dial https
// peers, which is what an https client URL says: before that, a plaintext
// member, which has no certificate, could not reach it.

// CheckTLSMove is nil when member self may switch its peer URL to https:
// every other member advertises an https client URL. Otherwise it names the
// members still to be restarted with TLS.
func CheckTLSMove(members []Member, self ID) error {
	var plain []string
	for _, m := range members {
		if m.ID == self {
			continue
		}
		if !slices.ContainsFunc(m.ClientURLs, func(u string) bool { return strings.HasPrefix(u, "https://") }) {
			name := m.Name
			if name == "" {
				name = m.ID.String()
			}
			plain = append(plain, name)
		}
	}
	if len(plain) == 0 {
		return nil
	}
	slices.Sort(plain)
	return fmt.Errorf("moving to TLS: members %v do not run with TLS yet (restart their instances with --tls); "+
		"this member's peer URL stays http until they do", plain)
}

// WithScheme is u with scheme (http or https) instead of its own.
func WithScheme(u, scheme string) string {
	if _, rest, ok := strings.Cut(u, "://"); ok {
		return scheme + "://" + rest
	}
	return u
}
