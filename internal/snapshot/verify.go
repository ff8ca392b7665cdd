package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
)

// summingReader passes a snapshot's bytes through while it counts and
// hashes them, so that Put learns size and checksum in the one pass that
// stores them. It stops with the context's error once ctx ends.
type summingReader struct {
	ctx  context.Context
	r    io.Reader
	hash hash.Hash
	size int64
}

func newSummingReader(ctx context.Context, r io.Reader) *summingReader {
	return &summingReader{ctx: ctx, r: r, hash: sha256.New()}
}

func (s *summingReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.r.Read(p)
	s.hash.Write(p[:n])
	s.size += int64(n)
	return n, err
}

// sum is the hex SHA-256 of the bytes read so far.
func (s *summingReader) sum() string { return hex.EncodeToString(s.hash.Sum(nil)) }

// verifyingReader reads a snapshot object and checks it against its
// sidecar: more bytes than the sidecar says fail at once, and at the
// object's end a short object or another checksum fail with ErrCorrupt
// instead of io.EOF. Errors of the underlying reader (a broken connection)
// pass through unchanged: they say nothing about the stored bytes.
type verifyingReader struct {
	body io.ReadCloser
	want Meta
	hash hash.Hash
	size int64
	err  error // sticky, once the end or a mismatch is reached
}

func newVerifyingReader(body io.ReadCloser, want Meta) *verifyingReader {
	return &verifyingReader{body: body, want: want, hash: sha256.New()}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.body.Read(p)
	v.hash.Write(p[:n])
	v.size += int64(n)
	if v.size > v.want.Size {
		v.err = fmt.Errorf("%w: %s is longer than the %d bytes of its sidecar", ErrCorrupt, v.want.Key, v.want.Size)
		return n, v.err
	}
	if err == io.EOF {
		v.err = v.check()
		return n, v.err
	}
	return n, err
}

// check is the verdict at the object's end: io.EOF when it is what its
// sidecar says, ErrCorrupt otherwise.
func (v *verifyingReader) check() error {
	if v.size != v.want.Size {
		return fmt.Errorf("%w: %s has %d bytes, its sidecar says %d", ErrCorrupt, v.want.Key, v.size, v.want.Size)
	}
	if sum := hex.EncodeToString(v.hash.Sum(nil)); sum != v.want.SHA256 {
		return fmt.Errorf("%w: %s has sha256 %s, its sidecar says %s", ErrCorrupt, v.want.Key, sum, v.want.SHA256)
	}
	return io.EOF
}

func (v *verifyingReader) Close() error { return v.body.Close() }
