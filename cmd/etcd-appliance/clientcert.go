package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/config"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
	"github.com/etcd-appliance/etcd-appliance/internal/pki/awssecret"
)

// runClientCert is `etcd-appliance client-cert`: a user certificate of the
// cluster CA (--tls auto) for etcdctl and programs, written to --out as
// cert.pem, key.pem (0600) and ca.pem, the bundle that verifies the
// members. Its common name is the etcd user under RBAC. It needs read
// access to the CA's key and never creates a CA.
func runClientCert(ctx context.Context, args []string, out io.Writer) int {
	fs := newFlagSet("client-cert")
	var name, dir, caDir, caSecret string
	var ttl time.Duration
	flag := func(v *string, flagName, help string) {
		fs.StringVar(v, flagName, os.Getenv(config.EnvName(flagName)), help)
		setEnvOf(fs, flagName, config.EnvName(flagName))
	}
	fs.StringVar(&name, "name", "", "the certificate's common name: the etcd user it authenticates as")
	fs.StringVar(&dir, "out", "", "directory to write cert.pem, key.pem (0600) and ca.pem to (created 0700)")
	fs.DurationVar(&ttl, "ttl", 24*time.Hour, "how long the certificate is valid")
	flag(&caDir, "tls-ca-dir", "the cluster's --tls-ca-dir")
	flag(&caSecret, "tls-ca-secret", "the cluster's --tls-ca-secret (AWS Secrets Manager, the instance's or AWS_REGION's region)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if err := clientCert(ctx, name, dir, caDir, caSecret, ttl, out); err != nil {
		fmt.Fprintf(os.Stderr, "etcd-appliance client-cert: %v\n", err)
		var usage usageError
		if errors.As(err, &usage) {
			return exitUsage
		}
		return 1
	}
	return 0
}

// usageError is a command line client-cert refuses.
type usageError struct{ error }

func clientCert(ctx context.Context, name, dir, caDir, caSecret string, ttl time.Duration, out io.Writer) error {
	switch {
	case name == "":
		return usageError{errors.New("--name is required: the etcd user the certificate authenticates as")}
	case dir == "":
		return usageError{errors.New("--out is required: the directory to write the certificate to")}
	case (caDir == "") == (caSecret == ""):
		return usageError{errors.New("give the cluster's CA: --tls-ca-dir or --tls-ca-secret, one of them")}
	case ttl <= 0:
		return usageError{fmt.Errorf("--ttl %s must be positive", ttl)}
	}
	var store pki.Store = pki.DirStore{Dir: caDir}
	if caSecret != "" {
		s, err := awssecret.Open(ctx, awssecret.Options{Name: caSecret})
		if err != nil {
			return err
		}
		store = s
	}
	ca, _, err := pki.EnsureCA(ctx, store, nil, nil)
	if err != nil {
		return fmt.Errorf("reading the cluster CA: %w", err)
	}
	kp, err := ca.Issue(pki.LeafRequest{Kind: pki.User, CommonName: name, Lifetime: ttl}, time.Now())
	if err != nil {
		return err
	}
	key, err := kp.KeyPEM()
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{{"key.pem", key, 0o600}, {"cert.pem", kp.CertPEM(), 0o644}, {"ca.pem", ca.Trust.PEM(), 0o644}}
	for _, f := range files {
		if err := pki.WriteFileAtomic(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "wrote %s (user %q, serial %x, valid until %s), %s and %s\n",
		filepath.Join(dir, "cert.pem"), name, kp.Cert.SerialNumber, kp.Cert.NotAfter.UTC().Format(time.RFC3339),
		filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem"))
	fmt.Fprintf(out, "etcdctl --cacert %s --cert %s --key %s --endpoints https://<member>:2379 ...\n",
		filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	return nil
}
