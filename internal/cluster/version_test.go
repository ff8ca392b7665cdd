package cluster

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckJoinVersion(t *testing.T) {
	tests := []struct {
		name    string
		in      JoinVersions
		wantWhy string // "" : allowed
	}{
		{"same version", JoinVersions{Joiner: "3.6.16", Cluster: "3.6.0"}, ""},
		{"a patch apart", JoinVersions{Joiner: "3.5.36", Cluster: "3.5.0"}, ""},
		{"one minor ahead", JoinVersions{Joiner: "3.6.16", Cluster: "3.5.0"}, ""},
		{"one minor ahead, v prefix and pre-release", JoinVersions{Joiner: "v3.6.0-rc.1", Cluster: "3.5"}, ""},
		{"two minors ahead", JoinVersions{Joiner: "3.7.0", Cluster: "3.5.0"}, "2 minors ahead of the cluster version 3.5: upgrade one minor at a time (3.6 first)"},
		{"another major", JoinVersions{Joiner: "4.0.0", Cluster: "3.6.0"}, "different majors"},
		{"one minor older", JoinVersions{Joiner: "3.5.36", Cluster: "3.6.0"}, "older than the cluster version 3.6"},
		{"one minor older, downgrade to it in progress", JoinVersions{Joiner: "3.5.36", Cluster: "3.6.0", DowngradeTarget: "3.5.0"}, ""},
		{"one minor older, downgrade elsewhere", JoinVersions{Joiner: "3.5.36", Cluster: "3.7.0", DowngradeTarget: "3.6.0"}, "the downgrade in progress goes to 3.6.0"},
		{"two minors older, downgrade to it claimed", JoinVersions{Joiner: "3.4.30", Cluster: "3.6.0", DowngradeTarget: "3.4.0"}, "older than the cluster version 3.6"},
		{"downgrade in progress, cluster already at its target", JoinVersions{Joiner: "3.5.36", Cluster: "3.5.0", DowngradeTarget: "3.5.0"}, ""},
		{"cluster version not decided", JoinVersions{Joiner: "3.6.16", Cluster: "not_decided"}, `cluster version "not_decided" is not decided`},
		{"cluster version unknown", JoinVersions{Joiner: "3.6.16"}, `cluster version "" is not decided`},
		{"own version unknown", JoinVersions{Joiner: "", Cluster: "3.6.0"}, "version of this instance's etcd is unknown"},
		{"own version garbage", JoinVersions{Joiner: "3.x", Cluster: "3.6.0"}, "version of this instance's etcd is unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckJoinVersion(tt.in)
			if tt.wantWhy == "" {
				if err != nil {
					t.Fatalf("CheckJoinVersion(%+v) = %v, want allowed", tt.in, err)
				}
				return
			}
			if !errors.Is(err, ErrVersionRefused) || !strings.Contains(err.Error(), tt.wantWhy) {
				t.Fatalf("CheckJoinVersion(%+v) = %v, want a refusal saying %q", tt.in, err, tt.wantWhy)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]Version{
		"3.5.36": {3, 5, 36}, "v3.6.0": {3, 6, 0}, "3.6.0-alpha.0": {3, 6, 0}, "3.5": {3, 5, 0}, " 3.6.16\n": {3, 6, 16},
	} {
		if got, err := ParseVersion(in); err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "3", "not_decided", "3.5.x", "3.-1.0", "1.2.3.4"} {
		if v, err := ParseVersion(in); err == nil {
			t.Errorf("ParseVersion(%q) = %v, want an error", in, v)
		}
	}
}
