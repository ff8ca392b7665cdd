package appliance

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/etcd"
)

// etcd's ports are checked before it starts: a busy one would otherwise
// show only as etcd's fatal line, restarted forever.
const (
	// portGrace is how long a busy port is looked at again before it is
	// reported: an etcd left over by an earlier run, just killed, may hold
	// its ports for a moment after it is gone from its pid file's view.
	portGrace = 2 * time.Second
	// portsRetry is how often the appliance looks again while a port is
	// held: a listen is cheap, and the holder may go at any time.
	portsRetry = 5 * time.Second
	// portsProblemEvery is how often an unchanged problem is logged again;
	// a change is logged at once.
	portsProblemEvery = time.Minute
)

// What sets each of etcd's ports, as the operator knows it.
const (
	clientPortFlag  = "--client-port"
	peerPortFlag    = "--peer-port"
	metricsPortFlag = "--metrics-port"
	apiPortFlag     = "--api-port"
	// privateClientPort is the forced etcd's of a recovery, chosen free by
	// the appliance (recovery.recover).
	privateClientPort = "the recovery's private client port"
)

// etcdPorts are the addresses etcd binds for spec, each with what sets its
// port.
func etcdPorts(spec etcd.ServerSpec, clientSetBy string) []etcd.Port {
	at := func(port int, setBy string) etcd.Port {
		return etcd.Port{Address: net.JoinHostPort(spec.ListenHost(), strconv.Itoa(port)), SetBy: setBy}
	}
	return []etcd.Port{at(spec.ClientPort, clientSetBy), at(spec.PeerPort, peerPortFlag), at(spec.MetricsPort, metricsPortFlag)}
}

// portsFree checks that etcd can listen on the ports of spec.
func (l *launcher) portsFree(ctx context.Context, spec etcd.ServerSpec, clientSetBy string) error {
	if l.checkPorts == nil {
		return nil
	}
	return l.checkPorts(ctx, etcdPorts(spec, clientSetBy))
}

// etcdPortsFree checks, before a plan is made, that etcd can listen on its
// ports: a plan may change the membership (a join adds the member) before
// etcd starts, and a member that cannot start would stay unstarted. It
// reports what it finds (reportPorts) and says whether etcd may start.
func (a *Appliance) etcdPortsFree(ctx context.Context) bool {
	err := a.launcher.portsFree(ctx, a.launcher.spec(cluster.Launch{}), clientPortFlag)
	a.reportPorts(err)
	return err == nil
}

// reportPorts publishes and logs the state of etcd's ports, err being the
// last check's (nil: free): a problem when it starts or changes and again
// every portsProblemEvery while it lasts, its end once.
func (a *Appliance) reportPorts(err error) {
	problem := ""
	if err != nil {
		problem = strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	switch a.portWatch.note(problem, a.now()) {
	case portsReported:
		a.setPeer(func(p *cluster.PeerState) { p.Phase = cluster.PhasePlanning })
		a.setWaiting("etcd cannot start: "+problem, nil)
		a.log.Error("etcd cannot listen on its ports; starting it when they are free", "problem", problem,
			"look_again_every", portsRetry.String())
	case portsStill:
		a.log.Debug("etcd's ports still not free", "problem", problem)
	case portsCleared:
		a.setWaiting("", nil)
		a.log.Info("etcd's ports are free again", "was", a.portWatch.was)
	}
}

// portsBusy reports whether err is a start that failed on etcd's ports,
// and then reports it.
func (a *Appliance) portsBusy(err error) bool {
	var pe *etcd.PortError
	if !errors.As(err, &pe) {
		return false
	}
	a.reportPorts(err)
	return true
}

// portsNote is what a look at the ports calls for.
type portsNote string

const (
	portsQuiet    portsNote = "quiet"    // free, as before
	portsReported portsNote = "reported" // a problem began, changed, or is due to be logged again
	portsStill    portsNote = "still"    // the problem last logged, logged recently
	portsCleared  portsNote = "cleared"  // free again
)

// portsWatch is the memory of the ports' problem: the one last logged, and
// when.
type portsWatch struct {
	problem  string
	reported time.Time
	// was is the problem just cleared, for its log line.
	was string
}

// note records the problem a look found ("" for none) at now and says
// what to log.
func (w *portsWatch) note(problem string, now time.Time) portsNote {
	switch {
	case problem == "" && w.problem == "":
		return portsQuiet
	case problem == "":
		w.was, w.problem = w.problem, ""
		return portsCleared
	case problem != w.problem || now.Sub(w.reported) >= portsProblemEvery:
		w.problem, w.reported = problem, now
		return portsReported
	default:
		return portsStill
	}
}

// apiListenError says why the appliance API cannot listen on addr, with
// the port's holder when it is busy.
func apiListenError(addr string, err error) error {
	return etcd.ExplainListenError(etcd.Port{Address: addr, SetBy: apiPortFlag}, err)
}
