package spec

import "testing"

func TestParseStoreURL(t *testing.T) {
	for _, tt := range []struct {
		url  string
		want Location
	}{
		{"file:///var/lib/snaps", Location{Scheme: "file", Dir: "/var/lib/snaps"}},
		{"file:///var/lib/snaps/", Location{Scheme: "file", Dir: "/var/lib/snaps"}},
		{"file://localhost/var/lib/snaps", Location{Scheme: "file", Dir: "/var/lib/snaps"}},
		{"s3://my-bucket", Location{Scheme: "s3", Bucket: "my-bucket"}},
		{"s3://my-bucket/", Location{Scheme: "s3", Bucket: "my-bucket"}},
		{"s3://my.bucket/etcd/prod/", Location{Scheme: "s3", Bucket: "my.bucket", Prefix: "etcd/prod"}},
	} {
		got, err := ParseStoreURL(tt.url)
		if err != nil || got != tt.want {
			t.Errorf("ParseStoreURL(%q) = %+v, %v; want %+v", tt.url, got, err, tt.want)
		}
	}
}
