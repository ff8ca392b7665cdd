package etcd

import "testing"

func TestParseVersionOutput(t *testing.T) {
	for _, tt := range []struct {
		out, want string
		ok        bool
	}{
		{"etcd Version: 3.5.36\nGit SHA: Not provided\nGo Version: go1.26\n", "3.5.36", true},
		{"etcd Version: 3.6.16\nGit SHA: abc\nGo Version: go1.24\nGo OS/Arch: linux/amd64\n", "3.6.16", true},
		{"etcd Version:\n", "", false},
		{"usage: etcd [flags]\n", "", false},
	} {
		if got, ok := parseVersionOutput(tt.out); got != tt.want || ok != tt.ok {
			t.Errorf("parseVersionOutput(%q) = %q, %v; want %q, %v", tt.out, got, ok, tt.want, tt.ok)
		}
	}
}
