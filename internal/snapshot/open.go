package snapshot

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-appliance/etcd-appliance/internal/snapshot/spec"
)

// Options configure a Store. All fields are optional; the S3 ones apply to
// s3:// stores only.
type Options struct {
	Logger *slog.Logger

	// Region is the bucket's region; default: the SDK's (AWS_REGION),
	// else this instance's region from IMDSv2.
	Region string
	// Endpoint is the base URL of S3; default: the SDK's, which honours
	// AWS_ENDPOINT_URL (moto in tests).
	Endpoint string
	// IMDSEndpoint is the instance metadata service's URL, for the
	// instance role's credentials; default: the SDK's.
	IMDSEndpoint string
	// PathStyle addresses the bucket in the URL's path instead of its host
	// name, which S3 emulators (moto) and most S3-compatible servers need.
	// It is on whenever a custom endpoint is configured.
	PathStyle bool
	// Registerer receives etcd_appliance_aws_requests_total; nil
	// registers nowhere.
	Registerer prometheus.Registerer

	// ListPageSize is how many names List reads per page (an S3 listing
	// request, a directory read); default: S3's 1000, all of a directory.
	// Tests set it small to read many pages.
	ListPageSize int
}

// Open opens the store at rawURL, which names the flag --store:
// file:///absolute/path, or s3://bucket with an optional /key/prefix.
// Opening does no I/O on the store: a store that does not exist yet is an
// empty one (List), a store that is unreachable fails the call that
// reaches for it.
func Open(ctx context.Context, rawURL string, opts Options) (Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ListPageSize < 0 {
		return nil, fmt.Errorf("snapshot store: negative list page size %d", opts.ListPageSize)
	}
	loc, err := spec.ParseStoreURL(rawURL)
	if err != nil {
		return nil, err
	}
	log := opts.Logger.With("component", "snapshot-store", "store", rawURL)
	switch loc.Scheme {
	case spec.SchemeFile:
		return newFileStore(rawURL, loc.Dir, opts.ListPageSize, log), nil
	default:
		return newS3Store(ctx, rawURL, loc.Bucket, loc.Prefix, opts, log)
	}
}
