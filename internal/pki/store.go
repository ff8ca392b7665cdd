package pki

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
)

// ErrNoCA says that a store holds no cluster CA yet.
var ErrNoCA = errors.New("no cluster CA stored")

// Store keeps the cluster CA's stored form (ClusterCA.MarshalPEM) where
// every instance of the cluster finds it: a local directory (DirStore), or
// AWS Secrets Manager (package awssecret). The material holds the CA key:
// a Store never logs it and keeps it readable by the appliance only.
type Store interface {
	// Load is the stored material, or ErrNoCA.
	Load(ctx context.Context) ([]byte, error)
	// CreateIfAbsent stores material unless the store holds some already,
	// atomically: of concurrent creators exactly one creates. It returns
	// what the store holds afterwards — material when it created, the
	// winner's otherwise — and whether it created.
	CreateIfAbsent(ctx context.Context, material []byte) (stored []byte, created bool, err error)
	// Replace stores material in place of previous, what the caller read
	// and decided on (a step of a CA rotation). When the store holds
	// something else by then — another operator's step in between — it
	// stores nothing and the error wraps ErrCAChanged.
	Replace(ctx context.Context, previous, material []byte) error
}

// ErrCAChanged says that the stored CA is no longer the one a Replace was
// decided on.
var ErrCAChanged = errors.New("the stored cluster CA changed since it was read")

// EnsureCA is the cluster CA of store, created by generate when the store
// has none (race-free: when another instance created one first, its CA is
// the one returned). With generate nil, an empty store is ErrNoCA: an
// instance that must not create the CA (`client-cert`, an operator-supplied
// CA) only reads. What it reads is parsed before it is used, so that a
// corrupt or foreign secret is an error (ErrBadCA), never a CA. created
// says whether this call created the CA.
func EnsureCA(ctx context.Context, store Store, generate func() (*ClusterCA, error), log *slog.Logger) (ca *ClusterCA, created bool, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	data, err := store.Load(ctx)
	switch {
	case err == nil:
		ca, err := ParseClusterCA(data)
		if err != nil {
			return nil, false, err
		}
		log.Debug("using the stored cluster CA", "ca", ca.Signer, "trusted", len(ca.Trust.certs))
		return ca, false, nil
	case !errors.Is(err, ErrNoCA):
		return nil, false, fmt.Errorf("reading the cluster CA: %w", err)
	}
	if generate == nil {
		return nil, false, err
	}
	mine, err := generate()
	if err != nil {
		return nil, false, fmt.Errorf("generating the cluster CA: %w", err)
	}
	material, err := mine.MarshalPEM()
	if err != nil {
		return nil, false, err
	}
	stored, created, err := store.CreateIfAbsent(ctx, material)
	if err != nil {
		return nil, false, fmt.Errorf("storing the cluster CA: %w", err)
	}
	ca, err = ParseClusterCA(stored)
	if err != nil {
		return nil, false, err
	}
	if created {
		log.Info("created the cluster CA, no CA was stored", "ca", ca.Signer)
	} else {
		log.Info("using the cluster CA another instance stored first", "ca", ca.Signer)
	}
	return ca, created, nil
}

// DirStore keeps the cluster CA in a local directory, as ca.pem (0600) in a
// directory of mode 0700: the local provider's CA, and the files an
// operator may supply.
type DirStore struct {
	Dir string
}

var _ Store = DirStore{}

func (s DirStore) path() string {
	return filepath.Join(s.Dir, "ca.pem")
}

// Load reads ca.pem.
func (s DirStore) Load(ctx context.Context) ([]byte, error) {
	data, err := os.ReadFile(s.path())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoCA, s.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the cluster CA: %w", err)
	}
	return data, nil
}

// CreateIfAbsent creates ca.pem unless it exists; concurrent creators, in
// this process or others, see one winner (a hard link never replaces).
func (s DirStore) CreateIfAbsent(ctx context.Context, material []byte) ([]byte, bool, error) {
	err := createFileExclusive(s.path(), material, secretPerm)
	if err == nil {
		return material, true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, false, err
	}
	stored, err := s.Load(ctx)
	if err != nil {
		return nil, false, err
	}
	return stored, false, nil
}

// Replace rewrites ca.pem atomically when it still holds previous, under
// an exclusive lock on ca.lock that every Replace of the directory takes,
// in this process or others.
func (s DirStore) Replace(ctx context.Context, previous, material []byte) error {
	f, err := os.OpenFile(filepath.Join(s.Dir, "ca.lock"), os.O_RDWR|os.O_CREATE, secretPerm)
	if err != nil {
		return fmt.Errorf("locking the cluster CA: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking the cluster CA: %w", err)
	}
	defer func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }()
	stored, err := s.Load(ctx)
	if err != nil {
		return err
	}
	if !bytes.Equal(stored, previous) {
		return fmt.Errorf("%w (in %s)", ErrCAChanged, s.Dir)
	}
	return WriteFileAtomic(s.path(), material, secretPerm)
}
