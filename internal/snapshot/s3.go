package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/etcd-appliance/etcd-appliance/internal/awsconf"
)

const (
	// callTimeout bounds a small S3 call (a listing page, a sidecar), its
	// retries included, as the provider bounds its calls.
	callTimeout = awsconf.CallTimeout
	// partSize is the part of a multipart upload, and the most of a
	// snapshot that Put holds in memory. 8 MiB parts reach S3's limit of
	// 10000 parts at 78 GiB, far above etcd's largest database (8 GiB).
	partSize = 8 << 20
	// maxParts is S3's limit of parts per upload.
	maxParts = 10000
	// partTimeout bounds the upload of one part (retries included), so an
	// upload is bounded by its progress rather than by its size: a part
	// that does not arrive in time means less than ~70 KB/s.
	partTimeout = 2 * time.Minute
	// stallTimeout bounds one read of a snapshot's body from S3: a
	// download is bounded by its progress, as long as it takes while
	// bytes keep coming.
	stallTimeout = 30 * time.Second
)

// s3API is the part of the S3 client the store uses. Each of these calls
// is one of the four actions the policy's snapshot statement grants (see
// internal/provider/aws Policy and TestS3CallsAreWhatThePolicyGrants):
// nothing else, in particular no AbortMultipartUpload (its own IAM action,
// s3:AbortMultipartUpload).
type s3API interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, optFns ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// s3Store keeps snapshots in a bucket, under <prefix>/<key> and the
// sidecar under <prefix>/<key>.json. S3 makes a put object visible whole
// or not at all, so no temporary names are needed; the sidecar, put last,
// still marks a complete upload.
type s3Store struct {
	url    string
	bucket string
	prefix string // "" or "a/b", without slashes around
	client s3API
	log    *slog.Logger

	pageSize     int32
	partSize     int
	stallTimeout time.Duration

	// sidecars caches the Meta of each listed snapshot with the ETag its
	// sidecar had when read, so that a List reads only new or changed
	// sidecars: one listing request per List in the steady state, not one
	// request per snapshot (SPEC §7 counts AWS calls).
	mu       sync.Mutex
	sidecars map[string]cachedSidecar
}

type cachedSidecar struct {
	etag string
	meta Meta
}

var _ Store = (*s3Store)(nil)

func newS3Store(ctx context.Context, url, bucket, prefix string, opts Options, log *slog.Logger) (*s3Store, error) {
	m, err := awsconf.NewMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("--store %q: %w", url, err)
	}
	cfg, err := awsconf.Load(ctx, awsconf.Options{
		Region:   opts.Region,
		Endpoint: opts.Endpoint,
		IMDS:     awsconf.NewIMDS(opts.IMDSEndpoint),
		Metrics:  m,
	})
	if err != nil {
		return nil, fmt.Errorf("--store %q: %w", url, err)
	}
	// Emulators and S3-compatible servers behind a custom endpoint do not
	// resolve <bucket>.<endpoint> host names.
	pathStyle := opts.PathStyle || cfg.BaseEndpoint != nil
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = pathStyle
		// Objects without an S3 checksum (sidecars put by older tools,
		// whole multipart objects) are verified by their sidecar's
		// SHA-256 instead; no log line for each.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	if opts.ListPageSize > 1000 {
		opts.ListPageSize = 1000 // S3's largest page
	}
	return &s3Store{
		url: url, bucket: bucket, prefix: prefix, client: client, log: log,
		pageSize: int32(opts.ListPageSize), partSize: partSize, stallTimeout: stallTimeout,
		sidecars: map[string]cachedSidecar{},
	}, nil
}

func (s *s3Store) URL() string { return s.url }

// objectKey is the S3 key of a store-relative key.
func (s *s3Store) objectKey(key string) string {
	if s.prefix == "" {
		return key
	}
	return s.prefix + "/" + key
}

func (s *s3Store) Put(ctx context.Context, m Meta, r io.Reader) (Meta, error) {
	if err := checkNew(m); err != nil {
		return Meta{}, fmt.Errorf("storing snapshot: %w", err)
	}
	m.Key = Key(m.Cluster, m.Time, m.Revision)
	// Replacing a snapshot of the same name: its old sidecar goes first,
	// so the new object is never listed with the old checksum.
	if err := s.deleteObject(ctx, SidecarKey(m.Key)); err != nil {
		return Meta{}, fmt.Errorf("storing snapshot %s in %s: %w", m.Key, s.url, err)
	}
	sum := newSummingReader(ctx, r)
	if err := s.upload(ctx, s.objectKey(m.Key), sum); err != nil {
		return Meta{}, fmt.Errorf("storing snapshot %s in %s: %w", m.Key, s.url, err)
	}
	m.Size, m.SHA256 = sum.size, sum.sum()
	if err := s.putSidecar(ctx, m); err != nil {
		return Meta{}, fmt.Errorf("storing snapshot %s in %s: %w", m.Key, s.url, err)
	}
	return m, nil
}

// upload streams r to the object key, holding one part in memory: a
// single PutObject when r fits in a part, a multipart upload otherwise.
// Each part is a call of its own with its own timeout, so a large upload
// is bounded by progress, not by a deadline for the whole.
//
// A failed multipart upload is not aborted: the policy does not grant
// s3:AbortMultipartUpload, and an instance that dies mid-upload could not
// abort anyway. Its parts are invisible to listings, and the bucket's
// lifecycle rule (AbortIncompleteMultipartUpload) removes them.
func (s *s3Store) upload(ctx context.Context, key string, r io.Reader) error {
	buf := make([]byte, s.partSize)
	n, err := io.ReadFull(r, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return s.putObject(ctx, key, buf[:n], partTimeout)
	}
	if err != nil {
		return fmt.Errorf("reading the snapshot: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	created, err := s.client.CreateMultipartUpload(cctx, &s3.CreateMultipartUploadInput{
		Bucket:            &s.bucket,
		Key:               &key,
		ContentType:       aws.String("application/octet-stream"),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("starting the upload: %w", err)
	}
	abandon := func(err error) error {
		s.log.Warn("snapshot upload failed; its parts stay until the bucket's lifecycle rule aborts incomplete uploads",
			"key", key, "upload_id", aws.ToString(created.UploadId), "err", err)
		return err
	}
	var parts []types.CompletedPart
	for number := int32(1); n > 0; number++ {
		if number > maxParts {
			return abandon(fmt.Errorf("snapshot larger than %d parts of %d bytes", maxParts, s.partSize))
		}
		pctx, cancel := context.WithTimeout(ctx, partTimeout)
		out, err := s.client.UploadPart(pctx, &s3.UploadPartInput{
			Bucket:            &s.bucket,
			Key:               &key,
			UploadId:          created.UploadId,
			PartNumber:        aws.Int32(number),
			Body:              bytes.NewReader(buf[:n]),
			ContentLength:     aws.Int64(int64(n)),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
		})
		cancel()
		if err != nil {
			return abandon(fmt.Errorf("uploading part %d: %w", number, err))
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(number), ChecksumCRC32: out.ChecksumCRC32})
		n, err = io.ReadFull(r, buf)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return abandon(fmt.Errorf("reading the snapshot: %w", err))
		}
	}
	// S3 may take a while to assemble a large object: a part's time.
	cctx, cancel = context.WithTimeout(ctx, partTimeout)
	defer cancel()
	_, err = s.client.CompleteMultipartUpload(cctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &s.bucket,
		Key:             &key,
		UploadId:        created.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return abandon(fmt.Errorf("completing the upload: %w", err))
	}
	return nil
}

func (s *s3Store) putObject(ctx context.Context, key string, body []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	contentType := "application/octet-stream"
	if strings.HasSuffix(key, sidecarSuffix) {
		contentType = "application/json"
	}
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           &key,
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   &contentType,
	})
	return err
}

func (s *s3Store) putSidecar(ctx context.Context, m Meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := s.putObject(ctx, s.objectKey(SidecarKey(m.Key)), b, callTimeout); err != nil {
		return fmt.Errorf("writing its sidecar: %w", err)
	}
	return nil
}

func (s *s3Store) List(ctx context.Context, cluster string) ([]Meta, error) {
	if err := validCluster(cluster); err != nil {
		return nil, fmt.Errorf("listing snapshots: %w", err)
	}
	in := &s3.ListObjectsV2Input{
		Bucket: &s.bucket,
		Prefix: aws.String(s.objectKey(cluster + "/")),
		// Not into subdirectories: nothing of ours is there.
		Delimiter: aws.String("/"),
	}
	if s.pageSize > 0 {
		in.MaxKeys = aws.Int32(s.pageSize)
	}
	names := listing{}
	etags := map[string]string{} // of the sidecars, by their object's key
	pages := s3.NewListObjectsV2Paginator(s.client, in)
	for pages.HasMorePages() {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		page, err := pages.NextPage(cctx)
		cancel()
		if err != nil {
			// A bucket that is missing, denied or unreachable is not an
			// empty store: recovery must not take it for one.
			return nil, fmt.Errorf("listing snapshots of %s in %s: %w", cluster, s.url, err)
		}
		for _, o := range page.Contents {
			name := strings.TrimPrefix(aws.ToString(o.Key), s.objectKey(""))
			names.add(name)
			if key, ok := strings.CutSuffix(name, sidecarSuffix); ok {
				etags[key] = aws.ToString(o.ETag)
			}
		}
	}
	var out []Meta
	seen := map[string]bool{}
	for _, key := range names.complete(s.log) {
		seen[key] = true
		s.mu.Lock()
		cached, ok := s.sidecars[key]
		s.mu.Unlock()
		if ok && cached.etag == etags[key] && etags[key] != "" {
			out = append(out, cached.meta)
			continue
		}
		m, err := s.readSidecar(ctx, key)
		switch {
		case errors.Is(err, ErrNotFound):
			s.log.Debug("snapshot deleted while listing", "key", key)
		case errors.Is(err, ErrCorrupt):
			s.log.Warn("snapshot not listed: its sidecar is corrupt", "key", key, "err", err)
		case err != nil:
			return nil, fmt.Errorf("listing snapshots of %s in %s: %w", cluster, s.url, err)
		default:
			s.mu.Lock()
			s.sidecars[key] = cachedSidecar{etag: etags[key], meta: m}
			s.mu.Unlock()
			out = append(out, m)
		}
	}
	s.mu.Lock()
	for key := range s.sidecars {
		if strings.HasPrefix(key, cluster+"/") && !seen[key] {
			delete(s.sidecars, key)
		}
	}
	s.mu.Unlock()
	sortNewestFirst(out)
	return out, nil
}

// readSidecar reads the Meta of key: ErrNotFound when there is no sidecar,
// ErrCorrupt when it does not parse or describes another snapshot.
func (s *s3Store) readSidecar(ctx context.Context, key string) (Meta, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.objectKey(SidecarKey(key)))})
	if isNoSuchKey(err) {
		return Meta{}, fmt.Errorf("%w: %s has no sidecar", ErrNotFound, key)
	}
	if err != nil {
		return Meta{}, fmt.Errorf("reading the sidecar of %s: %w", key, err)
	}
	defer out.Body.Close()
	// A sidecar is a few hundred bytes; anything much larger is not one.
	b, err := io.ReadAll(io.LimitReader(out.Body, 1<<20))
	if err != nil {
		return Meta{}, fmt.Errorf("reading the sidecar of %s: %w", key, err)
	}
	return parseSidecar(key, b)
}

func (s *s3Store) Get(ctx context.Context, key string) (io.ReadCloser, Meta, error) {
	if _, err := ParseKey(key); err != nil {
		return nil, Meta{}, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	m, err := s.readSidecar(ctx, key)
	if err != nil {
		return nil, Meta{}, err
	}
	// The body is read under this call's context, as long as the caller
	// reads: callTimeout bounds the wait for the answer, stallTimeout each
	// read of the body.
	bodyCtx, cancel := context.WithCancelCause(ctx)
	answer := time.AfterFunc(callTimeout, func() { cancel(fmt.Errorf("no answer from S3 within %s", callTimeout)) })
	out, err := s.client.GetObject(bodyCtx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.objectKey(key))})
	if !answer.Stop() && err == nil {
		// The answer came as the timer fired: its body is cut off.
		out.Body.Close()
		err = context.Cause(bodyCtx)
	}
	if err != nil {
		cause := context.Cause(bodyCtx)
		cancel(nil)
		if isNoSuchKey(err) {
			return nil, Meta{}, fmt.Errorf("%w: %s (its sidecar is there, the object is not)", ErrNotFound, key)
		}
		if cause != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("%w: %w", cause, err)
		}
		return nil, Meta{}, fmt.Errorf("getting snapshot %s from %s: %w", key, s.url, err)
	}
	// A size that differs already fails here, before a long read.
	if out.ContentLength != nil && *out.ContentLength != m.Size {
		out.Body.Close()
		cancel(nil)
		return nil, Meta{}, fmt.Errorf("%w: %s has %d bytes, its sidecar says %d", ErrCorrupt, key, *out.ContentLength, m.Size)
	}
	body := &stallGuard{ctx: bodyCtx, body: out.Body, cancel: cancel, timeout: s.stallTimeout}
	body.timer = time.AfterFunc(s.stallTimeout, func() {
		cancel(fmt.Errorf("no bytes of %s from S3 for %s", key, s.stallTimeout))
	})
	body.timer.Stop()
	return newVerifyingReader(body, m), m, nil
}

// stallGuard cancels a download whose body read blocks for its timeout,
// however long the whole download takes; a caller that is slow to read is
// not cut off.
type stallGuard struct {
	ctx     context.Context
	body    io.ReadCloser
	cancel  context.CancelCauseFunc
	timeout time.Duration
	timer   *time.Timer
}

func (g *stallGuard) Read(p []byte) (int, error) {
	g.timer.Reset(g.timeout)
	n, err := g.body.Read(p)
	g.timer.Stop()
	if err != nil && err != io.EOF {
		if cause := context.Cause(g.ctx); cause != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("%w: %w", cause, err)
		}
	}
	return n, err
}

func (g *stallGuard) Close() error {
	g.timer.Stop()
	err := g.body.Close()
	g.cancel(nil)
	return err
}

func (s *s3Store) SetMeta(ctx context.Context, m Meta) error {
	old, err := s.readSidecar(ctx, m.Key)
	if err != nil {
		return fmt.Errorf("updating snapshot %s: %w", m.Key, err)
	}
	if err := checkUpdate(old, m); err != nil {
		return err
	}
	if err := s.putSidecar(ctx, m); err != nil {
		return fmt.Errorf("updating snapshot %s in %s: %w", m.Key, s.url, err)
	}
	return nil
}

// Delete removes a snapshot, sidecar first: a failure in between leaves an
// object without sidecar, which List ignores. S3 deletes a missing key
// without complaint, so deleting a deleted snapshot is no error.
func (s *s3Store) Delete(ctx context.Context, key string) error {
	if _, err := ParseKey(key); err != nil {
		return fmt.Errorf("deleting snapshot: %w", err)
	}
	for _, k := range []string{SidecarKey(key), key} {
		if err := s.deleteObject(ctx, k); err != nil {
			return fmt.Errorf("deleting snapshot %s from %s: %w", key, s.url, err)
		}
	}
	s.mu.Lock()
	delete(s.sidecars, key)
	s.mu.Unlock()
	return nil
}

func (s *s3Store) deleteObject(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.objectKey(key))})
	return err
}

// isNoSuchKey says whether S3 answered that the object does not exist; a
// missing bucket (NoSuchBucket) is not a missing snapshot.
func isNoSuchKey(err error) bool {
	var noKey *types.NoSuchKey
	if errors.As(err, &noKey) {
		return true
	}
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchKey"
}
