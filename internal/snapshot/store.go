// Package snapshot keeps the cluster's snapshots (SPEC §4.6): a Store of
// snapshot objects (file:// or s3://, see Open), each named by cluster,
// time and revision, with a sidecar that carries its checksum and is
// written last, so that a listed snapshot is always complete; and the
// retention that thins old snapshots (Thin, a pure function of the
// listing and the time).
//
// Snapshots stream through a Store: Put and Get hold at most one upload
// part (8 MiB, S3) or a copy buffer (file) in memory, whatever the size.
package snapshot

import (
	"context"
	"errors"
	"io"
	"time"
)

// Meta describes one snapshot. It is stored as the object's sidecar
// (<key>.json), written after the object itself: an object without its
// sidecar is an upload that did not finish, and is never listed.
type Meta struct {
	// Key is the object's name in the store, relative to the store's root:
	// <cluster>/<time>-r<revision>.db (time in UTC, 20060102T150405Z).
	Key string `json:"key"`
	// Cluster is the cluster's name; ClusterID the id of the etcd cluster
	// it was taken from (hex).
	Cluster   string `json:"cluster"`
	ClusterID string `json:"cluster_id,omitempty"`
	// Time is when the snapshot was taken, Revision the etcd revision it
	// holds.
	Time     time.Time `json:"time"`
	Revision int64     `json:"revision"`
	// RaftIndex and RaftTerm are the raft position of cluster ClusterID
	// that the data was applied up to (etcd's consistent index and its
	// term), 0 when unknown: a recovery compares them with a survivor's
	// log (§4.6).
	RaftIndex uint64 `json:"raft_index,omitempty"`
	RaftTerm  uint64 `json:"raft_term,omitempty"`
	// Size and SHA256 (hex) are of the object's bytes; Get verifies both.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// EtcdVersion is the version of the etcd that took it.
	EtcdVersion string `json:"etcd_version,omitempty"`
	// Verified says the snapshot was restored into a throwaway etcd after
	// upload and loaded; VerifiedAt when.
	Verified   bool      `json:"verified,omitempty"`
	VerifiedAt time.Time `json:"verified_at,omitzero"`
}

// Errors of a Store, for callers to tell apart with errors.Is.
var (
	// ErrNotFound: no such snapshot (or its sidecar is missing).
	ErrNotFound = errors.New("snapshot not found")
	// ErrCorrupt: the object's bytes do not match its sidecar's size or
	// checksum, or the sidecar does not parse.
	ErrCorrupt = errors.New("snapshot corrupt")
)

// Store holds snapshot objects. Open makes one from --store.
type Store interface {
	// URL is the store's location as configured, e.g. s3://bucket/prefix.
	URL() string
	// Put stores the snapshot read from r under the key made from m
	// (Cluster, Time, Revision), then its sidecar with the size and
	// checksum computed while writing. It returns the stored Meta. A
	// snapshot of the same key is replaced, its old sidecar removed first.
	Put(ctx context.Context, m Meta, r io.Reader) (Meta, error)
	// List returns the complete snapshots of a cluster, newest first (by
	// Time, then Revision), reading every page of the listing. A store
	// that holds nothing yet lists nothing; a store that cannot be read
	// (unreachable, denied, no such bucket) is an error, never an empty
	// list: recovery decides on it.
	List(ctx context.Context, cluster string) ([]Meta, error)
	// Get opens a snapshot. The reader verifies size and checksum as it is
	// read and fails with ErrCorrupt at the end when they do not match, so
	// a caller must read to EOF before trusting the bytes. An object whose
	// size already differs fails Get itself with ErrCorrupt; a missing
	// object or sidecar with ErrNotFound.
	Get(ctx context.Context, key string) (io.ReadCloser, Meta, error)
	// SetMeta rewrites a snapshot's sidecar (to record its verification).
	// Key, cluster, time, revision, size and checksum must stay as stored;
	// ErrNotFound when the snapshot has no sidecar.
	SetMeta(ctx context.Context, m Meta) error
	// Delete removes a snapshot: its sidecar first, then the object.
	// Deleting a snapshot that is not there is no error.
	Delete(ctx context.Context, key string) error
}
