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
		{"undecided right after a bootstrap: the started members stand for it",
			JoinVersions{Joiner: "3.7.3", Cluster: "3.0.0", Running: []string{"3.7.3", "3.7.3", "3.7.3"}}, ""},
		{"not_decided, with started members", JoinVersions{Joiner: "3.7.3", Cluster: "not_decided", Running: []string{"3.7.3"}}, ""},
		{"undecided and nobody started", JoinVersions{Joiner: "3.7.3", Cluster: "3.0.0"}, "7 minors ahead"},
		{"one minor behind the members is a decided cluster version: kept",
			JoinVersions{Joiner: "3.8.0", Cluster: "3.6.0", Running: []string{"3.7.3", "3.7.3"}}, "2 minors ahead"},
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

func TestCheckUpgradeFrom(t *testing.T) {
	for _, tc := range []struct {
		name    string
		next    string
		members map[string]string
		refuse  string // "": allowed
	}{
		{"3.6 members at the floor", "3.7.3", map[string]string{"i-1": "3.6.11", "i-2": "3.6.16"}, ""},
		{"a 3.6 member below 3.6.11", "3.7.3", map[string]string{"i-1": "3.6.16", "i-2": "3.6.5"}, "member i-2 runs etcd 3.6.5"},
		{"a 3.5 member below 3.5.26", "3.6.16", map[string]string{"i-1": "3.5.21"}, "3.5.26 or later"},
		{"members already of the new minor", "3.7.3", map[string]string{"i-1": "3.7.0", "i-2": "3.6.11"}, ""},
		{"a patch upgrade is never held", "3.6.16", map[string]string{"i-1": "3.6.5"}, ""},
		{"a minor without a floor", "3.5.36", map[string]string{"i-1": "3.4.1"}, ""},
		{"unreadable versions are the gate's", "3.7.3", map[string]string{"i-1": "", "i-2": "garbage"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckUpgradeFrom(tc.next, tc.members)
			if tc.refuse == "" {
				if err != nil {
					t.Fatalf("CheckUpgradeFrom = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrVersionRefused) || !strings.Contains(err.Error(), tc.refuse) {
				t.Fatalf("CheckUpgradeFrom = %v, want a refusal saying %q", err, tc.refuse)
			}
		})
	}
}
