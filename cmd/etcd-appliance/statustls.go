package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/etcd-appliance/etcd-appliance/internal/config"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// statusTLS are the flags with which `status` speaks TLS to an appliance
// API of a cluster run with --tls auto or files: the CA directory (it then
// issues itself a short-lived user certificate, which /v1/status admits), or
// a certificate, key and CA bundle of the cluster's.
type statusTLS struct {
	caDir, certFile, keyFile, caFile string
}

func (s *statusTLS) register(fs *pflag.FlagSet) {
	for _, f := range []struct {
		v          *string
		name, help string
	}{
		{&s.caDir, "tls-ca-dir", "the cluster's --tls-ca-dir: speak TLS with a certificate issued from its CA (needs read access to its key)"},
		{&s.certFile, "tls-cert-file", "speak TLS with this client certificate of the cluster's CA (with --tls-key-file and --tls-trusted-ca-file)"},
		{&s.keyFile, "tls-key-file", "the key of --tls-cert-file"},
		{&s.caFile, "tls-trusted-ca-file", "the cluster's CA certificates, against which the appliance's certificate is verified"},
	} {
		fs.StringVar(f.v, f.name, os.Getenv(config.EnvName(f.name)), f.help)
		setEnvOf(fs, f.name, config.EnvName(f.name))
	}
}

// on reports whether TLS flags are given.
func (s *statusTLS) on() bool {
	return s.caDir != "" || s.certFile != "" || s.keyFile != "" || s.caFile != ""
}

// scheme is the scheme of the appliance API.
func (s *statusTLS) scheme() string {
	if s.on() {
		return "https"
	}
	return "http"
}

// client is the HTTP client of the appliance API: plain, or speaking TLS
// with the certificate the flags give and accepting only a member
// certificate of the cluster CA for the address asked.
func (s *statusTLS) client(ctx context.Context) (*http.Client, error) {
	if !s.on() {
		return http.DefaultClient, nil
	}
	var creds pki.Credentials
	switch {
	case s.caDir != "" && (s.certFile != "" || s.keyFile != "" || s.caFile != ""):
		return nil, errors.New("--tls-ca-dir and --tls-cert-file/--tls-key-file/--tls-trusted-ca-file are two ways: give one")
	case s.caDir != "":
		ca, _, err := pki.EnsureCA(ctx, pki.DirStore{Dir: s.caDir}, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca-dir %s: %w", s.caDir, err)
		}
		r, err := pki.NewRenewer(pki.RenewerConfig{CA: ca,
			Request: pki.LeafRequest{Kind: pki.User, CommonName: "etcd-appliance-status", Lifetime: 10 * time.Minute}})
		if err != nil {
			return nil, fmt.Errorf("--tls-ca-dir %s: %w", s.caDir, err)
		}
		creds = r
	case s.certFile == "" || s.keyFile == "" || s.caFile == "":
		return nil, errors.New("--tls-cert-file, --tls-key-file and --tls-trusted-ca-file go together: give all three")
	default:
		src, err := pki.NewFileSource(pki.FileSourceConfig{Files: pki.KeyPairFiles{Cert: s.certFile, Key: s.keyFile, CA: s.caFile}})
		if err != nil {
			return nil, err
		}
		creds = src
	}
	return &http.Client{Transport: pki.MemberTransport(creds)}, nil
}

// withScheme is urls with https instead of http when TLS flags are given.
func (s *statusTLS) withScheme(urls []string) []string {
	if !s.on() {
		return urls
	}
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = "https://" + strings.TrimPrefix(u, "http://")
	}
	return out
}
