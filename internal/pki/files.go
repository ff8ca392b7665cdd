package pki

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

const (
	// secretPerm is the mode of every file holding a private key.
	secretPerm os.FileMode = 0o600
	// publicPerm is the mode of certificates and CA bundles.
	publicPerm os.FileMode = 0o644
	// dirPerm is the mode of the directories the package creates.
	dirPerm os.FileMode = 0o700
)

// KeyPairFiles are where a member's certificate, key and trusted CAs are
// written for etcd (--cert-file, --key-file, --trusted-ca-file and their
// --peer- twins) and etcdctl.
//
// Cert and Key may name one file: it then holds the certificate followed by
// its key, mode 0600, and a renewal replaces both with one rename. Read
// twice (etcd reads the certificate file, then the key file, at every
// handshake), two files can be seen half-renewed — a new certificate with
// the old key — and that one handshake fails; one file cannot. So point
// etcd's --cert-file and --key-file at the same file.
type KeyPairFiles struct {
	Cert string
	Key  string
	// CA receives the trust bundle; empty writes none.
	CA string
}

// combined says whether the certificate and key share one file.
func (f KeyPairFiles) combined() bool {
	return filepath.Clean(f.Cert) == filepath.Clean(f.Key)
}

func (f KeyPairFiles) validate() error {
	if f.Cert == "" || f.Key == "" {
		return fmt.Errorf("certificate file %q and key file %q: both are needed", f.Cert, f.Key)
	}
	return nil
}

// WriteKeyPair writes kp to files, and trust to files.CA when both are
// given, each file replaced atomically (see WriteFileAtomic). A separate
// key file is written before the certificate file, so that a reader that
// sees the new certificate finds its key.
func WriteKeyPair(files KeyPairFiles, kp *KeyPair, trust *Bundle) error {
	if err := files.validate(); err != nil {
		return err
	}
	key, err := kp.KeyPEM()
	if err != nil {
		return err
	}
	if files.combined() {
		if err := WriteFileAtomic(files.Cert, append(kp.CertPEM(), key...), secretPerm); err != nil {
			return err
		}
	} else {
		if err := WriteFileAtomic(files.Key, key, secretPerm); err != nil {
			return err
		}
		if err := WriteFileAtomic(files.Cert, kp.CertPEM(), publicPerm); err != nil {
			return err
		}
	}
	if files.CA != "" && trust != nil {
		if err := WriteFileAtomic(files.CA, trust.PEM(), publicPerm); err != nil {
			return err
		}
	}
	return nil
}

// WriteFileAtomic replaces path with data: written to a temporary file of
// mode perm in the same directory, synced, then renamed over path, so that
// a reader sees the old content or the new, never a part, and a crash
// leaves one of them. A missing directory is created with mode 0700. The
// error names the path, never the data.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes the file 0600; a secret is never readable by others,
	// even for the moment before the chmod.
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return syncDir(dir)
}

// createFileExclusive writes path with data unless path exists, atomically:
// the content is complete before the name appears (a link of a temporary
// file), and of concurrent creators exactly one succeeds; the others get an
// error for which errors.Is(err, fs.ErrExist) holds.
func createFileExclusive(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Chmod(perm)
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if err := errors.Join(werr, tmp.Close()); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	return syncDir(dir)
}

// syncDir makes a rename or link in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
