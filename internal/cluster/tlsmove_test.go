package cluster

import (
	"strings"
	"testing"
)

func TestCheckTLSMove(t *testing.T) {
	plain := func(id ID, name string) Member {
		return Member{ID: id, Name: name, PeerURLs: []string{"http://" + name + ":2380"}, ClientURLs: []string{"http://" + name + ":2379"}}
	}
	moving := func(id ID, name string) Member {
		m := plain(id, name)
		m.ClientURLs = append(m.ClientURLs, "https://"+name+":2379")
		return m
	}
	switched := func(id ID, name string) Member {
		return Member{ID: id, Name: name, PeerURLs: []string{"https://" + name + ":2380"}, ClientURLs: []string{"https://" + name + ":2379"}}
	}
	for _, tc := range []struct {
		name    string
		members []Member
		waitFor []string // "" : may switch
	}{
		{"every other member runs with TLS", []Member{moving(1, "a"), moving(2, "b"), switched(3, "c")}, nil},
		{"a plaintext member holds the switch", []Member{moving(1, "a"), plain(2, "b"), moving(3, "c")}, []string{"[b]"}},
		{"an unstarted member holds it, named by its id", []Member{moving(1, "a"), {ID: 0xab, PeerURLs: []string{"http://x:2380"}}, moving(3, "c")},
			[]string{"[ab]"}},
		{"this member's own URLs do not count", []Member{plain(1, "a"), moving(2, "b")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckTLSMove(tc.members, 1)
			if (err == nil) != (tc.waitFor == nil) {
				t.Fatalf("CheckTLSMove = %v, want waiting for %v", err, tc.waitFor)
			}
			for _, w := range tc.waitFor {
				if !strings.Contains(err.Error(), w) || !strings.Contains(err.Error(), "--tls") {
					t.Errorf("%q does not name %s and --tls", err, w)
				}
			}
		})
	}
	if got := WithScheme("http://10.0.0.1:2380", "https"); got != "https://10.0.0.1:2380" {
		t.Errorf("WithScheme = %s", got)
	}
	if got := WithScheme("https://[fd00::1]:2380", "http"); got != "http://[fd00::1]:2380" {
		t.Errorf("WithScheme = %s", got)
	}
}
