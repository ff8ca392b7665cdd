package cluster

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// CA rotation with --tls auto (§4.8): three steps an operator takes with
// `etcd-appliance ca`, each stored in the CA store and rolled out by every
// appliance before the next may be taken. CAs are named by the SHA-256
// fingerprint of their certificate (hex), which is all this package sees.

// CAStep is a step of a CA rotation.
type CAStep string

const (
	// CAIntroduce stores a new CA, trusted beside the signer, not signing.
	CAIntroduce CAStep = "introduce"
	// CAPromote makes the introduced CA the signer; the old one stays
	// trusted.
	CAPromote CAStep = "promote"
	// CARetire drops every CA but the signer from the bundle.
	CARetire CAStep = "retire"
)

// CAState is the stored cluster CA as fingerprints: the signer, the
// introduced CA (empty outside a rotation's first step) and every trusted
// CA.
type CAState struct {
	Signer  string
	Next    string
	Trusted []string
}

// TLSStatus is what an appliance with --tls auto reports of its TLS on
// /v1/status: the bundle it trusts (as it last read the CA store), the
// bundle its running etcd was started with — etcd reads its trusted CAs
// only at start — and the CA that issued the certificate it serves.
type TLSStatus struct {
	// Trusted are the fingerprints of the CAs the appliance trusts, its
	// API and its clients.
	Trusted []string `json:"trusted"`
	// EtcdTrusted are those of the bundle the running etcd was started
	// with; empty while etcd does not run.
	EtcdTrusted []string `json:"etcd_trusted,omitempty"`
	// Signer is the store's signer as last read, Next the introduced CA.
	Signer string `json:"signer"`
	Next   string `json:"next,omitempty"`
	// CertificateIssuer is the CA that issued the certificate in use.
	CertificateIssuer   string    `json:"certificate_issuer"`
	CertificateNotAfter time.Time `json:"certificate_not_after"`
	// CARead is when the CA store was last read successfully.
	CARead time.Time `json:"ca_read"`
	// Rotation says what the member does or waits for to roll the stored
	// CA out, empty when it runs what is stored.
	Rotation string `json:"rotation,omitempty"`
}

// EtcdCurrent reports whether the running etcd trusts exactly what the
// appliance does; an etcd that does not run starts with that.
func (t TLSStatus) EtcdCurrent() bool {
	return len(t.EtcdTrusted) == 0 || sameSet(t.Trusted, t.EtcdTrusted)
}

// MemberTLS is one member's report for a rotation check: its TLSStatus,
// or why it could not be read.
type MemberTLS struct {
	Name string
	TLS  *TLSStatus
	Err  string
}

// CheckCAStep says whether step may be taken now, on the stored CA ca and
// the members' reports: nil when it is safe, otherwise why not, naming the
// first member that is not ready. Every member of the cluster must have
// reported: a member that did not answer may run anything.
//
//   - introduce: no rotation in progress (one CA trusted). Safe at any
//     time otherwise: nothing is issued by the new CA yet.
//   - promote: a CA was introduced, and on every member both the
//     appliance and the running etcd trust it; a member issued a
//     certificate by it would otherwise be refused by an etcd that does
//     not.
//   - retire: the signer was promoted and every member serves a
//     certificate it issued; dropping the old CA otherwise cuts off a
//     member still showing an old certificate.
func CheckCAStep(step CAStep, ca CAState, members []MemberTLS) error {
	switch step {
	case CAIntroduce:
		if ca.Next != "" {
			return fmt.Errorf("CA %s is introduced already: promote it", short(ca.Next))
		}
		if len(ca.Trusted) > 1 {
			return fmt.Errorf("a rotation is in progress (%d CAs trusted): retire the old CA first", len(ca.Trusted))
		}
		return nil
	case CAPromote:
		if ca.Next == "" {
			return fmt.Errorf("no CA is introduced: run introduce first")
		}
	case CARetire:
		if ca.Next != "" {
			return fmt.Errorf("CA %s is introduced but not promoted: promote it first", short(ca.Next))
		}
		if len(ca.Trusted) < 2 {
			return fmt.Errorf("only the signer %s is trusted: nothing to retire", short(ca.Signer))
		}
	default:
		return fmt.Errorf("unknown step %q: want introduce, promote or retire", step)
	}
	if len(members) == 0 {
		return fmt.Errorf("no member reported its TLS")
	}
	for _, m := range members {
		if m.Err != "" {
			return fmt.Errorf("member %s did not report its TLS: %s", m.Name, m.Err)
		}
		if m.TLS == nil {
			return fmt.Errorf("member %s reports no TLS of --tls auto", m.Name)
		}
		t := *m.TLS
		switch step {
		case CAPromote:
			if !slices.Contains(t.Trusted, ca.Next) {
				return fmt.Errorf("the appliance of %s has not read the bundle with CA %s yet", m.Name, short(ca.Next))
			}
			if !slices.Contains(t.EtcdTrusted, ca.Next) {
				return fmt.Errorf("etcd on %s was not restarted with the bundle trusting CA %s yet (%s)", m.Name, short(ca.Next),
					orNone(t.Rotation))
			}
		case CARetire:
			if t.Signer != ca.Signer {
				return fmt.Errorf("the appliance of %s has not read the promotion of CA %s yet", m.Name, short(ca.Signer))
			}
			if t.CertificateIssuer != ca.Signer {
				return fmt.Errorf("%s still serves a certificate of CA %s, not of the signer %s", m.Name,
					short(t.CertificateIssuer), short(ca.Signer))
			}
		}
	}
	return nil
}

// RotationProgress is what a member does or waits for to run the stored
// CA, "" when it runs it: its appliance trusts what the store holds, its
// etcd runs with that bundle, its certificate is of the signer.
func RotationProgress(t TLSStatus) string {
	switch {
	case !t.EtcdCurrent():
		return fmt.Sprintf("etcd restarts in turn to trust %d CAs (runs with %d)", len(t.Trusted), len(t.EtcdTrusted))
	case t.CertificateIssuer != t.Signer:
		return "renewing the certificate under CA " + short(t.Signer)
	}
	return ""
}

// ShortFingerprint is the first 16 hex digits of a fingerprint, as logs
// and tables show it.
func ShortFingerprint(fp string) string { return short(fp) }

func short(fp string) string {
	if fp == "" {
		return "(none)"
	}
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}

func orNone(s string) string {
	if s == "" {
		return "it reports nothing pending"
	}
	return strings.TrimSpace(s)
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
