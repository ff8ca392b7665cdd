package fleet

import (
	"net"
	"testing"

	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
)

// TestReserveVPCSubnet: AWS groups get distinct /24s inside the moto VPC,
// never the usual loopback nor the provider tests' 127.0.1.0/24.
func TestReserveVPCSubnet(t *testing.T) {
	_, vpc, _ := net.ParseCIDR(awsVPCCIDR)
	seen := map[string]bool{}
	for range 8 {
		s, err := reserveVPCSubnet()
		if err != nil {
			t.Fatal(err)
		}
		defer s.release()
		ip, cidr, err := net.ParseCIDR(s.String())
		if err != nil || !vpc.Contains(ip) || cidr.String() != s.String() {
			t.Fatalf("reserved %s, want a /24 of %s", s, awsVPCCIDR)
		}
		if s.prefix[2] < 2 {
			t.Errorf("reserved %s, which the usual loopback or the provider's moto tests use", s)
		}
		if seen[s.String()] {
			t.Errorf("%s reserved twice", s)
		}
		seen[s.String()] = true
	}
}

func TestInService(t *testing.T) {
	for s, want := range map[astypes.LifecycleState]bool{
		astypes.LifecycleStateInService:       true,
		astypes.LifecycleStatePending:         true,
		astypes.LifecycleStatePendingWait:     true,
		astypes.LifecycleStateTerminating:     false,
		astypes.LifecycleStateTerminatingWait: false,
		astypes.LifecycleStateTerminated:      false,
		astypes.LifecycleStateStandby:         false,
		astypes.LifecycleStateDetached:        false,
		astypes.LifecycleState(""):            false,
	} {
		if got := inService(s); got != want {
			t.Errorf("inService(%q) = %v, want %v", s, got, want)
		}
	}
}
