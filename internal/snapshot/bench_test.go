package snapshot

import (
	"context"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// BenchmarkStorePutGet100MB streams a 100 MB snapshot into each store and
// back out, verified, and reports the peak of the heap meanwhile: a store
// that held the snapshot in memory would show 100 MB there.
//
//	go test -run '^$' -bench StorePutGet100MB -benchtime 3x ./internal/snapshot/
func BenchmarkStorePutGet100MB(b *testing.B) {
	b.Run("file", func(b *testing.B) {
		s, err := Open(context.Background(), "file://"+filepath.Join(b.TempDir(), "snapshots"), Options{})
		if err != nil {
			b.Fatal(err)
		}
		benchmarkPutGet(b, s)
	})
	b.Run("s3", func(b *testing.B) {
		moto := startMoto(b)
		testcluster.IsolateAWSEnv(b)
		createBucket(b, rawS3(moto.URL), "bench")
		s, err := Open(context.Background(), "s3://bench/snapshots", Options{Region: motoRegion, Endpoint: moto.URL})
		if err != nil {
			b.Fatal(err)
		}
		benchmarkPutGet(b, s)
	})
}

func benchmarkPutGet(b *testing.B, s Store) {
	const size = 100 << 20
	ctx := context.Background()
	b.SetBytes(size)
	b.ReportAllocs()
	peak := sampleHeap()
	rev := int64(0)
	for b.Loop() {
		rev++
		snapshot := io.LimitReader(rand.NewChaCha8([32]byte{byte(rev)}), size)
		m, err := s.Put(ctx, Meta{Cluster: "bench", Time: contractStart.Add(time.Duration(rev) * time.Second), Revision: rev}, snapshot)
		if err != nil {
			b.Fatal(err)
		}
		rc, _, err := s.Get(ctx, m.Key)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, rc); err != nil || n != size {
			b.Fatalf("read back %d bytes, %v", n, err)
		}
		rc.Close()
		if err := s.Delete(ctx, m.Key); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(peak())/(1<<20), "peak-heap-MB")
}

// sampleHeap watches the heap's size (live and not yet collected objects)
// until the returned function is called, which returns its peak.
func sampleHeap() (stop func() uint64) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}
