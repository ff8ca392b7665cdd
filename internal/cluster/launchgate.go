package cluster

import (
	"fmt"
	"strings"
	"time"
)

// GateVerdict is what the launch gate does with the instance's launch
// lifecycle action: hold it, let the instance go in service, or have the
// group terminate it.
type GateVerdict string

const (
	// GateHold keeps the action open (with heartbeats): the instance is
	// not a healthy voter yet, and its bound has not passed.
	GateHold GateVerdict = "hold"
	// GateContinue completes the action with CONTINUE: the instance is a
	// started, healthy voter (of the cluster it joined, or of the one it
	// created), and the group may count it in service.
	GateContinue GateVerdict = "continue"
	// GateAbandon completes the action with ABANDON: the instance did not
	// become a healthy voter within its bound, and the group terminates
	// it. A rolling update or an instance refresh then stops, instead of
	// going on to replace the next healthy member.
	GateAbandon GateVerdict = "abandon"
)

// LaunchGateInputs are what the launch gate decides on.
type LaunchGateInputs struct {
	Now time.Time
	// Since is when the gate started waiting: the appliance's start.
	Since time.Time
	// Timeout is --launch-timeout, the bound of the wait.
	Timeout time.Duration
	// Ready says the local member is a started, healthy, non-learner
	// voter.
	Ready bool
	// Phase, Waiting and LastExit say where the instance stands, for the
	// reason of an ABANDON: its phase, what its startup plan waits for,
	// and why etcd last exited.
	Phase    Phase
	Waiting  string
	LastExit string
}

// DecideLaunchGate is the launch gate's decision (issue 10, item 2): a
// healthy voter goes in service at once, whatever the time; anything else
// is held until Timeout has passed since Since, then abandoned, with the
// reason that names what the instance was stuck on.
func DecideLaunchGate(in LaunchGateInputs) (GateVerdict, string) {
	if in.Ready {
		return GateContinue, "a started, healthy voter"
	}
	waited := in.Now.Sub(in.Since)
	if waited < in.Timeout {
		return GateHold, ""
	}
	why := []string{fmt.Sprintf("not a healthy voter after %s (--launch-timeout %s)", waited.Round(time.Second), in.Timeout)}
	if in.Phase != "" {
		why = append(why, "phase "+string(in.Phase))
	}
	if in.Waiting != "" {
		why = append(why, "waiting for: "+in.Waiting)
	}
	if in.LastExit != "" {
		why = append(why, "etcd's last exit: "+in.LastExit)
	}
	return GateAbandon, strings.Join(why, "; ")
}
