package etcd

import (
	"slices"
	"strings"
	"testing"
)

// baseSpec is a valid spec of the first member of a three-member cluster.
func baseSpec() ServerSpec {
	return ServerSpec{
		Name:        "i-1",
		DataDir:     "/var/lib/etcd-appliance/etcd",
		Address:     "10.0.0.1",
		ClientPort:  2379,
		PeerPort:    2380,
		MetricsPort: 2381,
		InitialCluster: []NamedPeer{
			{Name: "i-1", PeerURL: "http://10.0.0.1:2380"},
			{Name: "i-2", PeerURL: "http://10.0.0.2:2380"},
			{Name: "i-3", PeerURL: "http://10.0.0.3:2380"},
		},
		InitialClusterState: StateNew,
		ClusterToken:        "stack-a",
	}
}

func TestArgs(t *testing.T) {
	common := []string{
		"--name=i-1",
		"--data-dir=/var/lib/etcd-appliance/etcd",
		"--listen-client-urls=http://10.0.0.1:2379",
		"--advertise-client-urls=http://10.0.0.1:2379",
		"--listen-peer-urls=http://10.0.0.1:2380",
		"--initial-advertise-peer-urls=http://10.0.0.1:2380",
		"--listen-metrics-urls=http://10.0.0.1:2381",
		"--initial-cluster=i-1=http://10.0.0.1:2380,i-2=http://10.0.0.2:2380,i-3=http://10.0.0.3:2380",
		"--initial-cluster-state=new",
		"--initial-cluster-token=stack-a",
		"--strict-reconfig-check",
	}
	logging := []string{"--logger=zap", "--log-outputs=stderr"}
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }

	tests := []struct {
		name   string
		modify func(*ServerSpec)
		want   []string
	}{
		{
			name:   "minimal",
			modify: func(*ServerSpec) {},
			want:   cat(common, logging),
		},
		{
			name: "existing cluster, given order kept",
			modify: func(s *ServerSpec) {
				s.InitialClusterState = StateExisting
				s.InitialCluster = []NamedPeer{
					{Name: "i-3", PeerURL: "http://10.0.0.3:2380"},
					{Name: "i-1", PeerURL: "http://10.0.0.1:2380"},
				}
			},
			want: cat(common[:7], []string{
				"--initial-cluster=i-3=http://10.0.0.3:2380,i-1=http://10.0.0.1:2380",
				"--initial-cluster-state=existing",
				"--initial-cluster-token=stack-a",
				"--strict-reconfig-check",
			}, logging),
		},
		{
			name: "compaction, quota, force-new-cluster",
			modify: func(s *ServerSpec) {
				s.AutoCompactionRetention = "1h"
				s.QuotaBackendBytes = 8 << 30
				s.ForceNewCluster = true
			},
			want: cat(common, []string{
				"--auto-compaction-mode=periodic",
				"--auto-compaction-retention=1h",
				"--quota-backend-bytes=8589934592",
				"--force-new-cluster",
			}, logging),
		},
		{
			name: "extra flags last and verbatim",
			modify: func(s *ServerSpec) {
				s.ExtraFlags = []string{"--snapshot-count=5000", "--heartbeat-interval", "200", "--strict-reconfig-check=false"}
			},
			want: cat(common, logging,
				[]string{"--snapshot-count=5000", "--heartbeat-interval", "200", "--strict-reconfig-check=false"}),
		},
		{
			name: "mutual TLS on the client and peer ports, metrics in plaintext",
			modify: func(s *ServerSpec) {
				s.TLS = &TLSFiles{CertFile: "/d/tls/member.pem", KeyFile: "/d/tls/member.pem", TrustedCAFile: "/d/tls/ca.pem",
					PeerAllowedHostname: "member.etcd-appliance.invalid"}
				s.InitialCluster = []NamedPeer{{Name: "i-1", PeerURL: "https://10.0.0.1:2380"}}
			},
			want: cat([]string{
				"--name=i-1",
				"--data-dir=/var/lib/etcd-appliance/etcd",
				"--listen-client-urls=https://10.0.0.1:2379",
				"--advertise-client-urls=https://10.0.0.1:2379",
				"--listen-peer-urls=https://10.0.0.1:2380",
				"--initial-advertise-peer-urls=https://10.0.0.1:2380",
				"--listen-metrics-urls=http://10.0.0.1:2381",
				"--initial-cluster=i-1=https://10.0.0.1:2380",
			}, common[8:], []string{
				"--cert-file=/d/tls/member.pem", "--key-file=/d/tls/member.pem", "--trusted-ca-file=/d/tls/ca.pem",
				"--client-cert-auth",
				"--peer-cert-file=/d/tls/member.pem", "--peer-key-file=/d/tls/member.pem", "--peer-trusted-ca-file=/d/tls/ca.pem",
				"--peer-client-cert-auth",
				"--peer-cert-allowed-hostname=member.etcd-appliance.invalid",
			}, logging),
		},
		{
			name: "moving to TLS: the peer URL still http, clients served both ways, the http URL advertised first",
			modify: func(s *ServerSpec) {
				s.TLS = &TLSFiles{CertFile: "/d/tls/member.pem", KeyFile: "/d/tls/member.pem", TrustedCAFile: "/d/tls/ca.pem"}
				s.PeerPlaintext, s.ClientPlaintext = true, true
			},
			want: cat([]string{
				"--name=i-1",
				"--data-dir=/var/lib/etcd-appliance/etcd",
				"--listen-client-urls=http://10.0.0.1:2379,https://10.0.0.1:2379",
				"--advertise-client-urls=http://10.0.0.1:2379,https://10.0.0.1:2379",
				"--listen-peer-urls=http://10.0.0.1:2380",
				"--initial-advertise-peer-urls=http://10.0.0.1:2380",
			}, common[6:], []string{
				"--cert-file=/d/tls/member.pem", "--key-file=/d/tls/member.pem", "--trusted-ca-file=/d/tls/ca.pem",
				"--client-cert-auth",
				"--peer-cert-file=/d/tls/member.pem", "--peer-key-file=/d/tls/member.pem", "--peer-trusted-ca-file=/d/tls/ca.pem",
				"--peer-client-cert-auth",
			}, logging),
		},
		{
			name: "IPv6 address is bracketed",
			modify: func(s *ServerSpec) {
				s.Address = "fd00::1"
				s.InitialCluster = []NamedPeer{{Name: "i-1", PeerURL: "http://[fd00::1]:2380"}}
			},
			want: cat([]string{
				"--name=i-1",
				"--data-dir=/var/lib/etcd-appliance/etcd",
				"--listen-client-urls=http://[fd00::1]:2379",
				"--advertise-client-urls=http://[fd00::1]:2379",
				"--listen-peer-urls=http://[fd00::1]:2380",
				"--initial-advertise-peer-urls=http://[fd00::1]:2380",
				"--listen-metrics-urls=http://[fd00::1]:2381",
				"--initial-cluster=i-1=http://[fd00::1]:2380",
			}, common[8:], logging),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec()
			tt.modify(&s)
			if err := s.Validate(); err != nil {
				t.Fatalf("test spec is invalid: %v", err)
			}
			got := Args(s)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Args() =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		modify  func(*ServerSpec)
		wantErr []string // substrings of the error; none means valid
	}{
		{name: "valid", modify: func(*ServerSpec) {}},
		{name: "valid IPv6", modify: func(s *ServerSpec) {
			s.Address = "fd00::1"
			s.InitialCluster = []NamedPeer{{Name: "i-1", PeerURL: "http://[fd00::1]:2380"}}
		}},
		{name: "TLS without a CA file", modify: func(s *ServerSpec) {
			s.TLS = &TLSFiles{CertFile: "/c", KeyFile: "/k"}
			s.InitialCluster = []NamedPeer{{Name: "i-1", PeerURL: "https://10.0.0.1:2380"}}
		}, wantErr: []string{"--trusted-ca-file"}},
		{name: "TLS with a plaintext peer URL of its own", modify: func(s *ServerSpec) {
			s.TLS = &TLSFiles{CertFile: "/c", KeyFile: "/c", TrustedCAFile: "/ca"}
		}, wantErr: []string{"--initial-advertise-peer-urls is https://10.0.0.1:2380"}},
		{name: "valid existing with retention in hours", modify: func(s *ServerSpec) {
			s.InitialClusterState = StateExisting
			s.AutoCompactionRetention = "1"
		}},
		{name: "empty name", modify: func(s *ServerSpec) { s.Name = "" }, wantErr: []string{"--name must not be empty"}},
		{name: "empty data dir", modify: func(s *ServerSpec) { s.DataDir = "" }, wantErr: []string{"--data-dir"}},
		{name: "empty address", modify: func(s *ServerSpec) { s.Address = "" }, wantErr: []string{"address must not be empty"}},
		{name: "0.0.0.0", modify: func(s *ServerSpec) { s.Address = "0.0.0.0" }, wantErr: []string{`"0.0.0.0" is unspecified`}},
		{name: "::", modify: func(s *ServerSpec) { s.Address = "::" }, wantErr: []string{`"::" is unspecified`}},
		{name: "hostname", modify: func(s *ServerSpec) { s.Address = "etcd.example.com" }, wantErr: []string{"is not an IP address"}},
		{name: "client port 0", modify: func(s *ServerSpec) { s.ClientPort = 0 }, wantErr: []string{"--listen-client-urls port 0 is out of range"}},
		{name: "peer port too big", modify: func(s *ServerSpec) { s.PeerPort = 65536 }, wantErr: []string{"--listen-peer-urls port 65536"}},
		{name: "metrics port negative", modify: func(s *ServerSpec) { s.MetricsPort = -1 }, wantErr: []string{"--listen-metrics-urls port -1"}},
		{name: "state empty", modify: func(s *ServerSpec) { s.InitialClusterState = "" }, wantErr: []string{"--initial-cluster-state"}},
		{name: "state bogus", modify: func(s *ServerSpec) { s.InitialClusterState = "join" }, wantErr: []string{`"join" must be "new" or "existing"`}},
		{name: "empty token", modify: func(s *ServerSpec) { s.ClusterToken = "" }, wantErr: []string{"--initial-cluster-token"}},
		{name: "empty initial cluster", modify: func(s *ServerSpec) { s.InitialCluster = nil }, wantErr: []string{"--initial-cluster must not be empty"}},
		{name: "own name missing", modify: func(s *ServerSpec) { s.InitialCluster = s.InitialCluster[1:] }, wantErr: []string{`must include this member "i-1"`}},
		{name: "own peer URL differs", modify: func(s *ServerSpec) { s.InitialCluster[0].PeerURL = "http://10.0.0.9:2380" },
			wantErr: []string{"--initial-cluster has i-1=http://10.0.0.9:2380 but --initial-advertise-peer-urls is http://10.0.0.1:2380"}},
		{name: "duplicate name", modify: func(s *ServerSpec) { s.InitialCluster[2].Name = "i-2" }, wantErr: []string{`names "i-2" twice`}},
		{name: "entry without URL", modify: func(s *ServerSpec) { s.InitialCluster[1].PeerURL = "" }, wantErr: []string{"needs a name and a peer URL"}},
		{name: "negative quota", modify: func(s *ServerSpec) { s.QuotaBackendBytes = -1 }, wantErr: []string{"--quota-backend-bytes"}},
		{name: "bad retention", modify: func(s *ServerSpec) { s.AutoCompactionRetention = "daily" }, wantErr: []string{"--auto-compaction-retention"}},
		{name: "negative retention", modify: func(s *ServerSpec) { s.AutoCompactionRetention = "-1" }, wantErr: []string{"--auto-compaction-retention"}},
		{name: "every problem reported", modify: func(s *ServerSpec) { *s = ServerSpec{} },
			wantErr: []string{"--name", "--data-dir", "address", "--listen-client-urls", "--initial-cluster-state", "--initial-cluster-token", "--initial-cluster must not be empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec()
			tt.modify(&s)
			err := s.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to contain %q", err, want)
				}
			}
		})
	}
}
