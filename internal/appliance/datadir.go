package appliance

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.uber.org/zap"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
)

// dataDir is the appliance's directory layout:
//
//	<root>/etcd          etcd's own data dir
//	<root>/member.json   which cluster and member the etcd data belongs to
//	<root>/etcd.pid      the running etcd child's pid
//	<root>/bootstrap.json the bootstrap offer accepted, until etcd has data
//	<root>/wiped-<time>  data set aside by a rejoin, kept until the next wipe
//
// Data is never deleted by a plan: a wipe renames it, so an operator can still
// recover from the copy; only the copies of older wipes are removed.
type dataDir struct {
	root string
	// wal caches the WAL's last position; nil reads it every time.
	wal *walPositions
}

// marker records the identity of the etcd data, written once the member has
// started and refreshed with the newest revision seen.
type marker struct {
	ClusterID cluster.ID `json:"cluster_id"`
	MemberID  cluster.ID `json:"member_id"`
	Name      string     `json:"name"`
	Revision  int64      `json:"revision"`
	UpdatedAt time.Time  `json:"updated_at"`
	// Voters are the voters' names of the data's cluster, as last listed.
	Voters []string `json:"voters,omitempty"`
	// Endpoints are the client URLs of its members, as last listed: where
	// the cluster may still run when their instances left the group.
	Endpoints []string `json:"endpoints,omitempty"`
	// PeerURL is this member's own peer URL, as last listed: its scheme is
	// the one etcd must serve peers with on this data (a move between
	// plaintext and TLS changes it). Markers of older releases lack it.
	PeerURL string `json:"peer_url,omitempty"`
}

// keptWipes is how many set-aside copies of the live cluster's own data are
// kept; copies of any other or unknown cluster are never pruned, as they may
// be the only ones left.
const keptWipes = 1

func (d dataDir) etcd() string    { return filepath.Join(d.root, "etcd") }
func (d dataDir) marker() string  { return filepath.Join(d.root, "member.json") }
func (d dataDir) walDir() string  { return filepath.Join(d.etcd(), "member", "wal") }
func (d dataDir) pidFile() string { return filepath.Join(d.root, "etcd.pid") }
func (d dataDir) offer() string   { return filepath.Join(d.root, "bootstrap.json") }

// restoreScratch is where a snapshot is restored before it replaces etcd/.
func (d dataDir) restoreScratch() string { return filepath.Join(d.root, "restore-scratch") }

// removeScratch removes what an interrupted snapshot, restore or
// verification left behind: temporary files only, never data.
func (d dataDir) removeScratch() error {
	var errs []error
	for _, pattern := range []string{"snapshot-*.db", "restore-*.db", "verify-*", "restore-scratch"} {
		matches, err := filepath.Glob(filepath.Join(d.root, pattern))
		if err != nil {
			return err
		}
		for _, m := range matches {
			errs = append(errs, os.RemoveAll(m))
		}
	}
	return errors.Join(errs...)
}

func (d dataDir) ensure() error {
	if err := os.MkdirAll(d.root, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	return nil
}

// local describes the etcd data for the startup plan.
func (d dataDir) local() (cluster.LocalData, error) {
	entries, err := os.ReadDir(filepath.Join(d.etcd(), "member", "wal"))
	if errors.Is(err, fs.ErrNotExist) {
		return d.withOffer(cluster.LocalData{})
	}
	if err != nil {
		return cluster.LocalData{}, fmt.Errorf("reading etcd data dir: %w", err)
	}
	ld := cluster.LocalData{Exists: len(entries) > 0}
	if !ld.Exists {
		return d.withOffer(ld)
	}
	m, ok, err := d.readMarker()
	if err != nil {
		return ld, err
	}
	if ok {
		ld.Known = true
		ld.ClusterID, ld.MemberID, ld.Revision, ld.Voters = m.ClusterID, m.MemberID, m.Revision, m.Voters
	}
	// Unreadable, the log's position stays unknown and the revision
	// compares the data instead.
	ld.Log, _ = d.wal.last(d.walDir())
	return d.withOffer(ld)
}

// withOffer adds the bootstrap offer accepted earlier, when there is one.
func (d dataDir) withOffer(ld cluster.LocalData) (cluster.LocalData, error) {
	b, err := os.ReadFile(d.offer())
	if errors.Is(err, fs.ErrNotExist) {
		return ld, nil
	}
	if err != nil {
		return ld, fmt.Errorf("reading bootstrap offer: %w", err)
	}
	var o cluster.BootstrapOffer
	if err := json.Unmarshal(b, &o); err != nil || o.Token == "" {
		// Written atomically, so only a hand edit tears it; without it the
		// instance simply waits for a live cluster.
		return ld, nil
	}
	ld.Offer = &o
	return ld, nil
}

func (d dataDir) writeOffer(o *cluster.BootstrapOffer) error {
	return writeFileJSON(d.offer(), o)
}

func (d dataDir) removeOffer() error {
	if err := os.Remove(d.offer()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing bootstrap offer: %w", err)
	}
	return nil
}

func (d dataDir) readMarker() (marker, bool, error) {
	b, err := os.ReadFile(d.marker())
	if errors.Is(err, fs.ErrNotExist) {
		return marker{}, false, nil
	}
	if err != nil {
		return marker{}, false, fmt.Errorf("reading member marker: %w", err)
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		// A torn marker means unknown identity, which the plan handles safely.
		return marker{}, false, nil
	}
	return m, true, nil
}

func (d dataDir) writeMarker(m marker) error {
	return writeFileJSON(d.marker(), m)
}

// writeFileJSON replaces path atomically and durably.
func writeFileJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := replaceFile(path, b, syncDir); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// replaceFile replaces path with b: written to a temporary file and synced,
// renamed over path, and the directory synced, since the rename is the
// commit point: without the directory's sync, a power loss can undo the
// rename, and the record (member.json, bootstrap.json) is lost or old.
// syncDirectory is syncDir, or a failing one in tests.
func replaceFile(path string, b []byte, syncDirectory func(dir string) error) (err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDirectory(filepath.Dir(path))
}

// syncDir makes the entries of dir durable: the files created, renamed
// into or out of it.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return d.Close()
}

// wipe sets the etcd data and its marker aside and returns where they went.
// live is the cluster the instance is about to (re)join.
func (d dataDir) wipe(now time.Time, live cluster.ID) (string, error) {
	aside := filepath.Join(d.root, "wiped-"+now.UTC().Format("20060102T150405.000000000"))
	if err := os.MkdirAll(aside, 0o700); err != nil {
		return "", fmt.Errorf("wiping data dir: %w", err)
	}
	for _, p := range []string{d.etcd(), d.marker(), d.offer()} {
		err := os.Rename(p, filepath.Join(aside, filepath.Base(p)))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("wiping data dir: %w", err)
		}
	}
	// The renames are the wipe: made durable before anything is planned on
	// an empty data dir, so that a power loss never brings the old data
	// back under a new member's marker.
	for _, dir := range []string{aside, d.root} {
		if err := syncDir(dir); err != nil {
			return "", fmt.Errorf("wiping data dir: %w", err)
		}
	}
	return aside, d.pruneWipes(live)
}

// pruneWipes removes the older set-aside copies of the live cluster's own
// data, which the live cluster holds anyway.
func (d dataDir) pruneWipes(live cluster.ID) error {
	wipes, err := filepath.Glob(filepath.Join(d.root, "wiped-*"))
	if err != nil {
		return err
	}
	sort.Strings(wipes)
	var own []string
	for _, w := range wipes {
		m, ok, err := dataDir{root: w}.readMarker()
		if err == nil && ok && m.ClusterID == live && live != 0 {
			own = append(own, w)
		}
	}
	for len(own) > keptWipes {
		if err := os.RemoveAll(own[0]); err != nil {
			return fmt.Errorf("pruning old wiped data: %w", err)
		}
		own = own[1:]
	}
	return nil
}

// offerIdentity computes the cluster and member ids that etcd derives from
// a bootstrap offer, exactly as etcd does.
func offerIdentity(o *cluster.BootstrapOffer, name string) (cluster.ID, cluster.ID, error) {
	var pairs []string
	for _, m := range o.Members {
		pairs = append(pairs, m.Name+"="+m.PeerURL)
	}
	urls, err := types.NewURLsMap(strings.Join(pairs, ","))
	if err != nil {
		return 0, 0, fmt.Errorf("bootstrap offer: %w", err)
	}
	rc, err := membership.NewClusterFromURLsMap(zap.NewNop(), o.Token, urls)
	if err != nil {
		return 0, 0, fmt.Errorf("bootstrap offer: %w", err)
	}
	m := rc.MemberByName(name)
	if m == nil {
		return 0, 0, fmt.Errorf("bootstrap offer does not list %s", name)
	}
	return cluster.ID(rc.ID()), cluster.ID(m.ID), nil
}

// errDataDirBusy: another process holds the data dir.
var errDataDirBusy = errors.New("another etcd-appliance holds this data dir")

// lock takes the data dir for this process (an advisory lock on
// <root>/.lock, released when the process ends): the daemon holds it while
// it runs, and a by-hand restore takes it, so that the two never change the
// data at once.
func (d dataDir) lock() (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(d.root, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking the data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", d.root, errDataDirBusy)
		}
		return nil, fmt.Errorf("locking the data dir: %w", err)
	}
	return func() { f.Close() }, nil
}
