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
// Cert and Key may name one file, which then holds the certificate followed
// by its key, mode 0600; etcd's --cert-file and --key-file may both name
// it. etcd opens the certificate path and then the key path at every
// handshake (see the package doc), so a renewal with a new key can be seen
// half done — the old certificate with the new key — and that handshake
// fails (its peer dials again). With two files, by a handshake that reads
// between the two renames; with one file, only by one whose own two opens
// straddle the one rename: a far smaller window (TestRenewalSeenHalfDone),
// so give etcd one file. A renewal that keeps the key
// (RenewerConfig.KeepKey) is never seen half done.
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
// given, each file replaced atomically (see WriteFileAtomic). Every file is
// written and synced first, then they are renamed into place one right
// after the other (the key before the certificate, so that a reader that
// sees the new certificate finds its key), so the time during which the
// new key goes with the old certificate is two renames, not two fsyncs.
func WriteKeyPair(files KeyPairFiles, kp *KeyPair, trust *Bundle) error {
	if err := files.validate(); err != nil {
		return err
	}
	key, err := kp.KeyPEM()
	if err != nil {
		return err
	}
	type file struct {
		path string
		data []byte
		perm os.FileMode
	}
	var writes []file
	if files.combined() {
		writes = append(writes, file{files.Cert, append(kp.CertPEM(), key...), secretPerm})
	} else {
		writes = append(writes, file{files.Key, key, secretPerm}, file{files.Cert, kp.CertPEM(), publicPerm})
	}
	if files.CA != "" && trust != nil {
		writes = append(writes, file{files.CA, trust.PEM(), publicPerm})
	}
	var staged []stagedFile
	defer func() {
		for _, f := range staged {
			f.discard()
		}
	}()
	for _, w := range writes {
		f, err := stage(w.path, w.data, w.perm)
		if err != nil {
			return err
		}
		staged = append(staged, f)
	}
	return commit(staged...)
}

// WriteFileAtomic replaces path with data: written to a temporary file of
// mode perm in the same directory, synced, then renamed over path, so that
// a reader sees the old content or the new, never a part, and a crash
// leaves one of them. A missing directory is created with mode 0700. The
// error names the path, never the data.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := stage(path, data, perm)
	if err != nil {
		return err
	}
	defer f.discard()
	return commit(f)
}

// stagedFile is the new content of path, complete and synced in a
// temporary file beside it, not yet in place.
type stagedFile struct {
	tmp, path string
}

// stage writes data to a temporary file of mode perm beside path.
func stage(path string, data []byte, perm os.FileMode) (stagedFile, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return stagedFile{}, fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return stagedFile{}, fmt.Errorf("writing %s: %w", path, err)
	}
	// CreateTemp makes the file 0600: a secret is never readable by others,
	// even for the moment before the chmod.
	werr := tmp.Chmod(perm)
	if werr == nil {
		_, werr = tmp.Write(data)
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if err := errors.Join(werr, tmp.Close()); err != nil {
		_ = os.Remove(tmp.Name())
		return stagedFile{}, fmt.Errorf("writing %s: %w", path, err)
	}
	return stagedFile{tmp: tmp.Name(), path: path}, nil
}

// commit renames the staged files into place in order, then makes the
// renames durable.
func commit(files ...stagedFile) error {
	for _, f := range files {
		if err := os.Rename(f.tmp, f.path); err != nil {
			return fmt.Errorf("writing %s: %w", f.path, err)
		}
	}
	synced := map[string]bool{}
	for _, f := range files {
		if dir := filepath.Dir(f.path); !synced[dir] {
			if err := syncDir(dir); err != nil {
				return err
			}
			synced[dir] = true
		}
	}
	return nil
}

// discard removes the temporary file of a stage that was not committed.
func (f stagedFile) discard() {
	_ = os.Remove(f.tmp)
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
