package pki

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPollInterval is how often a FileSource looks at its files.
const DefaultPollInterval = 10 * time.Second

// FileSourceConfig configures a FileSource. Files.Cert, Files.Key and
// Files.CA are required.
type FileSourceConfig struct {
	// Files are the operator's certificate, key and CA bundle (--tls files).
	Files KeyPairFiles
	// Interval between two looks at the files; default DefaultPollInterval.
	Interval time.Duration
	// After is the clock's timer; default time.After.
	After func(time.Duration) <-chan time.Time
	// Logger; default: none.
	Logger *slog.Logger
}

// FileSource is --tls files: the operator's certificate, key and CA bundle,
// read again whenever their content changes (polled: a hash of the three
// files every Interval, so an in-place rewrite with an unchanged mtime and
// size is seen too). etcd reads the same files itself; the FileSource
// serves them to the appliance's own TLS endpoints.
//
// Content that does not parse — a file caught half-written by a copy, a key
// that does not match its certificate — leaves the last good one in use; it
// is logged once per distinct content (a file that cannot be read, at every
// look).
type FileSource struct {
	cfg FileSourceConfig
	log *slog.Logger

	mu   sync.Mutex
	seen [sha256.Size]byte

	current atomic.Pointer[KeyPair]
	trust   atomic.Pointer[Bundle]
}

var _ Credentials = (*FileSource)(nil)

// NewFileSource reads the files; unusable files are an error, naming the
// file and the problem.
func NewFileSource(cfg FileSourceConfig) (*FileSource, error) {
	if err := cfg.Files.validate(); err != nil {
		return nil, err
	}
	if cfg.Files.CA == "" {
		return nil, errors.New("--tls files needs a CA file")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultPollInterval
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &FileSource{cfg: cfg, log: log.With("component", "pki")}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Current is the certificate in use.
func (s *FileSource) Current() *KeyPair {
	return s.current.Load()
}

// Trust is the CA bundle in use.
func (s *FileSource) Trust() *Bundle {
	return s.trust.Load()
}

// GetCertificate is tls.Config.GetCertificate.
func (s *FileSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.current.Load().TLSCertificate(), nil
}

// GetClientCertificate is tls.Config.GetClientCertificate.
func (s *FileSource) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return s.current.Load().TLSCertificate(), nil
}

// Reload reads the files and takes their content when it changed since the
// last look and parses; it says whether it took new content. An error
// leaves the last good content in use.
func (s *FileSource) Reload() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.cfg.Files
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		return false, fmt.Errorf("reading the certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		return false, fmt.Errorf("reading the key: %w", err)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return false, fmt.Errorf("reading the CA bundle: %w", err)
	}
	sum := fingerprint(certPEM, keyPEM, caPEM)
	if sum == s.seen && s.current.Load() != nil {
		return false, nil
	}
	s.seen = sum
	kp, err := ParseKeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("certificate %s, key %s: %w", f.Cert, f.Key, err)
	}
	trust, err := ParseBundle(caPEM)
	if err != nil {
		return false, fmt.Errorf("CA bundle %s: %w", f.CA, err)
	}
	if _, err := trust.Verify(kp.Cert, nil, 0, kp.Cert.NotBefore); err != nil {
		// Checked at the start of its validity: an expired certificate is
		// still taken (etcd would serve it too), and said below.
		return false, fmt.Errorf("certificate %s is not signed by a CA of %s: %w", f.Cert, f.CA, err)
	}
	previous := s.current.Swap(kp)
	s.trust.Store(trust)
	s.log.Info("loaded the TLS files", "reason", reasonFor(previous), "certificate", kp,
		"cert_file", f.Cert, "ca_file", f.CA, "trusted", len(trust.certs))
	return true, nil
}

func reasonFor(previous *KeyPair) string {
	if previous == nil {
		return "start"
	}
	return "their content changed"
}

// Run looks at the files every Interval until ctx ends.
func (s *FileSource) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.cfg.After(s.cfg.Interval):
		}
		if _, err := s.Reload(); err != nil {
			s.log.Warn("the TLS files changed but are not usable; the last good ones stay in use", "error", err)
		}
	}
}

// fingerprint identifies the content of the files, each length-prefixed.
func fingerprint(parts ...[]byte) [sha256.Size]byte {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:", len(p))
		h.Write(p)
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum
}
