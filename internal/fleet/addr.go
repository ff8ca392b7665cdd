package fleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// instancePorts are the ports every appliance binds on its own address (§5).
var instancePorts = []int{
	cluster.DefaultPorts.API,
	cluster.DefaultPorts.Client,
	cluster.DefaultPorts.Peer,
	cluster.DefaultPorts.Metrics,
}

// lockDir, under the temporary directory, holds the subnet locks. Its name
// predates the package: groups of every version on the machine must honour
// the same locks.
const lockDir = "etcd-appliance-testcluster"

// subnet is a /24 that one Group owns for its lifetime: one of
// 127.0.0.0/8 in loopback mode, one of 198.18.0.0/15 (RFC 2544's benchmark
// range) for a netlab. The ownership is an flock on a file named after the
// subnet, so groups in parallel test binaries, the demo and benchmarks
// never share addresses; the kernel drops the lock when the process dies.
type subnet struct {
	prefix [3]byte // the first three octets
	lock   *os.File
}

// reserveSubnet picks a random free loopback /24, avoiding 127.0.0.0/24
// (the usual loopback) and 127.0.1.0/24 (the moto-backed tests' VPC subnet).
func reserveSubnet() (*subnet, error) {
	dir := filepath.Join(os.TempDir(), lockDir)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("reserving a loopback subnet: %w", err)
	}
	var lastErr error
	for range 64 {
		a, b := byte(rand.IntN(256)), byte(rand.IntN(256))
		if a == 0 && (b == 0 || b == 1) {
			continue
		}
		s, err := lockSubnet(dir, [3]byte{127, a, b})
		if err != nil {
			lastErr = err
			continue
		}
		// A process that does not use our locks may sit on the subnet.
		if !portsFree(s.address(1)) {
			s.release()
			lastErr = fmt.Errorf("%s is in use", s.address(1))
			continue
		}
		return s, nil
	}
	return nil, fmt.Errorf("no free loopback /24 found: %w", lastErr)
}

// lockSubnet takes the exclusive lock on prefix.0/24 that every group of
// this machine honours, or fails at once when another group holds it.
func lockSubnet(dir string, prefix [3]byte) (*subnet, error) {
	path := filepath.Join(dir, fmt.Sprintf("%d.%d.%d.0-24.lock", prefix[0], prefix[1], prefix[2]))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return &subnet{prefix: prefix, lock: f}, nil
}

func (s *subnet) address(host int) string {
	return net.IPv4(s.prefix[0], s.prefix[1], s.prefix[2], byte(host)).String()
}

// contains reports whether ip lies in the subnet.
func (s *subnet) contains(ip net.IP) bool {
	ip4 := ip.To4()
	return ip4 != nil && [3]byte(ip4[:3]) == s.prefix
}

func (s *subnet) String() string {
	return fmt.Sprintf("%d.%d.%d.0/24", s.prefix[0], s.prefix[1], s.prefix[2])
}

func (s *subnet) release() {
	if s.lock != nil {
		s.lock.Close() // closing drops the flock
		s.lock = nil
	}
}

// portsFree reports whether every appliance port can be bound on address.
func portsFree(address string) bool {
	for _, p := range instancePorts {
		l, err := net.Listen("tcp", net.JoinHostPort(address, strconv.Itoa(p)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// waitPortsFree polls until every appliance port of address can be bound.
func waitPortsFree(ctx context.Context, address string) error {
	err := Poll(ctx, 50*time.Millisecond, func() (bool, string) {
		return portsFree(address), "a port of " + address + " is still bound"
	})
	if err != nil {
		return fmt.Errorf("waiting for the ports of %s: %w", address, err)
	}
	return nil
}

// Poll calls cond every interval until it reports done or ctx ends. On
// expiry the error carries the last reason cond gave for not being done.
func Poll(ctx context.Context, interval time.Duration, cond func() (done bool, why string)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		done, why := cond()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", why, ctx.Err())
		case <-t.C:
		}
	}
}
