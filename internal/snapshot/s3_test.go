package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	awsprovider "github.com/etcd-appliance/etcd-appliance/internal/provider/aws"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// The moto-backed tests need moto_server: see testcluster.MotoForTest.

const motoRegion = "us-east-1"

func startMoto(t testing.TB) *testcluster.Moto {
	t.Helper()
	m := testcluster.MotoForTest(t, "the S3 store tests")
	return m
}

// rawS3 is the test's own S3 client, to make buckets and damage objects
// behind the store's back.
func rawS3(endpoint string) *s3.Client {
	return s3.New(s3.Options{
		Region:       motoRegion,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: sdkaws.String(endpoint),
		UsePathStyle: true,

		DisableLogOutputChecksumValidationSkipped: true,
	})
}

func createBucket(t testing.TB, client *s3.Client, bucket string) {
	t.Helper()
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatalf("creating bucket %s: %v", bucket, err)
	}
}

// requests is the value of etcd_appliance_aws_requests_total{api, code}.
func requests(t testing.TB, reg *prometheus.Registry, api, code string) int {
	t.Helper()
	return int(testcluster.AWSRequests(t, reg, api, code))
}

// openS3Stores opens stores in one bucket of moto, each under a prefix of
// its own.
func openS3Stores(moto *testcluster.Moto, bucket string) openStore {
	var n atomic.Int64
	return func(t *testing.T, pageSize int) storeUnderTest {
		t.Helper()
		prefix := fmt.Sprintf("snapshots/%d", n.Add(1))
		reg := prometheus.NewRegistry()
		s, err := Open(context.Background(), "s3://"+bucket+"/"+prefix, Options{
			Region: motoRegion, Endpoint: moto.URL, Registerer: reg, ListPageSize: pageSize,
		})
		if err != nil {
			t.Fatal(err)
		}
		raw := rawS3(moto.URL)
		ctx := context.Background()
		objectKey := func(name string) *string { return sdkaws.String(prefix + "/" + name) }
		return storeUnderTest{
			Store: s,
			write: func(name string, b []byte) {
				if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: objectKey(name), Body: bytes.NewReader(b)}); err != nil {
					t.Fatal(err)
				}
			},
			read: func(name string) []byte {
				out, err := raw.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: objectKey(name)})
				if err != nil {
					t.Fatal(err)
				}
				defer out.Body.Close()
				b, err := io.ReadAll(out.Body)
				if err != nil {
					t.Fatal(err)
				}
				return b
			},
			remove: func(name string) {
				if _, err := raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: objectKey(name)}); err != nil {
					t.Fatal(err)
				}
			},
			listRequests: func() int { return requests(t, reg, "ListObjectsV2", "ok") },
		}
	}
}

func TestS3Store(t *testing.T) {
	moto := startMoto(t)
	testcluster.IsolateAWSEnv(t)
	const bucket = "etcd-snapshots"
	createBucket(t, rawS3(moto.URL), bucket)
	open := openS3Stores(moto, bucket)

	t.Run("contract", func(t *testing.T) { testStoreContract(t, open) })

	t.Run("a store at the bucket's root", func(t *testing.T) {
		createBucket(t, rawS3(moto.URL), "root-store")
		s, err := Open(context.Background(), "s3://root-store", Options{Region: motoRegion, Endpoint: moto.URL})
		if err != nil {
			t.Fatal(err)
		}
		m := put(t, s, meta("c", 0), payload(100, 1))
		if _, err := rawS3(moto.URL).HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: sdkaws.String("root-store"), Key: &m.Key}); err != nil {
			t.Errorf("object %s not at the bucket's root: %v", m.Key, err)
		}
		if got := keys(list(t, s, "c")); !slices.Equal(got, []string{m.Key}) {
			t.Errorf("List = %v", got)
		}
	})

	t.Run("a listing reads each sidecar once", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		s, err := Open(context.Background(), "s3://"+bucket+"/cached", Options{Region: motoRegion, Endpoint: moto.URL, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			put(t, s, meta("c", i), payload(100, uint64(i)))
		}
		list(t, s, "c")
		gets := requests(t, reg, "GetObject", "ok")
		snaps := list(t, s, "c")
		if n := requests(t, reg, "GetObject", "ok") - gets; n != 0 || len(snaps) != 5 {
			t.Errorf("a second List of 5 unchanged snapshots made %d GetObject calls, want 0", n)
		}
		verified := snaps[3]
		verified.Verified = true
		if err := s.SetMeta(context.Background(), verified); err != nil {
			t.Fatal(err)
		}
		gets = requests(t, reg, "GetObject", "ok")
		if snaps := list(t, s, "c"); !snaps[3].Verified {
			t.Errorf("List after SetMeta shows %+v, want it verified", snaps[3])
		}
		if n := requests(t, reg, "GetObject", "ok") - gets; n != 1 {
			t.Errorf("List after SetMeta made %d GetObject calls, want 1 (the changed sidecar)", n)
		}
	})

	t.Run("a missing bucket is an error, not an empty store", func(t *testing.T) {
		s, err := Open(context.Background(), "s3://no-such-bucket/x", Options{Region: motoRegion, Endpoint: moto.URL})
		if err != nil {
			t.Fatal(err)
		}
		if snaps, err := s.List(context.Background(), "c"); err == nil {
			t.Errorf("List = %v, nil; want an error", keys(snaps))
		}
		if _, _, err := s.Get(context.Background(), Key("c", contractStart, 1)); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Get from a missing bucket: %v; want an error that is not ErrNotFound", err)
		}
	})
}

// TestS3UnreachableIsAnErrorNotEmpty: recovery must never take a store it
// cannot reach for an empty one.
func TestS3UnreachableIsAnErrorNotEmpty(t *testing.T) {
	testcluster.IsolateAWSEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	reg := prometheus.NewRegistry()
	s, err := Open(context.Background(), "s3://bucket/x", Options{Region: motoRegion, Endpoint: closed, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := s.List(context.Background(), "c")
	if err == nil || snaps != nil {
		t.Fatalf("List of an unreachable store = %v, %v; want an error", snaps, err)
	}
	t.Logf("List: %v", err)
	if n := requests(t, reg, "ListObjectsV2", "network"); n < 2 {
		t.Errorf("%d network failures counted, want the call retried", n)
	}
	if _, _, err := s.Get(context.Background(), Key("c", contractStart, 1)); err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
		t.Errorf("Get from an unreachable store: %v; want an error that is neither ErrNotFound nor ErrCorrupt", err)
	}
}

// TestS3DeniedIsAnErrorNotEmpty: a store the instance may not read (a
// policy without the bucket) is not an empty store either.
func TestS3DeniedIsAnErrorNotEmpty(t *testing.T) {
	testcluster.IsolateAWSEnv(t)
	denied := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>test</RequestId></Error>`)
	}))
	defer denied.Close()
	reg := prometheus.NewRegistry()
	s, err := Open(context.Background(), "s3://bucket/x", Options{Region: motoRegion, Endpoint: denied.URL, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if snaps, err := s.List(context.Background(), "c"); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Errorf("List of a denied store = %v, %v; want AccessDenied", snaps, err)
	}
	if n := requests(t, reg, "ListObjectsV2", "AccessDenied"); n != 1 {
		t.Errorf("ListObjectsV2 AccessDenied counted %d times, want 1 (not retried)", n)
	}
	if _, _, err := s.Get(context.Background(), Key("c", contractStart, 1)); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Get from a denied store: %v; want an error that is not ErrNotFound", err)
	}
}

// s3Actions is the IAM action that authorizes each S3 API call, from AWS's
// Service Authorization Reference ("Actions defined by Amazon S3") and the
// S3 user guide's mapping of API operations to policy actions. The
// multipart calls of an upload are all authorized by s3:PutObject;
// AbortMultipartUpload is not (s3:AbortMultipartUpload), nor are
// ListParts and ListMultipartUploads, which is why the store uses none of
// them.
var s3Actions = map[string]string{
	"ListObjectsV2":           "s3:ListBucket",
	"HeadObject":              "s3:GetObject",
	"GetObject":               "s3:GetObject",
	"PutObject":               "s3:PutObject",
	"CreateMultipartUpload":   "s3:PutObject",
	"UploadPart":              "s3:PutObject",
	"CompleteMultipartUpload": "s3:PutObject",
	"DeleteObject":            "s3:DeleteObject",
	"AbortMultipartUpload":    "s3:AbortMultipartUpload",
	"ListParts":               "s3:ListMultipartUploadParts",
	"ListMultipartUploads":    "s3:ListBucketMultipartUploads",
}

var _ s3API = (*s3.Client)(nil)

func TestS3CallsAreWhatThePolicyGrants(t *testing.T) {
	api := reflect.TypeFor[s3API]()
	var calls []string
	for i := range api.NumMethod() {
		name := api.Method(i).Name
		action, ok := s3Actions[name]
		if !ok {
			t.Fatalf("the store calls S3 %s: add its IAM action to s3Actions", name)
		}
		calls = append(calls, action)
	}
	slices.Sort(calls)
	calls = slices.Compact(calls)

	var granted []string
	for _, st := range awsprovider.Policy(awsprovider.PolicyFeatures{StoreBucket: "snaps"}).Statement {
		for _, a := range st.Action {
			if strings.HasPrefix(a, "s3:") && st.Effect == "Allow" {
				granted = append(granted, a)
			}
		}
	}
	slices.Sort(granted)
	if !slices.Equal(calls, granted) {
		t.Errorf("the store's S3 calls need %v\nthe policy grants %v", calls, granted)
	}
}

// TestS3StalledDownloadFails: a download is bounded by its progress. A body
// that stops arriving fails the read once it stalled for the store's stall
// timeout, with an error that says so and is no ErrCorrupt.
func TestS3StalledDownloadFails(t *testing.T) {
	testcluster.IsolateAWSEnv(t)
	content := payload(1<<20, 1)
	m := meta("c", 0)
	m.Key, m.Size, m.SHA256 = Key(m.Cluster, m.Time, m.Revision), int64(len(content)), sha(content)
	sidecar, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	stalling := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bucket/x/" + SidecarKey(m.Key):
			w.Write(sidecar)
		case "/bucket/x/" + m.Key:
			w.Header().Set("Content-Length", strconv.Itoa(len(content)))
			w.Write(content[:len(content)/2])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}))
	defer stalling.Close()
	s, err := Open(context.Background(), "s3://bucket/x", Options{Region: motoRegion, Endpoint: stalling.URL})
	if err != nil {
		t.Fatal(err)
	}
	s.(*s3Store).stallTimeout = 200 * time.Millisecond
	b, _, err := get(s, m.Key)
	if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "no bytes of "+m.Key) {
		t.Fatalf("a stalled download read %d bytes, %v; want the stall named", len(b), err)
	}
	if len(b) > len(content)/2 {
		t.Errorf("read %d bytes, more than the %d sent", len(b), len(content)/2)
	}
}
