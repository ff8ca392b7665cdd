package snapshot

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
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
	loc, err := parseStoreURL(rawURL)
	if err != nil {
		return nil, err
	}
	log := opts.Logger.With("component", "snapshot-store", "store", rawURL)
	switch loc.scheme {
	case "file":
		return newFileStore(rawURL, loc.path, opts.ListPageSize, log), nil
	default:
		return newS3Store(ctx, rawURL, loc.bucket, loc.path, opts, log)
	}
}

// storeURL is a parsed --store: a directory, or a bucket and a key prefix
// (no leading or trailing slash; empty for the bucket's root).
type storeURL struct {
	scheme, bucket, path string
}

const storeURLForms = "file:///absolute/path or s3://bucket/optional/prefix"

// bucketName is S3's rule for (new, DNS-compatible) bucket names.
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

func parseStoreURL(raw string) (storeURL, error) {
	if raw == "" {
		return storeURL{}, fmt.Errorf("--store is empty: want %s", storeURLForms)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return storeURL{}, fmt.Errorf("--store %q: %v: want %s", raw, err, storeURLForms)
	}
	if u.Opaque != "" {
		return storeURL{}, fmt.Errorf("--store %q: want an absolute path or a bucket after %s://: %s", raw, u.Scheme, storeURLForms)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return storeURL{}, fmt.Errorf("--store %q: user, query and fragment are not supported: want %s", raw, storeURLForms)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return storeURL{}, fmt.Errorf("--store %q: a file store needs an absolute path, with three slashes: file:///%s%s", raw, u.Host, u.Path)
		}
		if !path.IsAbs(u.Path) {
			return storeURL{}, fmt.Errorf("--store %q: a file store needs an absolute path: want file:///absolute/path", raw)
		}
		return storeURL{scheme: "file", path: path.Clean(u.Path)}, nil
	case "s3":
		if !bucketName.MatchString(u.Host) || strings.Contains(u.Host, "..") {
			return storeURL{}, fmt.Errorf("--store %q: %q is not an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens): want s3://bucket/optional/prefix", raw, u.Host)
		}
		prefix := strings.TrimSuffix(strings.TrimPrefix(u.Path, "/"), "/")
		for seg := range strings.SplitSeq(prefix, "/") {
			if prefix != "" && (seg == "" || seg == "." || seg == "..") {
				return storeURL{}, fmt.Errorf("--store %q: key prefix %q has an empty, . or .. segment: want s3://bucket/optional/prefix", raw, prefix)
			}
		}
		return storeURL{scheme: "s3", bucket: u.Host, path: prefix}, nil
	case "":
		return storeURL{}, fmt.Errorf("--store %q: no scheme: want %s", raw, storeURLForms)
	default:
		return storeURL{}, fmt.Errorf("--store %q: unsupported scheme %q: want %s", raw, u.Scheme, storeURLForms)
	}
}

// CheckURL validates a --store URL without opening the store.
func CheckURL(raw string) error {
	_, err := parseStoreURL(raw)
	return err
}
