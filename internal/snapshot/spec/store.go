package spec

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
)

// Schemes of a store URL.
const (
	SchemeFile = "file"
	SchemeS3   = "s3"
)

// Location is a parsed --store: a directory, or a bucket and a key prefix.
type Location struct {
	Scheme string // SchemeFile or SchemeS3
	// Dir is a file store's directory, absolute and clean.
	Dir string
	// Bucket and Prefix are an S3 store's; Prefix has no leading or
	// trailing slash and is empty for the bucket's root.
	Bucket, Prefix string
}

const storeURLForms = "file:///absolute/path or s3://bucket/optional/prefix"

// bucketName is S3's rule for (new, DNS-compatible) bucket names.
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// ParseStoreURL parses --store: file:///absolute/path, or s3://bucket with
// an optional /key/prefix. Its errors name the flag and the forms it takes.
func ParseStoreURL(raw string) (Location, error) {
	if raw == "" {
		return Location{}, fmt.Errorf("--store is empty: want %s", storeURLForms)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Location{}, fmt.Errorf("--store %q: %v: want %s", raw, err, storeURLForms)
	}
	if u.Opaque != "" {
		return Location{}, fmt.Errorf("--store %q: want an absolute path or a bucket after %s://: %s", raw, u.Scheme, storeURLForms)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Location{}, fmt.Errorf("--store %q: user, query and fragment are not supported: want %s", raw, storeURLForms)
	}
	switch u.Scheme {
	case SchemeFile:
		if u.Host != "" && u.Host != "localhost" {
			return Location{}, fmt.Errorf("--store %q: a file store needs an absolute path, with three slashes: file:///%s%s", raw, u.Host, u.Path)
		}
		if !path.IsAbs(u.Path) {
			return Location{}, fmt.Errorf("--store %q: a file store needs an absolute path: want file:///absolute/path", raw)
		}
		return Location{Scheme: SchemeFile, Dir: path.Clean(u.Path)}, nil
	case SchemeS3:
		if !bucketName.MatchString(u.Host) || strings.Contains(u.Host, "..") {
			return Location{}, fmt.Errorf("--store %q: %q is not an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens): want s3://bucket/optional/prefix", raw, u.Host)
		}
		prefix := strings.TrimSuffix(strings.TrimPrefix(u.Path, "/"), "/")
		for seg := range strings.SplitSeq(prefix, "/") {
			if prefix != "" && (seg == "" || seg == "." || seg == "..") {
				return Location{}, fmt.Errorf("--store %q: key prefix %q has an empty, . or .. segment: want s3://bucket/optional/prefix", raw, prefix)
			}
		}
		return Location{Scheme: SchemeS3, Bucket: u.Host, Prefix: prefix}, nil
	case "":
		return Location{}, fmt.Errorf("--store %q: no scheme: want %s", raw, storeURLForms)
	default:
		return Location{}, fmt.Errorf("--store %q: unsupported scheme %q: want %s", raw, u.Scheme, storeURLForms)
	}
}
