// Package provider defines the appliance's adapters to the world: who this
// instance is, which instances form its group, and where the cluster's DNS
// records live. Implementations live in the subpackages local (a JSON group
// file) and aws (EC2 Auto Scaling, Route53).
package provider

import (
	"context"
	"errors"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// ErrGroupUnknown wraps every failure to list the group: callers must treat
// the group as unknown, never as empty.
var ErrGroupUnknown = errors.New("group unknown")

// ErrNoAutoScalingGroup: the instance belongs to no Auto Scaling group (a
// multi-region member launched by hand), so it has no lifecycle hook.
var ErrNoAutoScalingGroup = errors.New("in no Auto Scaling group")

// Identity tells who this instance is.
type Identity interface {
	Self(ctx context.Context) (cluster.Instance, error)
}

// Group lists the instances of the group, terminated ones included when the
// provider still knows them (their state says so).
type Group interface {
	// Name is the group's name; it names the cluster by default.
	Name() string
	Instances(ctx context.Context) ([]cluster.Instance, error)
}

// Sized is a group that knows how many instances it should have: an Auto
// Scaling group's desired capacity. The drain budget counts against it, so
// that an instance leaving before its replacement is even listed does not
// pass for a cluster at full strength.
type Sized interface {
	// Desired is the desired capacity of the last listing, 0 when unknown.
	Desired() int
}

// TerminationChecker confirms terminations of instances that are no longer
// in the group listing, where the provider can (EC2 remembers terminated
// instances for a while).
type TerminationChecker interface {
	// Terminated returns those of ids that are terminated for good.
	Terminated(ctx context.Context, ids []string) ([]string, error)
}

// Lifecycle is the instance's side of its group's termination (§4.5): it
// tells when the group is terminating the instance, and lets the instance
// hold the termination until it has left the cluster.
type Lifecycle interface {
	// TargetState is the lifecycle state the group moves the instance to
	// ("InService", "Terminated", ...), "" when the instance has none.
	TargetState(ctx context.Context) (string, error)
	// Heartbeat extends the hold while the instance drains.
	Heartbeat(ctx context.Context) error
	// Complete lets the termination go on.
	Complete(ctx context.Context) error
}

// LaunchResult ends an instance's launch lifecycle action.
type LaunchResult string

const (
	// LaunchContinue lets the group put the instance in service.
	LaunchContinue LaunchResult = "CONTINUE"
	// LaunchAbandon has the group terminate the instance.
	LaunchAbandon LaunchResult = "ABANDON"
)

// Launch is the instance's side of its group's launch hook (issue 10): the
// group holds a new instance out of service until it says whether it
// became a healthy voter, so that rolling updates advance one healthy
// member at a time.
type Launch interface {
	// LaunchHeartbeat extends the hold while the instance joins.
	LaunchHeartbeat(ctx context.Context) error
	// CompleteLaunch ends the hold with result. An instance with no launch
	// action in progress (it was not launched through a hook, or the
	// action ended) has nothing to complete: that is no error.
	CompleteLaunch(ctx context.Context, result LaunchResult) error
}

// DNS holds the cluster's records in a zone (§4.4). Implementations know the
// cluster's cluster.DNSSpec and touch only the records it owns.
type DNS interface {
	// Records reads back the owned records the zone holds now; a failed
	// read is an error, never "no records".
	Records(ctx context.Context) ([]cluster.DNSRecord, error)
	// Apply makes the changes in one batch, all or nothing. deletes must be
	// records as Records returned them.
	Apply(ctx context.Context, upserts, deletes []cluster.DNSRecord) error
}

// Firewall holds the ingress rules that let a multi-region cluster's
// members reach each other (§4.4). Implementations know the cluster's
// cluster.FirewallSpec and touch only the rules it owns.
type Firewall interface {
	// Rules reads back the single-port TCP IPv4 rules of the cluster
	// security group of every region, the cluster's own and others' (whose
	// presence makes an authorization a duplicate); a failed read in any
	// region is an error, never "no rules".
	Rules(ctx context.Context) ([]cluster.IngressRule, error)
	// Apply authorizes, then revokes, the rules, with one call of each kind
	// per region. revoke must be rules the cluster owns.
	Apply(ctx context.Context, authorize, revoke []cluster.IngressRule) error
}
