package etcd

import (
	"slices"
	"strings"
	"testing"
)

// Multi-region mode: etcd binds the private IP the host has and advertises
// the public name peers in other regions reach it by.
func TestArgsListenApartFromAdvertise(t *testing.T) {
	const public = "ec2-203-0-113-7.compute-1.amazonaws.com"
	tests := []struct {
		name          string
		address       string
		listenAddress string
		want          []string
	}{
		{
			name:          "public name advertised, private IP bound",
			address:       public,
			listenAddress: "10.0.0.1",
			want: []string{
				"--listen-client-urls=http://10.0.0.1:2379",
				"--advertise-client-urls=http://" + public + ":2379",
				"--listen-peer-urls=http://10.0.0.1:2380",
				"--initial-advertise-peer-urls=http://" + public + ":2380",
				"--listen-metrics-urls=http://10.0.0.1:2381",
			},
		},
		{
			name:          "public IP advertised",
			address:       "203.0.113.7",
			listenAddress: "10.0.0.1",
			want: []string{
				"--listen-client-urls=http://10.0.0.1:2379",
				"--advertise-client-urls=http://203.0.113.7:2379",
				"--listen-peer-urls=http://10.0.0.1:2380",
				"--initial-advertise-peer-urls=http://203.0.113.7:2380",
				"--listen-metrics-urls=http://10.0.0.1:2381",
			},
		},
		{
			// An instance without a public address (moto's): one address.
			name:          "listen address equal to the address",
			address:       "10.0.0.1",
			listenAddress: "10.0.0.1",
			want: []string{
				"--listen-client-urls=http://10.0.0.1:2379",
				"--advertise-client-urls=http://10.0.0.1:2379",
				"--listen-peer-urls=http://10.0.0.1:2380",
				"--initial-advertise-peer-urls=http://10.0.0.1:2380",
				"--listen-metrics-urls=http://10.0.0.1:2381",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec()
			s.Address, s.ListenAddress = tt.address, tt.listenAddress
			s.InitialCluster[0].PeerURL = "http://" + tt.address + ":2380"
			if err := s.Validate(); err != nil {
				t.Fatalf("test spec is invalid: %v", err)
			}
			got := Args(s)
			if !slices.Equal(got[2:7], tt.want) {
				t.Errorf("Args() URLs =\n  %s\nwant\n  %s", strings.Join(got[2:7], "\n  "), strings.Join(tt.want, "\n  "))
			}
			if s.MetricsURL() != "http://"+tt.listenAddress+":2381" {
				t.Errorf("MetricsURL() = %s, want the bound address %s", s.MetricsURL(), tt.listenAddress)
			}
			if !slices.Contains(got, "--initial-cluster=i-1=http://"+tt.address+":2380,i-2=http://10.0.0.2:2380,i-3=http://10.0.0.3:2380") {
				t.Errorf("Args() = %v: the own --initial-cluster entry must be the advertised URL", got)
			}
		})
	}
}

func TestValidateListenAddress(t *testing.T) {
	const public = "ec2-203-0-113-7.compute-1.amazonaws.com"
	tests := []struct {
		name    string
		modify  func(*ServerSpec)
		wantErr string // "" means valid
	}{
		{name: "host name advertised", modify: func(s *ServerSpec) {
			s.Address, s.ListenAddress = public, "10.0.0.1"
			s.InitialCluster[0].PeerURL = "http://" + public + ":2380"
		}},
		{name: "host name without listen address", modify: func(s *ServerSpec) {
			s.Address = public
			s.InitialCluster[0].PeerURL = "http://" + public + ":2380"
		}, wantErr: "is not an IP address"},
		{name: "listen address a host name", modify: func(s *ServerSpec) { s.ListenAddress = "ip-10-0-0-1.ec2.internal" },
			wantErr: `listen address "ip-10-0-0-1.ec2.internal" is not the IP address of an interface`},
		{name: "listen address unspecified", modify: func(s *ServerSpec) { s.ListenAddress = "0.0.0.0" },
			wantErr: `listen address "0.0.0.0"`},
		{name: "advertised address no host name", modify: func(s *ServerSpec) {
			s.Address, s.ListenAddress = "http://x/", "10.0.0.1"
		}, wantErr: "neither an IP address nor a host name"},
		{name: "own entry must be the advertised URL", modify: func(s *ServerSpec) {
			s.Address, s.ListenAddress = public, "10.0.0.1"
		}, wantErr: "--initial-cluster has i-1=http://10.0.0.1:2380 but --initial-advertise-peer-urls is http://" + public + ":2380"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec()
			tt.modify(&s)
			err := s.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
