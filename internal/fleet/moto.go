package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// ErrMotoNotFound says that neither moto_server nor python3's moto module
// is installed; AWS end-to-end tests fail with it rather than skip.
var ErrMotoNotFound = errors.New("moto_server not found: install moto with its server extras (pip install 'moto[server]'), " +
	"so that moto_server is on PATH or python3 -m moto.server works")

// Moto is a running moto_server: the AWS (EC2, Auto Scaling, Route53, S3...)
// of the AWS end-to-end tests. Point the SDK at it with AWS_ENDPOINT_URL=URL
// and any credentials.
type Moto struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string
	// LogPath is the file that receives the server's output.
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
}

// motoCommand finds how to run moto's server: the moto_server script, or
// python3's moto module where the script is not on PATH.
func motoCommand() ([]string, error) {
	if path, err := exec.LookPath("moto_server"); err == nil {
		return []string{path}, nil
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		return nil, ErrMotoNotFound
	}
	if out, err := exec.Command(py, "-c", "import moto.server").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w (python3 -c 'import moto.server': %v: %s)", ErrMotoNotFound, err, bytes.TrimSpace(out))
	}
	return []string{py, "-m", "moto.server"}, nil
}

// StartMoto starts moto_server on a free port of 127.0.0.1, its output going
// to dir/moto.log, and waits until it answers or ctx ends.
func StartMoto(ctx context.Context, dir string) (*Moto, error) {
	argv, err := motoCommand()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "moto.log")
	var lastErr error
	// The free port may be taken between probing and moto's bind; try again.
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		m, err := startMoto(ctx, argv, port, logPath)
		if err == nil {
			return m, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func startMoto(ctx context.Context, argv []string, port int, logPath string) (*Moto, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the moto log: %w", err)
	}
	args := append(append([]string(nil), argv[1:]...), "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd := exec.Command(argv[0], args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting moto_server: %w", err)
	}
	m := &Moto{
		URL:     "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		LogPath: logPath,
		cmd:     cmd,
		done:    make(chan struct{}),
	}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(m.done)
	}()
	if err := m.waitReady(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func (m *Moto) waitReady(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL+"/moto-api/data.json", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-m.done:
			return fmt.Errorf("moto_server exited before answering on %s: see %s", m.URL, m.LogPath)
		case <-ctx.Done():
			return fmt.Errorf("moto_server did not answer on %s: %w (see %s)", m.URL, ctx.Err(), m.LogPath)
		case <-tick.C:
		}
	}
}

// Reset forgets every resource moto holds, so that tests can share a server.
func (m *Moto) Reset(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL+"/moto-api/reset", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("resetting moto: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("resetting moto: %s", resp.Status)
	}
	return nil
}

// Close kills moto_server (its whole process group) and waits for it.
func (m *Moto) Close() {
	select {
	case <-m.done:
		return
	default:
	}
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	<-m.done
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
