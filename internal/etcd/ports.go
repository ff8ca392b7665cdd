package etcd

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Port is an address a server is to listen on, with what sets its port: the
// appliance's flag (say "--client-port"), which is what an operator changes.
type Port struct {
	Address string // IP:port, as the server binds it
	SetBy   string
}

// PortError says that a port cannot be listened on: another process holds
// it (Err is syscall.EADDRINUSE; Holder says who, when /proc tells), or the
// address cannot be bound at all (not this host's, a privileged port).
type PortError struct {
	Port   Port
	Holder Holder
	Err    error // net.Listen's
}

func (e *PortError) Error() string {
	host, port, err := net.SplitHostPort(e.Port.Address)
	if err != nil {
		host, port = e.Port.Address, "?"
	}
	if errors.Is(e.Err, syscall.EADDRINUSE) {
		return fmt.Sprintf("port %s (%s) on %s is in use, held by %s", port, e.Port.SetBy, host, e.Holder)
	}
	return fmt.Sprintf("port %s (%s) on %s cannot be listened on: %v", port, e.Port.SetBy, host, e.Err)
}

func (e *PortError) Unwrap() error { return e.Err }

// Holder is the process that holds a port. The zero Holder is one that
// /proc did not tell: another user's process, looked for without the
// privilege to read its file descriptors.
type Holder struct {
	Pid  int
	Comm string // the process's name, /proc/<pid>/comm
}

func (h Holder) String() string {
	switch {
	case h.Pid == 0:
		return "another process"
	case h.Comm == "":
		return "pid " + strconv.Itoa(h.Pid)
	default:
		return fmt.Sprintf("pid %d (%s)", h.Pid, h.Comm)
	}
}

// portPoll is how often CheckPorts looks again at a busy port within its
// grace.
const portPoll = 100 * time.Millisecond

// CheckPorts reports each port that cannot be listened on now as a
// *PortError (several joined), naming the process that holds a busy one;
// nil when all are free. A busy port is looked at again until grace has
// passed (or ctx ends): an etcd killed just before, found gone by its
// command line, may still be closing its sockets.
func CheckPorts(ctx context.Context, ports []Port, grace time.Duration) error {
	return checkPorts(ctx, "/proc", ports, grace)
}

// checkPorts is CheckPorts looking for holders in procRoot.
func checkPorts(ctx context.Context, procRoot string, ports []Port, grace time.Duration) error {
	deadline := time.Now().Add(grace)
	for {
		problems := unlistenable(ports)
		if len(problems) == 0 {
			return nil
		}
		if !time.Now().Before(deadline) || !sleepCtx(ctx, portPoll) {
			errs := make([]error, 0, len(problems))
			for _, p := range problems {
				errs = append(errs, explain(procRoot, p))
			}
			return errors.Join(errs...)
		}
	}
}

// ExplainListenError turns an error of listening on port into a
// *PortError that names what sets the port and, when it is busy, the
// process that holds it.
func ExplainListenError(port Port, err error) error {
	return explain("/proc", &PortError{Port: port, Err: err})
}

func explain(procRoot string, p *PortError) *PortError {
	if errors.Is(p.Err, syscall.EADDRINUSE) {
		p.Holder = portHolder(procRoot, p.Port.Address)
	}
	return p
}

// unlistenable tries to listen on each port, closing at once what it got.
// Go listens with SO_REUSEADDR, as etcd does, so a port left in TIME_WAIT
// passes here as it does there.
func unlistenable(ports []Port) []*PortError {
	var out []*PortError
	for _, p := range ports {
		ln, err := net.Listen("tcp", p.Address)
		if err != nil {
			out = append(out, &PortError{Port: p, Err: err})
			continue
		}
		ln.Close()
	}
	return out
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// portHolder finds the process holding address (IP:port) through procRoot:
// the socket's inode from net/tcp and net/tcp6, then the process with a
// file descriptor on it. Best effort: the zero Holder when it cannot tell.
func portHolder(procRoot, address string) Holder {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return Holder{}
	}
	inodes := map[string]bool{}
	for _, table := range []string{"tcp", "tcp6"} {
		for _, inode := range socketsOn(filepath.Join(procRoot, "net", table), ap) {
			inodes[inode] = true
		}
	}
	if len(inodes) == 0 {
		return Holder{}
	}
	return processWithSocket(procRoot, inodes)
}

// tcpListen is the state of a listening socket in /proc/net/tcp.
const tcpListen = "0A"

// socketsOn returns the inodes of the sockets of a /proc/net/tcp table that
// hold ap: a listener on its IP or on the unspecified address, which takes
// every IP's port; failing those, any socket bound to it.
func socketsOn(table string, ap netip.AddrPort) []string {
	f, err := os.Open(table)
	if err != nil {
		return nil
	}
	defer f.Close()
	var listening, bound []string
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[9] == "0" {
			continue
		}
		local, ok := parseProcAddr(fields[1])
		if !ok || local.Port() != ap.Port() {
			continue
		}
		addr := local.Addr().Unmap()
		if addr != ap.Addr().Unmap() && !addr.IsUnspecified() {
			continue
		}
		if fields[3] == tcpListen {
			listening = append(listening, fields[9])
		} else {
			bound = append(bound, fields[9])
		}
	}
	if len(listening) > 0 {
		return listening
	}
	return bound
}

// parseProcAddr parses an address of /proc/net/tcp{,6}: the IP in hex, as
// 32-bit words in the host's byte order (little-endian on the platforms the
// appliance ships for), a colon and the port in hex.
func parseProcAddr(s string) (netip.AddrPort, bool) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, false
	}
	b, err := hex.DecodeString(ipHex)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.AddrPort{}, false
	}
	for w := 0; w < len(b); w += 4 {
		b[w], b[w+1], b[w+2], b[w+3] = b[w+3], b[w+2], b[w+1], b[w]
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr, uint16(port)), true
}

// processWithSocket finds a process with a file descriptor on one of the
// socket inodes. Processes whose descriptors cannot be read are skipped.
func processWithSocket(procRoot string, inodes map[string]bool) Holder {
	procs, err := os.ReadDir(procRoot)
	if err != nil {
		return Holder{}
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid <= 0 {
			continue
		}
		fdDir := filepath.Join(procRoot, p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil {
				continue
			}
			inode, ok := strings.CutPrefix(link, "socket:[")
			if ok && inodes[strings.TrimSuffix(inode, "]")] {
				comm, _ := os.ReadFile(filepath.Join(procRoot, p.Name(), "comm"))
				return Holder{Pid: pid, Comm: strings.TrimSpace(string(comm))}
			}
		}
	}
	return Holder{}
}
