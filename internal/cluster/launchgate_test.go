package cluster

import (
	"strings"
	"testing"
	"time"
)

func TestDecideLaunchGate(t *testing.T) {
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	const timeout = 15 * time.Minute
	for _, tt := range []struct {
		name string
		in   LaunchGateInputs
		want GateVerdict
		// reason holds these words, in order.
		reason []string
	}{{
		name: "a voter at once goes in service",
		in:   LaunchGateInputs{Now: start, Since: start, Timeout: timeout, Ready: true, Phase: PhaseRunning},
		want: GateContinue,
	}, {
		name: "a voter late goes in service: the bound is for the wait, not for a member that made it",
		in:   LaunchGateInputs{Now: start.Add(time.Hour), Since: start, Timeout: timeout, Ready: true},
		want: GateContinue,
	}, {
		name: "a learner is held",
		in:   LaunchGateInputs{Now: start.Add(time.Minute), Since: start, Timeout: timeout, Phase: PhaseRunning},
		want: GateHold,
	}, {
		name: "held until just before the bound",
		in:   LaunchGateInputs{Now: start.Add(timeout - time.Second), Since: start, Timeout: timeout, Phase: PhasePlanning},
		want: GateHold,
	}, {
		name:   "abandoned at the bound, saying what it waited for",
		in:     LaunchGateInputs{Now: start.Add(timeout), Since: start, Timeout: timeout, Phase: PhasePlanning, Waiting: "the membership lock"},
		want:   GateAbandon,
		reason: []string{"not a healthy voter after 15m0s", "--launch-timeout 15m0s", "phase planning", "waiting for: the membership lock"},
	}, {
		name:   "abandoned, saying why etcd exited",
		in:     LaunchGateInputs{Now: start.Add(2 * timeout), Since: start, Timeout: timeout, Phase: PhaseStarting, LastExit: "bad-flag"},
		want:   GateAbandon,
		reason: []string{"after 30m0s", "phase starting", "etcd's last exit: bad-flag"},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := DecideLaunchGate(tt.in)
			if got != tt.want {
				t.Fatalf("DecideLaunchGate = %s (%q), want %s", got, reason, tt.want)
			}
			rest := reason
			for _, w := range tt.reason {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("reason %q lacks %q (in order)", reason, w)
				}
				rest = rest[i+len(w):]
			}
			if got == GateHold && reason != "" {
				t.Errorf("a hold has the reason %q, want none", reason)
			}
		})
	}
}
