package appliance

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// CA rotation with --tls auto (§4.8, issue 11): an operator takes the
// steps with `etcd-appliance ca introduce|promote|retire`, each a new
// stored CA (pki.ClusterCA.Introduce, Promote, Retire); every appliance
// reads the store every --tls-ca-refresh-interval and rolls a change out
// on its member:
//   - its API and its clients trust the new bundle at once, and a new
//     signer issues the member a certificate at once (Renewer.SetCA;
//     etcd reads the certificate file at every handshake);
//   - etcd reads --trusted-ca-file only when it starts (see package pki),
//     so etcd is restarted, in turn (inTurn: under the membership lock,
//     every other member a started healthy voter, leadership handed over,
//     until the member is a healthy voter again).
// Each member reports on /v1/status what its appliance and its running
// etcd trust and who issued its certificate (cluster.TLSStatus), from
// which the `ca` command judges whether the next step is safe
// (cluster.CheckCAStep).

// trustRestartEvery bounds how often a member whose etcd runs with an old
// bundle asks for its turn to restart.
const trustRestartEvery = time.Second

// caRotation rolls the stored cluster CA out on this member.
type caRotation struct {
	log      *slog.Logger
	now      func() time.Time
	store    pki.Store
	renewer  *pki.Renewer
	interval time.Duration
	// caFile is etcd's --trusted-ca-file, which the renewer writes.
	caFile string
	// changed wakes the supervision when the bundle changed.
	changed chan struct{}

	mu       sync.Mutex
	ca       *pki.ClusterCA
	material []byte // as last read; nil before the first read
	readAt   time.Time
	// known are the CAs ever trusted here, to name the issuer of a
	// certificate whose CA was retired since.
	known []*x509.Certificate
	// etcdTrust are the fingerprints of the bundle the running etcd was
	// started with; nil while none runs.
	etcdTrust []string
	// waiting says why the restart that loads the bundle waits.
	waiting  string
	lastTry  time.Time
	restarts prometheus.Counter
	readErrs prometheus.Counter
}

func newCARotation(n *node, store pki.Store, r *pki.Renewer, ca *pki.ClusterCA, caFile string) *caRotation {
	c := &caRotation{log: n.log.With("component", "ca-rotation"), now: n.now, store: store, renewer: r, ca: ca,
		interval: n.cfg.TLSCARefreshInterval, caFile: caFile, changed: make(chan struct{}, 1),
		known: ca.Trust.Certificates(), readAt: n.now()}
	c.restarts = prometheus.NewCounter(prometheus.CounterOpts{Name: "etcd_appliance_tls_ca_restarts_total",
		Help: "Restarts of etcd, in turn, that loaded a changed trust bundle of a CA rotation."})
	c.readErrs = prometheus.NewCounter(prometheus.CounterOpts{Name: "etcd_appliance_tls_ca_read_errors_total",
		Help: "Failed reads of the cluster CA store (--tls-ca-refresh-interval)."})
	for _, col := range []prometheus.Collector{c.restarts, c.readErrs,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcd_appliance_tls_ca_trusted",
			Help: "CAs this appliance trusts: 1, or 2 during a CA rotation."},
			func() float64 { return float64(len(c.current().Trust.Certificates())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcd_appliance_tls_ca_rotation_pending",
			Help: "1 while this member's etcd runs with another trust bundle than the stored one, or its certificate is not of the signer."},
			func() float64 {
				if cluster.RotationProgress(c.status()) != "" {
					return 1
				}
				return 0
			}),
	} {
		err := n.metrics.registry.Register(col)
		var already prometheus.AlreadyRegisteredError
		if err != nil && !errors.As(err, &already) {
			panic(err)
		}
	}
	return c
}

func (c *caRotation) current() *pki.ClusterCA {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ca
}

// run reads the store every interval until ctx ends.
func (c *caRotation) run(ctx context.Context) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.refresh(ctx)
	}
}

// refresh reads the store and, when the CA changed, takes it: the renewer
// trusts its bundle (and writes it for etcd) and, with a new signer,
// renews the certificate under it.
func (c *caRotation) refresh(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	data, err := c.store.Load(rctx)
	cancel()
	if err != nil {
		c.readErrs.Inc()
		c.log.Warn("reading the cluster CA store failed; the CA in use stays", "err", err)
		return
	}
	c.mu.Lock()
	same := bytes.Equal(data, c.material)
	c.readAt = c.now()
	c.mu.Unlock()
	if same {
		c.log.Debug("the cluster CA is unchanged")
		return
	}
	ca, err := pki.ParseClusterCA(data)
	if err != nil {
		c.readErrs.Inc()
		c.log.Error("the stored cluster CA is unusable; the CA in use stays", "err", err)
		return
	}
	prev := c.current()
	if step := caChange(prev, ca); step != "" {
		if err := c.renewer.SetCA(ca); err != nil {
			c.log.Error("taking the changed cluster CA failed; asking again at the next read", "err", err)
			return
		}
		c.log.Info("CA rotation: took the stored cluster CA", "change", step, "ca", ca,
			"trusted", shortFingerprints(ca.Trust.Fingerprints()), "certificate", c.renewer.Current())
		select {
		case c.changed <- struct{}{}:
		default:
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ca, c.material = ca, data
	for _, cert := range ca.Trust.Certificates() {
		if !slices.ContainsFunc(c.known, cert.Equal) {
			c.known = append(c.known, cert)
		}
	}
}

// caChange names what differs from prev to next, "" when nothing that a
// member uses does.
func caChange(prev, next *pki.ClusterCA) string {
	sameNext := (prev.Next == nil) == (next.Next == nil) && (prev.Next == nil || prev.Next.Cert.Equal(next.Next.Cert))
	switch {
	case !prev.Signer.Cert.Equal(next.Signer.Cert):
		return "a new signer"
	case !prev.Trust.Equal(next.Trust) && len(next.Trust.Certificates()) < len(prev.Trust.Certificates()):
		return "CAs retired"
	case !prev.Trust.Equal(next.Trust):
		return "CAs introduced"
	case !sameNext:
		return "another introduced CA"
	}
	return ""
}

// etcdStarting records the bundle etcd starts with: read from its
// --trusted-ca-file before it starts, so that a bundle written meanwhile
// makes etcd newer than recorded (one restart too many), never older.
func (c *caRotation) etcdStarting() {
	fps := []string{}
	if data, err := os.ReadFile(c.caFile); err == nil {
		if b, err := pki.ParseBundle(data); err == nil {
			fps = b.Fingerprints()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.etcdTrust = fps
}

// status is what the member reports of its TLS (cluster.TLSStatus).
func (c *caRotation) status() cluster.TLSStatus {
	cert := c.renewer.Current().Cert
	c.mu.Lock()
	defer c.mu.Unlock()
	st := cluster.TLSStatus{
		Trusted:             c.renewer.Trust().Fingerprints(),
		EtcdTrusted:         slices.Clone(c.etcdTrust),
		Signer:              pki.Fingerprint(c.ca.Signer.Cert),
		CertificateNotAfter: cert.NotAfter.UTC(),
		CARead:              c.readAt.UTC(),
	}
	if c.ca.Next != nil {
		st.Next = pki.Fingerprint(c.ca.Next.Cert)
	}
	for _, ca := range c.known {
		if cert.CheckSignatureFrom(ca) == nil {
			st.CertificateIssuer = pki.Fingerprint(ca)
		}
	}
	st.Rotation = cluster.RotationProgress(st)
	if st.Rotation != "" && c.waiting != "" {
		st.Rotation += ": " + c.waiting
	}
	return st
}

// restartDue reports whether etcd runs with another bundle than the
// appliance trusts and a turn may be asked for now (at most every
// trustRestartEvery); it records the ask.
func (c *caRotation) restartDue() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.etcdTrust == nil || c.now().Sub(c.lastTry) < trustRestartEvery {
		return false
	}
	if slices.Equal(sortedClone(c.etcdTrust), sortedClone(c.renewer.Trust().Fingerprints())) {
		return false
	}
	c.lastTry = c.now()
	return true
}

func (c *caRotation) setWaiting(why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting = why
}

// keepWith runs the store's reads beside keep (the renewer's Run) until
// ctx ends.
func (c *caRotation) keepWith(keep func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.run(ctx)
		}()
		err := keep(ctx)
		<-done
		return err
	}
}

// rotation is the instance's CA rotation, nil without --tls auto.
func (n *node) rotation() *caRotation {
	if n.tls == nil {
		return nil
	}
	return n.tls.rotation
}

// tlsStatus is the instance's TLS for /v1/status, nil without --tls auto.
func (n *node) tlsStatus() *cluster.TLSStatus {
	r := n.rotation()
	if r == nil {
		return nil
	}
	st := r.status()
	return &st
}

// trustChanged is closed over by the supervision to look again at once
// when the bundle changed; nil without --tls auto.
func (n *node) trustChanged() <-chan struct{} {
	if r := n.rotation(); r != nil {
		return r.changed
	}
	return nil
}

// rollOutTrust restarts etcd, in its turn, when it runs with another
// bundle than the stored one; release, called once it is the turn, lets go
// of the supervision's client of the local etcd. It returns the etcd that
// runs afterwards — proc while it is not the member's turn, or when the
// restart failed after stopping it (its exit then ends the supervision,
// and the appliance plans again) — and whether release was called.
func (s *supervisor) rollOutTrust(ctx context.Context, proc etcdProcess, release func()) (_ etcdProcess, released bool) {
	r := s.rotation()
	if r == nil || !r.restartDue() {
		return proc, false
	}
	start := s.now()
	restarted, err := s.starter.inTurn(ctx, restartTurn{
		what: "CA rotation",
		gate: func(context.Context, etcdAPI) (etcdProcess, error) {
			if s.starter.swapHeld != "" {
				return nil, fmt.Errorf("an in-place upgrade is held on this member (%s)", s.starter.swapHeld)
			}
			return nil, nil
		},
		restart: func(ctx context.Context, c etcdAPI, id cluster.ID) (etcdProcess, error) {
			s.log.Info("CA rotation: restarting etcd in turn to load the new trust bundle", "member", id,
				"trusted", shortFingerprints(r.renewer.Trust().Fingerprints()))
			r.restarts.Inc()
			released = true
			release()
			return s.starter.restartLocked(ctx, c, proc, id, "CA rotation", func(ctx context.Context) (etcdProcess, error) {
				return s.starter.launcher.launch(ctx, cluster.LaunchOnData(s.self.ID, s.peerURL(), s.clusterName()))
			})
		},
	})
	switch {
	case restarted != nil && err == nil:
		r.setWaiting("")
		s.log.Info("CA rotation: etcd restarted with the new trust bundle and is a healthy voter; the next member may go",
			"took", s.now().Sub(start).Round(time.Millisecond))
		return restarted, released
	case restarted != nil:
		r.setWaiting("")
		s.log.Warn("CA rotation: etcd restarted with the new trust bundle but is not a healthy voter yet", "err", err)
		return restarted, released
	case released:
		s.log.Error("CA rotation: etcd did not start again after its stop; planning again", "err", err)
		return proc, released
	}
	why := err.Error()
	if h := (*cluster.Hold)(nil); errors.As(err, &h) {
		why = h.Error()
	}
	why = "waiting for the turn: " + why
	r.mu.Lock()
	changed := r.waiting != why
	r.mu.Unlock()
	r.setWaiting(why)
	if changed {
		s.log.Debug("CA rotation: not restarting etcd yet", "why", why)
	}
	return proc, false
}

// isRunning reports whether proc has not exited.
func isRunning(proc etcdProcess) bool {
	select {
	case <-proc.Done():
		return false
	default:
		return true
	}
}

func shortFingerprints(fps []string) []string {
	out := make([]string, len(fps))
	for i, f := range fps {
		out[i] = cluster.ShortFingerprint(f)
	}
	return out
}

func sortedClone(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
