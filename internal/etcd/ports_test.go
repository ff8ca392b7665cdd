package etcd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCheckPortsNamesTheHolder: a port this test listens on is refused with
// its number, the flag that sets it and this process as the holder; a free
// one passes.
func TestCheckPortsNamesTheHolder(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	free := freeAddress(t)
	port := strconv.Itoa(held.Addr().(*net.TCPAddr).Port)

	err = CheckPorts(t.Context(), []Port{
		{Address: free, SetBy: "--peer-port"},
		{Address: held.Addr().String(), SetBy: "--client-port"},
	}, 0)
	var pe *PortError
	if !errors.As(err, &pe) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("CheckPorts with a held port = %v, want a *PortError of EADDRINUSE", err)
	}
	want := fmt.Sprintf("port %s (--client-port) on 127.0.0.1 is in use, held by pid %d (", port, os.Getpid())
	if pe.Holder.Pid != os.Getpid() || pe.Holder.Comm == "" || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q (holder %+v), want it to start %q", err, pe.Holder, want)
	}
	if strings.Contains(err.Error(), "--peer-port") {
		t.Errorf("error %q names the free port too", err)
	}
	if err := CheckPorts(t.Context(), []Port{{Address: free, SetBy: "--peer-port"}}, 0); err != nil {
		t.Errorf("CheckPorts with a free port = %v", err)
	}
}

// TestCheckPortsWaitsOutABriefHold: a port its holder lets go within the
// grace (an etcd killed a moment before) passes.
func TestCheckPortsWaitsOutABriefHold(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	released := time.AfterFunc(300*time.Millisecond, func() { held.Close() })
	defer released.Stop()
	start := time.Now()
	if err := CheckPorts(t.Context(), []Port{{Address: held.Addr().String(), SetBy: "--client-port"}}, time.Minute); err != nil {
		t.Fatalf("CheckPorts = %v, want nil once the holder let go", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("CheckPorts took %v to see the port free", took)
	}
}

// TestCheckPortsSaysWhyAnAddressCannotBeBound: an address that is not this
// host's is named, without a holder.
func TestCheckPortsSaysWhyAnAddressCannotBeBound(t *testing.T) {
	// 192.0.2.0/24 is TEST-NET-1: never an address of the host.
	err := CheckPorts(t.Context(), []Port{{Address: "192.0.2.7:2379", SetBy: "--client-port"}}, 0)
	if err == nil || !strings.HasPrefix(err.Error(), "port 2379 (--client-port) on 192.0.2.7 cannot be listened on: ") {
		t.Errorf("CheckPorts on a foreign address = %v", err)
	}
}

// TestPortHolderReadsProc finds holders in a fake /proc: a listener on the
// port's IP or on every IP, IPv4 and IPv6, and no holder when the socket
// is nobody's that can be read.
func TestPortHolderReadsProc(t *testing.T) {
	root := t.TempDir()
	write := func(path, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, path), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	socket := func(pid, fd, inode int) {
		t.Helper()
		dir := filepath.Join(root, strconv.Itoa(pid), "fd")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(fmt.Sprintf("socket:[%d]", inode), filepath.Join(dir, strconv.Itoa(fd))); err != nil {
			t.Fatal(err)
		}
	}
	const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	write("net/tcp", header+
		// 127.0.0.1:2379 listening, inode 101; 0.0.0.0:2380 listening, inode 102;
		// 10.0.1.5:2381 established (not a listener), inode 103; 127.0.0.1:2382 in TIME_WAIT (no inode).
		"   0: 0100007F:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 101 1 0 100 0 0 10 0\n"+
		"   1: 00000000:094C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 102 1 0 100 0 0 10 0\n"+
		"   2: 0501000A:094D 0601000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 103 1 0 100 0 0 10 0\n"+
		"   3: 0100007F:094E 0100007F:C351 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0 100 0 0 10 0\n")
	write("net/tcp6", header+
		// [::1]:2383 listening, inode 104.
		"   0: 00000000000000000000000001000000:094F 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 104 1 0 100 0 0 10 0\n")
	socket(4242, 7, 101)
	write("4242/comm", "nginx\n")
	socket(5151, 3, 102)
	write("5151/comm", "etcd\n")
	socket(5151, 4, 104)
	socket(6161, 9, 103)
	write("6161/comm", "curl\n")
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		address string
		want    Holder
	}{
		{"127.0.0.1:2379", Holder{Pid: 4242, Comm: "nginx"}},
		{"10.0.1.5:2380", Holder{Pid: 5151, Comm: "etcd"}}, // the unspecified address holds every IP's port
		{"10.0.1.5:2381", Holder{Pid: 6161, Comm: "curl"}},
		{"127.0.0.2:2379", Holder{}},
		{"127.0.0.1:2382", Holder{}},
		{"[::1]:2383", Holder{Pid: 5151, Comm: "etcd"}},
		{"not-an-address", Holder{}},
	} {
		if got := portHolder(root, tt.address); got != tt.want {
			t.Errorf("portHolder(%s) = %+v, want %+v", tt.address, got, tt.want)
		}
	}
	if got := (Holder{}).String(); got != "another process" {
		t.Errorf("an unknown holder reads %q", got)
	}
}

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:094B":                         "127.0.0.1:2379",
		"00000000:0050":                         "0.0.0.0:80",
		"00000000000000000000000001000000:094F": "[::1]:2383",
		"0000000000000000FFFF00000100007F:094B": "[::ffff:127.0.0.1]:2379",
	} {
		got, ok := parseProcAddr(in)
		if !ok || got != netip.MustParseAddrPort(want) {
			t.Errorf("parseProcAddr(%s) = %v, %v; want %s", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "0100007F", "zz00007F:094B", "0100007F:zz", "01007F:094B"} {
		if got, ok := parseProcAddr(bad); ok {
			t.Errorf("parseProcAddr(%q) = %v, want refused", bad, got)
		}
	}
}

// freeAddress is a 127.0.0.1 address nothing listens on.
func freeAddress(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
