package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// awsFleet plays EC2's side of the instances that the AWS tiers of the
// fleet (AWSGroup, AWSMulti) run in moto: the fleet starts each
// instance's machine as a fake IMDSv2 and a real appliance with --provider
// aws, and lets it go as the machine disappearing.
type awsFleet struct {
	// procs holds the instances and runs their appliances. It has no group
	// file: only its process handling and status reading are used.
	procs *Group
	log   *slog.Logger

	// place, when set, puts an instance's machine in a network namespace:
	// it returns the namespace and the address of the root namespace where
	// the instance's IMDS listens (see faithful.go); ipPath runs `ip netns
	// exec`. nil runs the machines on loopback.
	place  func(ctx context.Context, id string) (netns, imdsHost string, err error)
	ipPath string

	mu   sync.Mutex
	imds map[string]*IMDS
	gone map[string]bool // instances let go of; never started again
}

// newAWSFleet is a fleet on the subnet sn, running opts.Binary with
// opts.Args after the fleet's own flags, its files in opts.Dir.
func newAWSFleet(opts Options, log *slog.Logger, sn *subnet) awsFleet {
	return awsFleet{
		procs: &Group{opts: opts, log: log, net: sn, nextHost: 1},
		log:   log,
		imds:  map[string]*IMDS{},
		gone:  map[string]bool{},
	}
}

// motoConfig is the fleet's own SDK configuration for moto at endpoint,
// with moto's dummy credentials.
func motoConfig(endpoint, region string) sdkaws.Config {
	return sdkaws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: sdkaws.String(endpoint),
	}
}

// startInstance serves md as the IMDS of an instance and starts its appliance on
// md.PrivateIP, with flags after the fleet's own and endpoint as its AWS.
func (f *awsFleet) startInstance(ctx context.Context, md InstanceMetadata, endpoint string, flags ...string) (*Instance, error) {
	id, addr := md.InstanceID, md.PrivateIP
	ns, imdsHost := "", "127.0.0.1"
	if f.place != nil {
		var err error
		if ns, imdsHost, err = f.place(ctx, id); err != nil {
			return nil, fmt.Errorf("fleet: instance %s: %w", id, err)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, killTimeout)
	err := waitPortsFreeIn(pctx, ns, addr)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("fleet: instance %s: %w", id, err)
	}
	opts := f.procs.opts
	inst := &Instance{
		ID:      id,
		Address: addr,
		DataDir: filepath.Join(opts.Dir, id),
		LogPath: filepath.Join(opts.Dir, id+".log"),
		Netns:   ns,
		g:       f.procs,
	}
	if err := os.MkdirAll(inst.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	meta, err := startIMDSOn(imdsHost, md)
	if err != nil {
		return nil, fmt.Errorf("fleet: instance %s: %w", id, err)
	}
	args := append([]string{"run",
		"--provider", "aws",
		"--data-dir", inst.DataDir,
		"--log-format", "text",
	}, flags...)
	args = append(args, f.procs.tls.args()...)
	args = append(args, opts.Args...)

	f.procs.mu.Lock()
	defer f.procs.mu.Unlock()
	if f.procs.closed {
		meta.Close()
		return nil, errors.New("fleet: group is closed")
	}
	binary := opts.Binary
	if ns != "" {
		binary, args = f.ipPath, append([]string{"netns", "exec", ns, opts.Binary}, args...)
	}
	p, err := startProcess(binary, args, f.applianceEnv(endpoint, md.Region, meta.URL), inst.LogPath)
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("fleet: %s: %w", inst, err)
	}
	inst.proc = p
	f.procs.instances = append(f.procs.instances, inst)
	f.mu.Lock()
	f.imds[id] = meta
	f.mu.Unlock()
	f.log.Info("appliance started", "id", id, "region", md.Region, "address", addr, "pid", p.pid(), "imds", meta.URL)
	return inst, nil
}

// waitPortsFreeIn polls until every appliance port of address can be
// bound in namespace ns ("" for this process's own).
func waitPortsFreeIn(ctx context.Context, ns, address string) error {
	if ns == "" {
		return waitPortsFree(ctx, address)
	}
	return Poll(ctx, 50*time.Millisecond, func() (bool, string) {
		free := false
		if err := inNetns(ns, func() error { free = portsFree(address); return nil }); err != nil {
			return false, err.Error()
		}
		return free, "a port of " + address + " is still bound in " + ns
	})
}

// applianceEnv is the environment of an instance's appliance: the
// fleet's own without any AWS setting of the machine, plus endpoint as
// the AWS APIs, the instance's IMDS and region, and moto's dummy
// credentials.
func (f *awsFleet) applianceEnv(endpoint, region, imdsURL string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	none := filepath.Join(f.procs.opts.Dir, "no-aws-config")
	return append(env,
		"AWS_ENDPOINT_URL="+endpoint,
		"AWS_EC2_METADATA_SERVICE_ENDPOINT="+imdsURL,
		"AWS_ACCESS_KEY_ID=testing",
		"AWS_SECRET_ACCESS_KEY=testing",
		"AWS_REGION="+region,
		"AWS_CONFIG_FILE="+none,
		"AWS_SHARED_CREDENTIALS_FILE="+none,
	)
}

func (f *awsFleet) isGone(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gone[id]
}

// release plays the machine of an instance disappearing: its appliance and
// etcd get SIGKILL, its IMDS stops, and the fleet never starts it again.
// ctx bounds the wait for etcd to die.
func (f *awsFleet) release(ctx context.Context, id string) error {
	f.mu.Lock()
	f.gone[id] = true
	md := f.imds[id]
	delete(f.imds, id)
	f.mu.Unlock()
	if md != nil {
		md.Close()
	}
	inst := f.procs.Instance(id)
	if inst == nil {
		return nil
	}
	if inst.Running() {
		if err := f.procs.Kill(id); err != nil && !errors.Is(err, ErrNotRunning) {
			return err
		}
	}
	// The appliance may have died before, leaving its etcd behind.
	if pid, _ := inst.EtcdPID(); pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		ctx, cancel := context.WithTimeout(ctx, killTimeout)
		defer cancel()
		return Poll(ctx, pollInterval, func() (bool, string) {
			return !pidAlive(pid), fmt.Sprintf("etcd pid %d of %s still alive", pid, inst)
		})
	}
	return nil
}

// closeIMDS stops the IMDS of every instance; Close calls it once the
// appliances are stopped.
func (f *awsFleet) closeIMDS() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, md := range f.imds {
		md.Close()
		delete(f.imds, id)
	}
}
