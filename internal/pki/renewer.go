package pki

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// DefaultRenewFraction is the part of a certificate's validity after
	// which it is renewed: with a lifetime of days, a third of it is left to
	// retry a failing renewal.
	DefaultRenewFraction = 2.0 / 3
	// defaultRetryInterval is how soon a failed renewal is tried again, at
	// most a tenth of the lifetime.
	defaultRetryInterval = 30 * time.Second
)

// RenewerConfig configures a Renewer. CA and Request are required.
type RenewerConfig struct {
	// CA signs the certificates; SetCA replaces it (a rotation).
	CA *ClusterCA
	// Request is the certificate to keep: the member's name, addresses and
	// lifetime.
	Request LeafRequest
	// Files receive each certificate, its key and the trust bundle; with
	// Files.Cert empty the certificate lives in memory only.
	Files KeyPairFiles
	// RenewFraction is the part of the validity after which a certificate
	// is renewed, in (0, 1); default DefaultRenewFraction.
	RenewFraction float64
	// KeepKey renews with the key of the first certificate instead of a
	// new key each time. etcd reads the certificate file and then the key
	// file at every handshake; with a new key, a handshake whose reads
	// straddle a renewal pairs the old certificate with the new key and
	// fails (its peer dials again). With the key kept no handshake ever
	// fails, but a stolen key stays good for as long as the Renewer lives,
	// not one certificate lifetime. Default: a new key each renewal.
	KeepKey bool
	// RetryInterval is how soon a failed renewal is retried; default 30 s,
	// at most a tenth of the lifetime.
	RetryInterval time.Duration
	// Now and After are the clock; default time.Now and time.After.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
	// Logger; default: none.
	Logger *slog.Logger
}

// Renewer keeps a member's certificate fresh: it issues one from the
// cluster CA, renews it when RenewFraction of its validity has passed, and
// writes each to Files, where etcd picks it up at its next handshake
// without a restart (see the package doc). The appliance's own TLS
// endpoints take it from GetCertificate and GetClientCertificate.
type Renewer struct {
	cfg RenewerConfig
	log *slog.Logger

	// mu serialises issuing and writing, so files and memory agree.
	mu      sync.Mutex
	current atomic.Pointer[KeyPair]
	ca      atomic.Pointer[ClusterCA]
	// changed wakes Run when SetCA renewed out of schedule.
	changed chan struct{}
}

var _ Credentials = (*Renewer)(nil)

// NewRenewer issues the first certificate and writes it, so that etcd can
// start on the files as soon as it returns.
func NewRenewer(cfg RenewerConfig) (*Renewer, error) {
	if cfg.CA == nil {
		return nil, errors.New("a renewer needs a CA")
	}
	if err := cfg.Request.validate(); err != nil {
		return nil, err
	}
	if cfg.Files.Cert != "" || cfg.Files.Key != "" {
		if err := cfg.Files.validate(); err != nil {
			return nil, err
		}
	}
	if cfg.RenewFraction == 0 {
		cfg.RenewFraction = DefaultRenewFraction
	}
	if cfg.RenewFraction <= 0 || cfg.RenewFraction >= 1 {
		return nil, fmt.Errorf("renew fraction %v: must be between 0 and 1", cfg.RenewFraction)
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = defaultRetryInterval
	}
	cfg.RetryInterval = min(cfg.RetryInterval, cfg.Request.Lifetime/10)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Renewer{cfg: cfg, log: log.With("component", "pki"), changed: make(chan struct{}, 1)}
	r.ca.Store(cfg.CA)
	if err := r.renew("first certificate"); err != nil {
		return nil, err
	}
	return r, nil
}

// Current is the certificate in use.
func (r *Renewer) Current() *KeyPair {
	return r.current.Load()
}

// Trust is the bundle of the current CA.
func (r *Renewer) Trust() *Bundle {
	return r.ca.Load().Trust
}

// GetCertificate is tls.Config.GetCertificate: the current certificate.
func (r *Renewer) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.current.Load().TLSCertificate(), nil
}

// GetClientCertificate is tls.Config.GetClientCertificate: the current
// certificate, which is also a client certificate.
func (r *Renewer) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.current.Load().TLSCertificate(), nil
}

// RenewAt is when a certificate valid from notBefore to notAfter is due for
// renewal: after fraction of its validity.
func RenewAt(notBefore, notAfter time.Time, fraction float64) time.Time {
	return notBefore.Add(time.Duration(float64(notAfter.Sub(notBefore)) * fraction))
}

// due is when the current certificate is to be renewed.
func (r *Renewer) due() time.Time {
	c := r.current.Load().Cert
	return RenewAt(c.NotBefore, c.NotAfter, r.cfg.RenewFraction)
}

// RenewIfDue renews the certificate when it is due at the clock's now, and
// says whether it did.
func (r *Renewer) RenewIfDue() (bool, error) {
	if r.cfg.Now().Before(r.due()) {
		return false, nil
	}
	if err := r.renew(fmt.Sprintf("%.0f%% of its validity passed", r.cfg.RenewFraction*100)); err != nil {
		return false, err
	}
	return true, nil
}

// SetCA makes ca the CA of the renewer: its bundle is trusted and written
// at once, and, when its signer is not the one of the current certificate,
// the certificate is renewed under it now.
func (r *Renewer) SetCA(ca *ClusterCA) error {
	if ca == nil {
		return errors.New("SetCA: no CA")
	}
	r.ca.Store(ca)
	defer r.wake()
	if r.current.Load().Cert.CheckSignatureFrom(ca.Signer.Cert) == nil {
		if r.cfg.Files.CA == "" {
			return nil
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		return WriteFileAtomic(r.cfg.Files.CA, ca.Trust.PEM(), publicPerm)
	}
	return r.renew("the cluster CA changed signer")
}

func (r *Renewer) wake() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// renew issues a certificate from the current CA and writes it.
func (r *Renewer) renew(reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ca := r.ca.Load()
	var key crypto.Signer
	if previous := r.current.Load(); previous != nil && r.cfg.KeepKey {
		key = previous.key
	}
	kp, err := ca.Signer.issue(r.cfg.Request, key, r.cfg.Now())
	if err != nil {
		return fmt.Errorf("renewing the certificate of %q: %w", r.cfg.Request.CommonName, err)
	}
	if r.cfg.Files.Cert != "" {
		if err := WriteKeyPair(r.cfg.Files, kp, ca.Trust); err != nil {
			return fmt.Errorf("renewing the certificate of %q: %w", r.cfg.Request.CommonName, err)
		}
	}
	previous := r.current.Swap(kp)
	r.log.Info("issued the member certificate", "reason", reason, "certificate", kp, "previous", previous,
		"renew_at", RenewAt(kp.Cert.NotBefore, kp.Cert.NotAfter, r.cfg.RenewFraction))
	return nil
}

// Run renews the certificate whenever it is due until ctx ends. A failed
// renewal is logged and retried every RetryInterval; the certificate in
// use stays until it is replaced.
func (r *Renewer) Run(ctx context.Context) error {
	failed := false
	for {
		wait := r.due().Sub(r.cfg.Now())
		if failed {
			wait = r.cfg.RetryInterval
		}
		r.log.Debug("next certificate renewal", "in", max(wait, 0))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.changed:
			continue
		case <-r.cfg.After(max(wait, 0)):
		}
		_, err := r.RenewIfDue()
		failed = err != nil
		if failed {
			r.log.Warn("renewing the member certificate failed; the current one stays in use",
				"error", err, "not_after", r.current.Load().Cert.NotAfter, "retry_in", r.cfg.RetryInterval)
		}
	}
}
