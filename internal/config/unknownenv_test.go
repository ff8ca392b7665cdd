package config

import (
	"reflect"
	"testing"
)

func TestUnknownEnvNamesTheLikelyVariable(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    []UnknownVar
	}{
		{"a typo names the flag's variable", []string{"ETCD_APPLIANCE_PROVIDR=aws"},
			[]UnknownVar{{"ETCD_APPLIANCE_PROVIDR", "ETCD_APPLIANCE_PROVIDER"}}},
		{"a missing underscore", []string{"ETCD_APPLIANCE_DATADIR=/d"},
			[]UnknownVar{{"ETCD_APPLIANCE_DATADIR", "ETCD_APPLIANCE_DATA_DIR"}}},
		{"nothing close", []string{"ETCD_APPLIANCE_COLOUR=blue"},
			[]UnknownVar{{"ETCD_APPLIANCE_COLOUR", ""}}},
		{"the bare prefix", []string{"ETCD_APPLIANCE_=x"}, []UnknownVar{{"ETCD_APPLIANCE_", ""}}},
		{"known variables, others' and a value with '='", []string{
			"ETCD_APPLIANCE_PROVIDER=aws", "ETCD_APPLIANCE_ETCD_FLAG=--a=b", "ETCD_APPLIANCE_API=http://x",
			"ETCD_APPLIANCE_BIN=/b", "ETCD_NAME=x", "HOSTED_ZONE=z", "PATH=/bin"}, nil},
		{"sorted, one each", []string{"ETCD_APPLIANCE_STORES=x", "ETCD_APPLIANCE_DNS_TTLL=1"},
			[]UnknownVar{{"ETCD_APPLIANCE_DNS_TTLL", "ETCD_APPLIANCE_DNS_TTL"}, {"ETCD_APPLIANCE_STORES", "ETCD_APPLIANCE_STORE"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := UnknownEnv(newFlagSet(NewConfig()), tt.environ)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("UnknownEnv(%q) = %+v, want %+v", tt.environ, got, tt.want)
			}
		})
	}
}

func TestUnknownVarSaysWhatItLikelyMeant(t *testing.T) {
	got := UnknownVar{"ETCD_APPLIANCE_PROVIDR", "ETCD_APPLIANCE_PROVIDER"}.String()
	want := "ETCD_APPLIANCE_PROVIDR is not a variable of the appliance: it is ignored (did you mean ETCD_APPLIANCE_PROVIDER?)"
	if got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
