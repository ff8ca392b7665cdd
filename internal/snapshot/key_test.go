package snapshot

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestKeyRoundTrips(t *testing.T) {
	at := time.Date(2026, 3, 9, 14, 5, 7, 123456789, time.FixedZone("CET", 3600))
	key := Key("etcd-prod", at, 4711)
	if want := "etcd-prod/20260309T130507Z-r4711.db"; key != want {
		t.Fatalf("Key = %q, want %q (UTC, to the second)", key, want)
	}
	m, err := ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if m.Key != key || m.Cluster != "etcd-prod" || m.Revision != 4711 || !m.Time.Equal(at.Truncate(time.Second)) {
		t.Errorf("ParseKey(%q) = %+v", key, m)
	}
	if got := SidecarKey(key); got != key+".json" {
		t.Errorf("SidecarKey = %q", got)
	}
}

func TestParseKeyRejectsWhatKeyDoesNotWrite(t *testing.T) {
	for _, key := range []string{
		"",
		"20260309T130507Z-r4711.db",                   // no cluster
		"c/20260309T130507Z-r4711.db.json",            // a sidecar
		"c/20260309T130507Z-r4711",                    // no suffix
		"c/20260309T130507-r4711.db",                  // no zone
		"c/20260309T130507Z-r0.db",                    // revision 0
		"c/20260309T130507Z-r-3.db",                   // negative
		"c/20260309T130507Z-r04711.db",                // leading zero
		"c/20260309T130507Z-r+4711.db",                // sign
		"c/20260309T130507Z-rX.db",                    // not a number
		"c/sub/20260309T130507Z-r4711.db",             // nested
		"./20260309T130507Z-r4711.db",                 // not a cluster
		".c/20260309T130507Z-r4711.db",                // a temporary name
		"c/.20260309T130507Z-r4711.db.tmp-123",        // a temporary file
		"c/20261309T130507Z-r4711.db",                 // month 13
		"c\x00/20260309T130507Z-r4711.db",             // control character
		"c/20260309T130507Z-r99999999999999999999.db", // overflows int64
	} {
		if m, err := ParseKey(key); err == nil {
			t.Errorf("ParseKey(%q) = %+v, want an error", key, m)
		}
	}
}

func TestOpenRejectsBadURLsNamingTheFlagAndTheFix(t *testing.T) {
	for _, tt := range []struct{ url, fix string }{
		{"", "file:///absolute/path or s3://bucket"},
		{"/var/lib/snaps", "no scheme"},
		{"file://var/lib/snaps", "file:///var/lib/snaps"},
		{"file:relative", "an absolute path"},
		{"gs://bucket/x", `unsupported scheme "gs"`},
		{"s3://", "not an S3 bucket name"},
		{"s3://My_Bucket/x", "not an S3 bucket name"},
		{"s3://bucket//x", "empty, . or .. segment"},
		{"s3://bucket/a/../b", "empty, . or .. segment"},
		{"s3://bucket/x?region=eu-west-1", "query"},
		{"s3://key:secret@bucket/x", "user"},
		{"http://[::1", "s3://bucket"},
	} {
		_, err := Open(context.Background(), tt.url, Options{})
		if err == nil {
			t.Errorf("Open(%q) succeeded, want an error", tt.url)
			continue
		}
		if !strings.HasPrefix(err.Error(), "--store") || !strings.Contains(err.Error(), tt.fix) {
			t.Errorf("Open(%q): %v\nwant it to name --store and say %q", tt.url, err, tt.fix)
		}
	}
}

func TestOpenFileStoreDoesNoIO(t *testing.T) {
	s, err := Open(context.Background(), "file:///nonexistent/snapshots", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.URL() != "file:///nonexistent/snapshots" {
		t.Errorf("URL() = %q", s.URL())
	}
}
