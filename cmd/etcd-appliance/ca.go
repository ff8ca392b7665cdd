package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/config"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
	"github.com/etcd-appliance/etcd-appliance/internal/pki/awssecret"
)

// runCA is `etcd-appliance ca`: the rotation of the cluster CA (--tls
// auto). Without --step it shows the stored CA and what every member
// trusts and serves; with --step it takes one step of the rotation —
// introduce, promote, retire — when it is safe (cluster.CheckCAStep), and
// refuses with one line and exit 1 when not yet. The members roll each
// step out by themselves within --tls-ca-refresh-interval.
func runCA(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("ca")
	fs.SetOutput(stderr)
	var cmd caCommand
	flag := func(v *string, flagName, help string) {
		fs.StringVar(v, flagName, os.Getenv(config.EnvName(flagName)), help)
		setEnvOf(fs, flagName, config.EnvName(flagName))
	}
	fs.StringVar(&cmd.step, "step", "", "the rotation's step to take: introduce (a new CA, trusted beside the signer), promote (the new CA signs), retire (only the new CA is trusted); none: show the rotation")
	flag(&cmd.caDir, "tls-ca-dir", "the cluster's --tls-ca-dir")
	flag(&cmd.caSecret, "tls-ca-secret", "the cluster's --tls-ca-secret (AWS Secrets Manager, the instance's or AWS_REGION's region)")
	fs.StringVar(&cmd.api, "api", os.Getenv("ETCD_APPLIANCE_API"), "appliance API of a member, e.g. 10.0.1.5:2378 (default: this host's addresses on port 2378); every member's is asked on its port")
	setEnvOf(fs, "api", "ETCD_APPLIANCE_API")
	fs.DurationVar(&cmd.timeout, "timeout", 10*time.Second, "how long to wait for the members' answers")
	fs.DurationVar(&cmd.lifetime, "ca-lifetime", pki.DefaultCALifetime, "introduce: the new CA's lifetime")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if err := cmd.run(ctx, stdout); err != nil {
		fmt.Fprintf(stderr, "etcd-appliance ca: %v\n", err)
		var usage usageError
		if errors.As(err, &usage) {
			return exitUsage
		}
		return 1
	}
	return 0
}

// caCommand is one run of `etcd-appliance ca`.
type caCommand struct {
	step, caDir, caSecret, api string
	timeout, lifetime          time.Duration
}

func (cmd caCommand) run(ctx context.Context, out io.Writer) error {
	step := cluster.CAStep(cmd.step)
	switch {
	case step != "" && step != cluster.CAIntroduce && step != cluster.CAPromote && step != cluster.CARetire:
		return usageError{fmt.Errorf("--step %q: want introduce, promote or retire (none to show the rotation)", cmd.step)}
	case (cmd.caDir == "") == (cmd.caSecret == ""):
		return usageError{errors.New("give the cluster's CA: --tls-ca-dir or --tls-ca-secret, one of them")}
	case cmd.lifetime <= 0:
		return usageError{fmt.Errorf("--ca-lifetime %s must be positive", cmd.lifetime)}
	}
	var store pki.Store = pki.DirStore{Dir: cmd.caDir}
	if cmd.caSecret != "" {
		s, err := awssecret.Open(ctx, awssecret.Options{Name: cmd.caSecret})
		if err != nil {
			return err
		}
		store = s
	}
	material, err := store.Load(ctx)
	if err != nil {
		return fmt.Errorf("reading the cluster CA: %w", err)
	}
	ca, err := pki.ParseClusterCA(material)
	if err != nil {
		return err
	}
	state := caState(ca)
	var members []cluster.MemberTLS
	if step != cluster.CAIntroduce {
		// Introduce changes nothing any member uses yet: it needs no
		// member's word. The others do, before they change the store.
		members, err = cmd.askMembers(ctx, ca)
		if err != nil && step != "" {
			return fmt.Errorf("%s refused: %w", step, err)
		}
	}
	if step == "" {
		showRotation(out, state, members, err)
		return nil
	}
	if err := cluster.CheckCAStep(step, state, members); err != nil {
		return fmt.Errorf("%s refused: %w", step, err)
	}
	var next *pki.ClusterCA
	switch step {
	case cluster.CAIntroduce:
		name := fmt.Sprintf("%s (from %s)", strings.TrimSuffix(ca.Signer.Cert.Subject.CommonName, "."), time.Now().UTC().Format("2006-01-02"))
		a, err := pki.NewAuthority(name, time.Now(), cmd.lifetime)
		if err != nil {
			return err
		}
		next = ca.Introduce(a)
	case cluster.CAPromote:
		if next, err = ca.Promote(); err != nil {
			return err
		}
	case cluster.CARetire:
		next = ca.Retire()
	}
	data, err := next.MarshalPEM()
	if err != nil {
		return err
	}
	if err := store.Replace(ctx, material, data); err != nil {
		if errors.Is(err, pki.ErrCAChanged) {
			return fmt.Errorf("%s refused: %w; someone else took a step meanwhile: look again with `etcd-appliance ca`", step, err)
		}
		return fmt.Errorf("%s: storing the CA: %w", step, err)
	}
	fmt.Fprintln(out, stepDone(step, caState(next)))
	return nil
}

// caState is ca as the rotation's checks see it.
func caState(ca *pki.ClusterCA) cluster.CAState {
	st := cluster.CAState{Signer: pki.Fingerprint(ca.Signer.Cert), Trusted: ca.Trust.Fingerprints()}
	if ca.Next != nil {
		st.Next = pki.Fingerprint(ca.Next.Cert)
	}
	return st
}

// stepDone is the line that says what a step stored and what comes next.
func stepDone(step cluster.CAStep, st cluster.CAState) string {
	short := cluster.ShortFingerprint
	switch step {
	case cluster.CAIntroduce:
		return fmt.Sprintf("introduced CA %s, trusted beside the signer %s: every member takes it within --tls-ca-refresh-interval "+
			"and restarts etcd in turn; then `ca --step promote`", short(st.Next), short(st.Signer))
	case cluster.CAPromote:
		return fmt.Sprintf("promoted CA %s to signer: every member renews its certificate under it; then `ca --step retire` "+
			"(user certificates of the old CA stop working then: issue new ones with client-cert)", short(st.Signer))
	default:
		return fmt.Sprintf("retired every CA but the signer %s: every member restarts etcd in turn to drop them", short(st.Signer))
	}
}

// askMembers reads every member's TLS from its appliance API: the member
// list from the API --api names (or this host's), then each member's own
// /v1/status on the same port. A member that does not answer is reported
// with its error, which refuses the steps that need it.
func (cmd caCommand) askMembers(ctx context.Context, ca *pki.ClusterCA) ([]cluster.MemberTLS, error) {
	creds, err := pki.NewRenewer(pki.RenewerConfig{CA: ca,
		Request: pki.LeafRequest{Kind: pki.User, CommonName: "etcd-appliance-ca", Lifetime: 10 * time.Minute}})
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: pki.MemberTransport(creds)}
	var candidates []string
	for _, u := range localAPIs(defaultAPIPort) {
		candidates = append(candidates, "https://"+strings.TrimPrefix(u, "http://"))
	}
	if cmd.api != "" {
		api := cmd.api
		if !strings.Contains(api, "://") {
			api = "https://" + api
		}
		base, err := apiBase(api)
		if err != nil {
			return nil, usageError{fmt.Errorf("--api %q: %v", cmd.api, err)}
		}
		candidates = []string{base}
	}
	st, err := askStatus(ctx, hc, candidates, cmd.timeout)
	if err != nil {
		return nil, err
	}
	if st.Error != "" {
		return nil, fmt.Errorf("%s lists no members: %s", st.Reporter, st.Error)
	}
	// Every member serves its API on the port of the one that answered
	// (--api-port is the same across a cluster).
	port := defaultAPIPort
	if u, err := url.Parse(candidates[0]); err == nil {
		if p, err := strconv.Atoi(u.Port()); err == nil {
			port = p
		}
	}
	var out []cluster.MemberTLS
	for _, m := range st.Members {
		out = append(out, cmd.askMember(ctx, hc, m, port))
	}
	return out, nil
}

func (cmd caCommand) askMember(ctx context.Context, hc *http.Client, m cluster.MemberStatus, port int) cluster.MemberTLS {
	if m.Name == "" || m.ClientURL == "" {
		return cluster.MemberTLS{Name: m.ID.String(), Err: "the member has not started"}
	}
	u, err := url.Parse(m.ClientURL)
	if err != nil {
		return cluster.MemberTLS{Name: m.Name, Err: fmt.Sprintf("client URL %q: %v", m.ClientURL, err)}
	}
	base := "https://" + net.JoinHostPort(u.Hostname(), fmt.Sprint(port))
	st, err := askStatus(ctx, hc, []string{base}, cmd.timeout)
	switch {
	case err != nil:
		return cluster.MemberTLS{Name: m.Name, Err: err.Error()}
	case st.Reporter != m.Name:
		return cluster.MemberTLS{Name: m.Name, Err: fmt.Sprintf("%s answered as %s", base, st.Reporter)}
	}
	return cluster.MemberTLS{Name: m.Name, TLS: st.TLS}
}

// showRotation prints the stored CA, what each member trusts and serves,
// and whether the next step may be taken.
func showRotation(w io.Writer, st cluster.CAState, members []cluster.MemberTLS, askErr error) {
	short := cluster.ShortFingerprint
	fmt.Fprintf(w, "stored CA: signer %s", short(st.Signer))
	if st.Next != "" {
		fmt.Fprintf(w, ", introduced %s", short(st.Next))
	}
	fmt.Fprintf(w, ", trusted %s\n", strings.Join(shortAll(st.Trusted), ","))
	if askErr != nil {
		fmt.Fprintf(w, "members: %v\n", askErr)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tTRUSTS\tETCD TRUSTS\tCERTIFICATE OF\tROTATION")
	for _, m := range members {
		if m.TLS == nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t%s\n", m.Name, cmp.Or(m.Err, "no TLS of --tls auto reported"))
			continue
		}
		t := m.TLS
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, strings.Join(shortAll(t.Trusted), ","),
			strings.Join(shortAll(t.EtcdTrusted), ","), short(t.CertificateIssuer), cmp.Or(t.Rotation, "done"))
	}
	tw.Flush()
	next := cluster.CARetire
	switch {
	case st.Next != "":
		next = cluster.CAPromote
	case len(st.Trusted) < 2:
		next = cluster.CAIntroduce
	}
	if err := cluster.CheckCAStep(next, st, members); err != nil {
		fmt.Fprintf(w, "next step: %s, not yet: %v\n", next, err)
	} else {
		fmt.Fprintf(w, "next step: %s, ready: etcd-appliance ca --step %s\n", next, next)
	}
}

func shortAll(fps []string) []string {
	out := make([]string, len(fps))
	for i, f := range fps {
		out[i] = cluster.ShortFingerprint(f)
	}
	return out
}
