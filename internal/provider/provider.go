// Package provider defines the appliance's adapters to the world: who this
// instance is and which instances form its group. Implementations live in
// the subpackages local (a JSON group file) and aws (EC2 Auto Scaling).
package provider

import (
	"context"
	"errors"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// ErrGroupUnknown wraps every failure to list the group: callers must treat
// the group as unknown, never as empty.
var ErrGroupUnknown = errors.New("group unknown")

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
