package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// fileStore keeps snapshots in a directory: <root>/<cluster>/<name>.db and
// its sidecar <name>.db.json. Each file is written under a temporary name
// starting with a dot in the same directory, synced, and renamed into
// place, so a crash leaves either the whole file or none under its name.
type fileStore struct {
	url      string
	root     string
	pageSize int
	log      *slog.Logger
}

var _ Store = (*fileStore)(nil)

func newFileStore(url, root string, pageSize int, log *slog.Logger) *fileStore {
	return &fileStore{url: url, root: root, pageSize: pageSize, log: log}
}

func (s *fileStore) URL() string { return s.url }

// path is where the store keeps key (a snapshot's key or its sidecar's).
func (s *fileStore) path(key string) string { return filepath.Join(s.root, filepath.FromSlash(key)) }

func (s *fileStore) Put(ctx context.Context, m Meta, r io.Reader) (Meta, error) {
	if err := checkNew(m); err != nil {
		return Meta{}, fmt.Errorf("storing snapshot: %w", err)
	}
	m.Key = Key(m.Cluster, m.Time, m.Revision)
	dir := filepath.Dir(s.path(m.Key))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Meta{}, fmt.Errorf("storing snapshot %s: %w", m.Key, err)
	}
	// Replacing a snapshot of the same name: its old sidecar goes first,
	// so the new object is never listed with the old checksum.
	if err := removeIfExists(s.path(SidecarKey(m.Key))); err != nil {
		return Meta{}, fmt.Errorf("storing snapshot %s: %w", m.Key, err)
	}
	sum := newSummingReader(ctx, r)
	if err := writeAtomically(s.path(m.Key), sum); err != nil {
		return Meta{}, fmt.Errorf("storing snapshot %s: %w", m.Key, err)
	}
	// The object's name is durable before its sidecar can be.
	if err := syncDir(dir); err != nil {
		return Meta{}, fmt.Errorf("storing snapshot %s: %w", m.Key, err)
	}
	m.Size, m.SHA256 = sum.size, sum.sum()
	if err := s.writeSidecar(m); err != nil {
		return Meta{}, fmt.Errorf("storing snapshot %s: %w", m.Key, err)
	}
	return m, nil
}

func (s *fileStore) writeSidecar(m Meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	path := s.path(SidecarKey(m.Key))
	if err := writeAtomically(path, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("writing its sidecar: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func (s *fileStore) List(ctx context.Context, cluster string) ([]Meta, error) {
	if err := validCluster(cluster); err != nil {
		return nil, fmt.Errorf("listing snapshots: %w", err)
	}
	dir := filepath.Join(s.root, cluster)
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// Nothing stored yet: the first Put creates the directories.
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing snapshots of %s: %w", cluster, err)
	}
	defer f.Close()
	names := listing{}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		entries, err := f.ReadDir(max(s.pageSize, 0))
		for _, e := range entries {
			if e.Type().IsRegular() {
				names.add(cluster + "/" + e.Name())
			}
		}
		if err == io.EOF || (err == nil && s.pageSize <= 0) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing snapshots of %s: %w", cluster, err)
		}
	}
	var out []Meta
	for _, key := range names.complete(s.log) {
		m, err := s.readSidecar(key)
		switch {
		case errors.Is(err, ErrNotFound):
			s.log.Debug("snapshot deleted while listing", "key", key)
		case errors.Is(err, ErrCorrupt):
			s.log.Warn("snapshot not listed: its sidecar is corrupt", "key", key, "err", err)
		case err != nil:
			return nil, fmt.Errorf("listing snapshots of %s: %w", cluster, err)
		default:
			out = append(out, m)
		}
	}
	sortNewestFirst(out)
	return out, nil
}

// readSidecar reads the Meta of key: ErrNotFound when there is no sidecar,
// ErrCorrupt when it does not parse or describes another snapshot.
func (s *fileStore) readSidecar(key string) (Meta, error) {
	b, err := os.ReadFile(s.path(SidecarKey(key)))
	if errors.Is(err, fs.ErrNotExist) {
		return Meta{}, fmt.Errorf("%w: %s has no sidecar", ErrNotFound, key)
	}
	if err != nil {
		return Meta{}, fmt.Errorf("reading the sidecar of %s: %w", key, err)
	}
	return parseSidecar(key, b)
}

func (s *fileStore) Get(ctx context.Context, key string) (io.ReadCloser, Meta, error) {
	if _, err := ParseKey(key); err != nil {
		return nil, Meta{}, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	m, err := s.readSidecar(key)
	if err != nil {
		return nil, Meta{}, err
	}
	f, err := os.Open(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Meta{}, fmt.Errorf("%w: %s (its sidecar is there, the object is not)", ErrNotFound, key)
	}
	if err != nil {
		return nil, Meta{}, fmt.Errorf("opening snapshot %s: %w", key, err)
	}
	// A size that differs already fails here, before a long read.
	if fi, err := f.Stat(); err == nil && fi.Size() != m.Size {
		f.Close()
		return nil, Meta{}, fmt.Errorf("%w: %s has %d bytes, its sidecar says %d", ErrCorrupt, key, fi.Size(), m.Size)
	}
	return newVerifyingReader(f, m), m, nil
}

func (s *fileStore) SetMeta(ctx context.Context, m Meta) error {
	old, err := s.readSidecar(m.Key)
	if err != nil {
		return fmt.Errorf("updating snapshot %s: %w", m.Key, err)
	}
	if err := checkUpdate(old, m); err != nil {
		return err
	}
	if err := s.writeSidecar(m); err != nil {
		return fmt.Errorf("updating snapshot %s: %w", m.Key, err)
	}
	return nil
}

// Delete removes a snapshot, sidecar first: a crash in between leaves an
// object without sidecar, which List ignores. Deleting a snapshot that is
// not there is done already, not an error: thinning may race another
// leader's.
func (s *fileStore) Delete(ctx context.Context, key string) error {
	if _, err := ParseKey(key); err != nil {
		return fmt.Errorf("deleting snapshot: %w", err)
	}
	for _, path := range []string{s.path(SidecarKey(key)), s.path(key)} {
		if err := removeIfExists(path); err != nil {
			return fmt.Errorf("deleting snapshot %s: %w", key, err)
		}
	}
	return syncDir(filepath.Dir(s.path(key)))
}

// writeAtomically writes r to path through a temporary file in the same
// directory (so the rename stays in one file system), synced before the
// rename, so that path holds all of r or its former content.
func writeAtomically(path string, r io.Reader) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, r); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// syncDir makes renames and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
