// Package etcd runs the etcd server as a supervised child of the appliance
// (SPEC §4.3).
//
// It is split the way the rest of the appliance is: what to run and how long
// to wait are pure functions (Args, Backoff.Next, ClassifyExit) tested with
// tables, and the one piece with effects, Process, only execs, watches and
// stops the child.
//
// The child runs in its own process group so that stopping it also stops
// anything it spawned, and it is tied to the appliance with a parent-death
// signal so that an appliance killed with SIGKILL does not leave an etcd behind
// holding the data dir. For what that signal cannot cover (an appliance that
// re-executed itself, an etcd that outlived an earlier appliance for any other
// reason), KillLeftover cleans up from the pid file on the next start.
package etcd
