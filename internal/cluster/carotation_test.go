package cluster

import (
	"strings"
	"testing"
)

func TestCheckCAStep(t *testing.T) {
	const old, next = "aaaa0000aaaa0000aaaa", "bbbb1111bbbb1111bbbb"
	single := CAState{Signer: old, Trusted: []string{old}}
	introduced := CAState{Signer: old, Next: next, Trusted: []string{old, next}}
	promoted := CAState{Signer: next, Trusted: []string{next, old}}
	member := func(name string, trusted, etcd []string, signer, issuer string) MemberTLS {
		return MemberTLS{Name: name, TLS: &TLSStatus{Trusted: trusted, EtcdTrusted: etcd, Signer: signer, CertificateIssuer: issuer}}
	}
	both := []string{old, next}
	rolledOut := []MemberTLS{member("i-1", both, both, old, old), member("i-2", both, both, old, old)}
	renewed := []MemberTLS{member("i-1", both, both, next, next), member("i-2", both, both, next, next)}
	for _, tc := range []struct {
		name    string
		step    CAStep
		ca      CAState
		members []MemberTLS
		refused string // "" when allowed
	}{
		{"introduce outside a rotation", CAIntroduce, single, nil, ""},
		{"introduce twice", CAIntroduce, introduced, nil, "introduced already"},
		{"introduce before retiring", CAIntroduce, promoted, nil, "retire the old CA first"},
		{"promote without introduce", CAPromote, single, rolledOut, "run introduce first"},
		{"promote when rolled out", CAPromote, introduced, rolledOut, ""},
		{"promote before etcd restarted", CAPromote, introduced,
			[]MemberTLS{rolledOut[0], member("i-2", both, []string{old}, old, old)}, "etcd on i-2 was not restarted"},
		{"promote before the appliance read the store", CAPromote, introduced,
			[]MemberTLS{member("i-1", []string{old}, []string{old}, old, old), rolledOut[1]}, "appliance of i-1 has not read"},
		{"promote with a member unanswered", CAPromote, introduced,
			[]MemberTLS{rolledOut[0], {Name: "i-2", Err: "connection refused"}}, "i-2 did not report"},
		{"promote with a member without TLS", CAPromote, introduced, []MemberTLS{rolledOut[0], {Name: "i-2"}}, "reports no TLS"},
		{"promote with no member", CAPromote, introduced, nil, "no member reported"},
		{"retire when renewed", CARetire, promoted, renewed, ""},
		{"retire before promote", CARetire, introduced, renewed, "promote it first"},
		{"retire with nothing to retire", CARetire, single, renewed, "nothing to retire"},
		{"retire while a certificate of the old CA is served", CARetire, promoted,
			[]MemberTLS{renewed[0], member("i-2", both, both, next, old)}, "i-2 still serves a certificate of CA aaaa0000aaaa0000"},
		{"retire before the appliance read the promotion", CARetire, promoted,
			[]MemberTLS{member("i-1", both, both, old, old), renewed[1]}, "has not read the promotion"},
		{"unknown step", CAStep("rotate"), single, nil, "unknown step"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCAStep(tc.step, tc.ca, tc.members)
			switch {
			case tc.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refused != "" && err == nil:
				t.Fatalf("allowed, want refused with %q", tc.refused)
			case tc.refused != "" && !strings.Contains(err.Error(), tc.refused):
				t.Fatalf("refused with %q, want %q", err, tc.refused)
			}
		})
	}
}

func TestRotationProgress(t *testing.T) {
	for _, tc := range []struct {
		st   TLSStatus
		want string
	}{
		{TLSStatus{Trusted: []string{"a"}, EtcdTrusted: []string{"a"}, Signer: "a", CertificateIssuer: "a"}, ""},
		{TLSStatus{Trusted: []string{"a", "b"}, Signer: "a", CertificateIssuer: "a"}, ""}, // etcd not running
		{TLSStatus{Trusted: []string{"a", "b"}, EtcdTrusted: []string{"a"}, Signer: "a", CertificateIssuer: "a"}, "etcd restarts in turn"},
		{TLSStatus{Trusted: []string{"b", "a"}, EtcdTrusted: []string{"a", "b"}, Signer: "b", CertificateIssuer: "a"}, "renewing the certificate"},
	} {
		got := RotationProgress(tc.st)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("RotationProgress(%+v) = %q, want %q", tc.st, got, tc.want)
		}
	}
}
