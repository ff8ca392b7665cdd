package main

import (
	"context"
	"fmt"
	"log"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// idleSettle is how long a converged group runs untouched before its idle
// cost is counted: the convergence check itself asks the appliances for
// /v1/status, whose member probes are requests to etcd, and an appliance
// watches closely for a while after a change.
const idleSettle = 20 * time.Second

// clockTicks is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// 100 on every Linux architecture the appliance is built for.
const clockTicks = 100

// measureIdle counts what an idle group of 3 (healthy, leader stable, no
// writes, membership unchanged) costs its etcd members over window: the
// gRPC requests each member receives (every one of them comes from an
// appliance: nothing else talks to these members), etcd's CPU, and the
// appliances' own CPU and private memory. The reference is a static etcd
// cluster of 3 left idle for the same window.
func measureIdle(ctx context.Context, binary string, window time.Duration) ([]figure, error) {
	requests := figure{name: "idle group of 3 → requests each etcd member receives from the appliances",
		target: "≤ 60 / min", unit: "/ min"}
	etcdCPU := figure{name: "idle group of 3 → etcd CPU per member", target: "—", unit: "% of a core"}
	staticCPU := figure{name: "limit: static etcd cluster of 3 started by hand, idle → etcd CPU per member", target: "—",
		unit: "% of a core"}
	applianceCPU := figure{name: "idle group of 3 → appliance CPU (etcd child excluded)", target: "≤ 1 %",
		unit: "% of a core"}
	private := figure{name: "idle group of 3 → appliance private RSS (etcd child excluded)", target: "≤ 20 MB", unit: "MB",
		note: "Private_Clean + Private_Dirty of /proc/<pid>/smaps_rollup: pages no other process maps"}

	g, closeGroup, err := newGroup(binary)
	if err != nil {
		return nil, err
	}
	// Closed before the reference starts, which must not share the CPU.
	done := sync.OnceFunc(closeGroup)
	defer done()
	gctx, cancel := context.WithTimeout(ctx, window+3*time.Minute)
	defer cancel()
	insts, err := g.LaunchN(gctx, 3)
	if err != nil {
		return nil, err
	}
	if _, err := g.WaitConverged(gctx, 3); err != nil {
		return nil, err
	}
	time.Sleep(idleSettle)
	before := make([]fleet.EtcdLoad, len(insts))
	beforeCPU := make([]float64, len(insts))
	for i, inst := range insts {
		if before[i], err = inst.EtcdLoad(gctx); err != nil {
			return nil, err
		}
		if beforeCPU[i], err = cpuSeconds(inst.PID()); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	time.Sleep(window)
	perMin := time.Since(start).Minutes()
	byMethod := map[string]float64{}
	for i, inst := range insts {
		after, err := inst.EtcdLoad(gctx)
		if err != nil {
			return nil, err
		}
		cpu, err := cpuSeconds(inst.PID())
		if err != nil {
			return nil, err
		}
		d := after.Since(before[i])
		requests.samples = append(requests.samples, d.Total()/perMin)
		etcdCPU.samples = append(etcdCPU.samples, d.CPUSeconds/perMin/60*100)
		applianceCPU.samples = append(applianceCPU.samples, (cpu-beforeCPU[i])/perMin/60*100)
		for m, v := range d.Requests {
			byMethod[m] += v / perMin / float64(len(insts))
		}
		if kb, err := privateKB(inst.PID()); err == nil {
			private.samples = append(private.samples, float64(kb)/1024)
		}
	}
	requests.note = fmt.Sprintf("counted over %s by each member's grpc_server_msg_received_total (a unary call, or a "+
		"message of a stream: a lease keep-alive, a watch request); per method, mean of the members: %s",
		window, methodBreakdown(byMethod))
	etcdCPU.note = fmt.Sprintf("process_cpu_seconds_total over %s", window)
	applianceCPU.note = fmt.Sprintf("utime + stime over %s", window)
	done()
	log.Printf("idle: appliances counted over %s", window)

	sc, err := startStatic(binary, 3, false)
	if err != nil {
		return nil, err
	}
	defer sc.close()
	sctx, cancel := context.WithTimeout(ctx, window+2*time.Minute)
	defer cancel()
	if err := sc.waitHealthy(sctx, sc.endpoints()...); err != nil {
		return nil, err
	}
	time.Sleep(idleSettle)
	staticBefore := make([]fleet.EtcdLoad, len(sc.members))
	for i, m := range sc.members {
		if staticBefore[i], err = staticLoad(sctx, m); err != nil {
			return nil, err
		}
	}
	start = time.Now()
	time.Sleep(window)
	perMin = time.Since(start).Minutes()
	for i, m := range sc.members {
		after, err := staticLoad(sctx, m)
		if err != nil {
			return nil, err
		}
		staticCPU.samples = append(staticCPU.samples, after.Since(staticBefore[i]).CPUSeconds/perMin/60*100)
	}
	log.Printf("idle: static reference counted over %s", window)
	return []figure{requests, etcdCPU, staticCPU, applianceCPU, private}, nil
}

// staticLoad reads the load counters of a static member: it serves its
// metrics on its client URL.
func staticLoad(ctx context.Context, m *staticMember) (fleet.EtcdLoad, error) {
	return fleet.ReadEtcdLoad(ctx, m.clientURL+"/metrics")
}

// methodBreakdown lists the requests per minute by method, most first.
func methodBreakdown(byMethod map[string]float64) string {
	methods := slices.Collect(maps.Keys(byMethod))
	slices.SortFunc(methods, func(a, b string) int {
		if byMethod[a] != byMethod[b] {
			return int(math.Copysign(1, byMethod[b]-byMethod[a]))
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, m := range methods {
		parts = append(parts, fmt.Sprintf("%s %.1f", m[strings.LastIndex(m, ".")+1:], byMethod[m]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// cpuSeconds is the CPU time a process spent, its children excluded.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: the fields
	// counted from 3 start after its closing one.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err := strconv.ParseFloat(fields[11], 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseFloat(fields[12], 64)
	if err != nil {
		return 0, err
	}
	return (utime + stime) / clockTicks, nil
}

// privateKB is the memory only this process maps: Private_Clean and
// Private_Dirty of /proc/<pid>/smaps_rollup, in kB.
func privateKB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	total, found := 0, 0
	for _, line := range strings.Split(string(b), "\n") {
		for _, field := range []string{"Private_Clean:", "Private_Dirty:"} {
			if v, ok := strings.CutPrefix(line, field); ok {
				kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
				if err != nil {
					return 0, fmt.Errorf("/proc/%d/smaps_rollup: %q: %w", pid, line, err)
				}
				total += kb
				found++
			}
		}
	}
	if found != 2 {
		return 0, fmt.Errorf("/proc/%d/smaps_rollup: no Private_Clean and Private_Dirty", pid)
	}
	return total, nil
}
