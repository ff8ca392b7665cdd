package robustness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Options shapes a recorded run. The zero value is a run of 3 s with the
// defaults below.
type Options struct {
	Clients  int           // concurrent workers; 0: 5
	Keys     int           // keys under Prefix; 0: 8
	Prefix   string        // the key space; "": a fresh /robustness/<time>/
	Duration time.Duration // how long workers issue requests; 0: 3 s
	// Stop, when set, ends the run when it is closed, or at the latest
	// after Duration: a fault test stops its clients once the cluster
	// healed.
	Stop      <-chan struct{}
	OpTimeout time.Duration // each request's deadline; 0: 1.5 s
	// Watchers follow the prefix from the start; 0: one, negative: none.
	Watchers int
	// CatchUp bounds the wait, after the last request, for watchers to
	// reach the last revision; 0: 2×OpTimeout.
	CatchUp time.Duration
	Seed    uint64 // the workers' random choices; 0: from the clock
	Logger  *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Clients == 0 {
		o.Clients = 5
	}
	if o.Keys == 0 {
		o.Keys = 8
	}
	if o.Prefix == "" {
		o.Prefix = "/robustness/" + strconv.FormatInt(time.Now().UnixNano(), 36) + "/"
	}
	if o.Duration == 0 {
		o.Duration = 3 * time.Second
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = 1500 * time.Millisecond
	}
	if o.Watchers == 0 {
		o.Watchers = 1
	}
	if o.CatchUp == 0 {
		o.CatchUp = 2 * o.OpTimeout
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// settleTimeout is the deadline of the reads before and after the load:
// OpTimeout, but at least a second, so that a run of short deadlines still
// gets its start revision and its final reads.
func (o Options) settleTimeout() time.Duration { return max(o.OpTimeout, time.Second) }

// Record runs opts.Clients workers and opts.Watchers watchers against etcd
// for opts.Duration and returns what they saw. Worker and watcher i use
// clients[i % len(clients)]: pass one client with every endpoint, or one
// client per member to pin workers to members (a worker pinned to a
// partitioned member must still never read stale data). After the workers
// a final read of every key, through whichever client answers, lets the
// check see acknowledged writes that were lost.
//
// Record fails only when no client can tell the store's revision at the
// start; errors during the run are outcomes in the history. Cancelling ctx
// ends the run early; requests it cuts short are unknown.
func Record(ctx context.Context, clients []*clientv3.Client, opts Options) (*History, error) {
	if len(clients) == 0 {
		return nil, errors.New("recording a history: no etcd client")
	}
	opts = opts.withDefaults()
	logger := opts.Logger.With("component", "robustness")
	began := time.Now()
	clock := func() int64 { return int64(time.Since(began)) }

	h := &History{Prefix: opts.Prefix}
	for i := range opts.Keys {
		h.Keys = append(h.Keys, opts.Prefix+"k"+strconv.Itoa(i))
	}
	start, err := startRevision(ctx, clients, opts)
	if err != nil {
		return nil, err
	}
	h.StartRev = start
	logger.Info("recording a history", "prefix", opts.Prefix, "clients", opts.Clients, "keys", opts.Keys,
		"watchers", max(opts.Watchers, 0), "duration", opts.Duration, "start_rev", start, "seed", opts.Seed)

	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	var watchers []*watcher
	var watching sync.WaitGroup
	for i := range max(opts.Watchers, 0) {
		w := &watcher{id: i, client: clients[i%len(clients)], prefix: opts.Prefix, clock: clock, next: start + 1}
		watchers = append(watchers, w)
		watching.Go(func() { w.run(watchCtx) })
	}

	deadline := time.Now().Add(opts.Duration)
	logs := make([][]Operation, opts.Clients)
	var working sync.WaitGroup
	for i := range opts.Clients {
		wk := &worker{
			id:        i,
			kv:        clients[i%len(clients)],
			keys:      h.Keys,
			opTimeout: opts.OpTimeout,
			clock:     clock,
			rng:       rand.New(rand.NewPCG(opts.Seed, uint64(i))),
			lastSeen:  map[string]string{},
		}
		working.Go(func() { logs[i] = wk.run(ctx, deadline, opts.Stop) })
	}
	working.Wait()
	for _, l := range logs {
		h.Operations = append(h.Operations, l...)
	}
	h.Operations = append(h.Operations, finalReads(ctx, clients, h.Keys, opts.Clients, opts.settleTimeout(), clock)...)

	var last int64
	for _, op := range h.Operations {
		if op.Resp.Outcome == OK {
			last = max(last, op.Resp.Revision)
		}
	}
	catchUp(ctx, watchers, last, opts.CatchUp)
	stopWatching()
	watching.Wait()
	for _, w := range watchers {
		h.Watches = append(h.Watches, WatchLog{Watcher: w.id, Prefix: w.prefix, Responses: w.log})
	}
	logger.Info("recorded a history", "operations", len(h.Operations), "acked_writes", len(h.AckedWrites()),
		"last_rev", last, "took", time.Since(began).Round(time.Millisecond))
	return h, nil
}

// startRevision is the store's revision before the run, from the first
// client that answers: the watchers start after it.
func startRevision(ctx context.Context, clients []*clientv3.Client, opts Options) (int64, error) {
	var errs []error
	for _, c := range clients {
		rctx, cancel := context.WithTimeout(ctx, opts.settleTimeout())
		resp, err := c.Get(rctx, opts.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err == nil {
			return resp.Header.Revision, nil
		}
		errs = append(errs, fmt.Errorf("%v: %w", c.Endpoints(), err))
	}
	return 0, fmt.Errorf("recording a history: reading the start revision: %w", errors.Join(errs...))
}

// worker is one client issuing one request at a time.
type worker struct {
	id        int
	kv        clientv3.KV
	keys      []string
	opTimeout time.Duration
	clock     func() int64
	rng       *rand.Rand
	seq       int
	// lastSeen is the value this worker last read or wrote per key: what
	// its compare-and-swaps expect.
	lastSeen map[string]string
}

func (w *worker) run(ctx context.Context, deadline time.Time, stop <-chan struct{}) []Operation {
	var log []Operation
	for ctx.Err() == nil && time.Now().Before(deadline) && !closed(stop) {
		op := w.do(ctx, w.next())
		log = append(log, op)
		w.learn(op)
	}
	return log
}

// next picks a request: reads 40%, puts 30%, compare-and-swaps 20% (a put
// when there is nothing to compare with), deletes 10%.
func (w *worker) next() Request {
	key := w.keys[w.rng.IntN(len(w.keys))]
	n := w.rng.IntN(100)
	switch {
	case n < 40:
		return Request{Kind: OpGet, Key: key}
	case n < 90:
		w.seq++
		value := "c" + strconv.Itoa(w.id) + "-" + strconv.Itoa(w.seq)
		if expect, ok := w.lastSeen[key]; ok && n >= 70 {
			return Request{Kind: OpCAS, Key: key, Expect: expect, Value: value}
		}
		return Request{Kind: OpPut, Key: key, Value: value}
	default:
		return Request{Kind: OpDelete, Key: key}
	}
}

func (w *worker) learn(op Operation) {
	if op.Resp.Outcome != OK {
		return
	}
	switch {
	case op.Req.Kind == OpGet && op.Resp.Found:
		w.lastSeen[op.Req.Key] = op.Resp.Value
	case op.Req.Kind == OpGet, op.Req.Kind == OpDelete:
		delete(w.lastSeen, op.Req.Key)
	case op.acked():
		w.lastSeen[op.Req.Key] = op.Req.Value
	}
}

func (w *worker) do(ctx context.Context, req Request) Operation {
	call := w.clock()
	octx, cancel := context.WithTimeout(ctx, w.opTimeout)
	resp := execute(octx, w.kv, req)
	cancel()
	return Operation{Client: w.id, Call: call, Return: w.clock(), Req: req, Resp: resp}
}

// execute sends req and turns etcd's answer or error into a Response.
func execute(ctx context.Context, kv clientv3.KV, req Request) Response {
	var resp Response
	var err error
	switch req.Kind {
	case OpGet:
		var r *clientv3.GetResponse
		if r, err = kv.Get(ctx, req.Key); err == nil {
			resp.Revision = r.Header.Revision
			if len(r.Kvs) > 0 {
				resp.Found, resp.Value, resp.ModRev = true, string(r.Kvs[0].Value), r.Kvs[0].ModRevision
			}
		}
	case OpPut:
		var r *clientv3.PutResponse
		if r, err = kv.Put(ctx, req.Key, req.Value); err == nil {
			resp.Revision = r.Header.Revision
		}
	case OpCAS:
		var r *clientv3.TxnResponse
		r, err = kv.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(req.Key), "=", req.Expect)).
			Then(clientv3.OpPut(req.Key, req.Value)).
			Commit()
		if err == nil {
			resp.Revision, resp.Found = r.Header.Revision, r.Succeeded
		}
	case OpDelete:
		var r *clientv3.DeleteResponse
		if r, err = kv.Delete(ctx, req.Key); err == nil {
			resp.Revision, resp.Found = r.Header.Revision, r.Deleted > 0
		}
	default:
		err = fmt.Errorf("unknown request kind %q", req.Kind)
	}
	resp.Outcome = outcomeOf(err)
	if err != nil {
		resp.Err = err.Error()
	}
	return resp
}

// outcomeOf classifies a request's error. Only a request etcd rejects as
// malformed (InvalidArgument: too large, an empty key, a repeated key in a
// txn) is known not to have been applied; any other error may come after
// etcd committed the request.
func outcomeOf(err error) Outcome {
	switch {
	case err == nil:
		return OK
	case status.Code(err) == codes.InvalidArgument:
		return Failed
	}
	return Unknown
}

// finalReads reads every key, through the first client that answers, as
// client id: they pin down the state the run left behind.
func finalReads(ctx context.Context, clients []*clientv3.Client, keys []string, id int, timeout time.Duration, clock func() int64) []Operation {
	var ops []Operation
	for _, key := range keys {
		for _, c := range clients {
			w := &worker{id: id, kv: c, opTimeout: timeout, clock: clock}
			op := w.do(ctx, Request{Kind: OpGet, Key: key})
			ops = append(ops, op)
			if op.Resp.Outcome == OK || ctx.Err() != nil {
				break
			}
		}
	}
	return ops
}

// watcher follows the prefix through one client, restarting its watch where
// it left off when the watch breaks.
type watcher struct {
	id      int
	client  *clientv3.Client
	prefix  string
	clock   func() int64
	next    int64        // the revision to restart from
	reached atomic.Int64 // every event up to it has arrived
	log     []WatchResponse
}

// retryPause spaces watch restarts, so a member without a leader is not
// asked again at once.
const retryPause = 100 * time.Millisecond

func (w *watcher) run(ctx context.Context) {
	for ctx.Err() == nil && w.client.Ctx().Err() == nil {
		w.watch(ctx)
		t := time.NewTimer(retryPause)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// watch runs one watch from w.next until it ends. It requires a leader, so
// that a member cut off from the cluster cancels it rather than leaving it
// silent.
func (w *watcher) watch(ctx context.Context) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	w.log = append(w.log, WatchResponse{Time: w.clock(), Start: w.next})
	ch := w.client.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(w.next), clientv3.WithProgressNotify())
	for resp := range ch {
		rec := WatchResponse{Time: w.clock(), Revision: resp.Header.Revision}
		switch {
		case resp.CompactRevision != 0:
			rec.CompactRev = resp.CompactRevision
			w.next = max(w.next, resp.CompactRevision)
		case resp.Err() != nil:
			rec.Err = resp.Err().Error()
		case resp.IsProgressNotify():
			rec.Progress = true
			w.next = max(w.next, resp.Header.Revision+1)
		}
		for _, ev := range resp.Events {
			we := WatchEvent{Type: "put", Key: string(ev.Kv.Key), Value: string(ev.Kv.Value), ModRev: ev.Kv.ModRevision}
			if ev.Type == clientv3.EventTypeDelete {
				we.Type, we.Value = "delete", ""
			}
			rec.Events = append(rec.Events, we)
			w.next = max(w.next, ev.Kv.ModRevision+1)
		}
		w.log = append(w.log, rec)
		w.reached.Store(w.next - 1)
	}
}

// catchUp asks for progress notifications until every watcher has reached
// revision last, or until the wait runs out: a watcher cut off from the
// cluster never will, and its log then covers less.
func catchUp(ctx context.Context, watchers []*watcher, last int64, wait time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		behind := false
		for _, w := range watchers {
			if w.reached.Load() < last {
				behind = true
				// The progress request goes to the stream of the watch's
				// context, which carries the require-leader metadata.
				_ = w.client.RequestProgress(clientv3.WithRequireLeader(ctx))
			}
		}
		if !behind {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// closed reports whether c is closed; a nil c never is.
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
