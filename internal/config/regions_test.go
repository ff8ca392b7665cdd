package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

func TestApplyEnvSeedActiveRegions(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"the seed's ACTIVE_REGIONS", nil, map[string]string{"ACTIVE_REGIONS": "eu-west-1, eu-central-1"}, []string{"eu-west-1", "eu-central-1"}},
		{"ETCD_APPLIANCE_REGIONS wins over the seed's", nil,
			map[string]string{"ACTIVE_REGIONS": "eu-west-1,eu-central-1", "ETCD_APPLIANCE_REGIONS": "us-east-1,us-west-2"}, []string{"us-east-1", "us-west-2"}},
		{"the flag wins and replaces", []string{"--regions=ap-south-1,eu-west-1"},
			map[string]string{"ACTIVE_REGIONS": "eu-west-1,eu-central-1"}, []string{"ap-south-1", "eu-west-1"}},
		{"the last flag wins", []string{"--regions=ap-south-1", "--regions=eu-west-1,,"}, nil, []string{"eu-west-1"}},
		{"nothing set", nil, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConfig()
			fs := newFlagSet(c)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if err := ApplyEnv(fs, envOf(tt.env)); err != nil {
				t.Fatal(err)
			}
			if got := c.Regions.Strings(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("--regions = %q, want %q", got, tt.want)
			}
			if c.MultiRegion() != (len(tt.want) > 0) {
				t.Errorf("MultiRegion() = %v with regions %q", c.MultiRegion(), tt.want)
			}
		})
	}
}

func TestValidateRegions(t *testing.T) {
	for _, tt := range []struct {
		name   string
		modify func(*Config)
		want   []string // substrings, one per error; none: valid
	}{
		{"two regions", func(c *Config) { c.Regions = commaList{"eu-west-1", "eu-central-1"} }, nil},
		{"one region is multi-region mode too", func(c *Config) { c.Regions = commaList{"us-gov-west-1"} }, nil},
		{"custom tag key", func(c *Config) { c.Regions, c.ClusterTagKey = commaList{"eu-west-1"}, "etcd-cluster" }, nil},
		{"needs the aws provider", func(c *Config) {
			*c = *validLocal(t)
			c.Regions = commaList{"eu-west-1"}
		}, []string{"--regions needs --provider aws"}},
		{"not a region", func(c *Config) { c.Regions = commaList{"eu-west-1", "EU_WEST"} },
			[]string{`--regions "EU_WEST" is not an AWS region name`}},
		{"a zone is no region", func(c *Config) { c.Regions = commaList{"eu-west-1a"} },
			[]string{`--regions "eu-west-1a" is not an AWS region name`}},
		{"twice", func(c *Config) { c.Regions = commaList{"eu-west-1", "eu-west-1"} },
			[]string{`--regions lists "eu-west-1" twice`}},
		{"tag key without regions", func(c *Config) { c.ClusterTagKey = "etcd-cluster" },
			[]string{"--cluster-tag-key is for multi-region mode"}},
		{"tag key too long", func(c *Config) { c.Regions, c.ClusterTagKey = commaList{"eu-west-1"}, strings.Repeat("k", 129) },
			[]string{"--cluster-tag-key"}},
		{"tag key with spaces around", func(c *Config) { c.Regions, c.ClusterTagKey = commaList{"eu-west-1"}, " k" },
			[]string{`--cluster-tag-key " k" is no tag key`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := validAWS(t)
			tt.modify(c)
			errs := joined(c.Validate())
			if len(errs) != len(tt.want) {
				t.Fatalf("Validate() = %v, want %d errors %q", errs, len(tt.want), tt.want)
			}
			for k, want := range tt.want {
				if !strings.Contains(errs[k].Error(), want) {
					t.Errorf("error %d = %q, want it to contain %q", k, errs[k], want)
				}
			}
		})
	}
}

func TestFirewallSpec(t *testing.T) {
	c := validAWS(t)
	if c.FirewallSpec("stack") != nil || c.ClusterTag() != DefaultClusterTagKey {
		t.Fatalf("single region: FirewallSpec %+v, tag %q", c.FirewallSpec("stack"), c.ClusterTag())
	}
	c.Regions = commaList{"eu-west-1", "us-east-1"}
	c.ClientPort, c.PeerPort, c.APIPort = 12379, 12380, 12378
	want := &cluster.FirewallSpec{Cluster: "stack", Regions: []string{"eu-west-1", "us-east-1"}, Ports: []int{12379, 12380, 12378}}
	if got := c.FirewallSpec("stack"); !reflect.DeepEqual(got, want) {
		t.Errorf("FirewallSpec() = %+v, want %+v", got, want)
	}
}
