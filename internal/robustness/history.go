package robustness

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"slices"
)

// OpKind is what an operation asked of etcd.
type OpKind string

const (
	OpGet    OpKind = "get"    // a linearizable Range of one key
	OpPut    OpKind = "put"    // a Put of a value unique in the run
	OpCAS    OpKind = "cas"    // a Txn: if the value is Expect then put Value
	OpDelete OpKind = "delete" // a DeleteRange of one key
)

// Outcome is what a client knows of an operation's effect.
type Outcome string

const (
	// OK: etcd answered; the response says what happened.
	OK Outcome = "ok"
	// Failed: etcd refused the request before applying it; it had no effect.
	Failed Outcome = "failed"
	// Unknown: no answer (a timeout, a broken connection, a lost leader);
	// a write may or may not have taken effect.
	Unknown Outcome = "unknown"
)

// Request is an operation's input.
type Request struct {
	Kind   OpKind `json:"kind"`
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`  // put and cas: the value written
	Expect string `json:"expect,omitempty"` // cas: the value compared with
}

// Response is an operation's output. Found is, by kind, whether a get found
// the key, whether a cas's comparison held, and whether a delete deleted it.
type Response struct {
	Outcome  Outcome `json:"outcome"`
	Err      string  `json:"err,omitempty"`
	Found    bool    `json:"found,omitempty"`
	Value    string  `json:"value,omitempty"`    // get: the value read
	ModRev   int64   `json:"mod_rev,omitempty"`  // get: the key's mod revision
	Revision int64   `json:"revision,omitempty"` // the response header's revision
}

// Operation is one request of one client with its times: nanoseconds since
// the start of the run, on the monotonic clock. Return is when the client
// got the answer or gave up.
type Operation struct {
	Client int      `json:"client"`
	Call   int64    `json:"call"`
	Return int64    `json:"return"`
	Req    Request  `json:"req"`
	Resp   Response `json:"resp"`
}

func (op Operation) isWrite() bool { return op.Req.Kind != OpGet }

// acked reports whether op is a write etcd acknowledged as applied.
func (op Operation) acked() bool {
	if op.Resp.Outcome != OK {
		return false
	}
	switch op.Req.Kind {
	case OpPut:
		return true
	case OpCAS, OpDelete:
		return op.Resp.Found
	}
	return false
}

func (op Operation) String() string {
	return fmt.Sprintf("client %d %s", op.Client, op.describe())
}

// Write is an acknowledged write: etcd answered that it applied Kind at
// Revision. Value is empty for a delete.
type Write struct {
	Kind     OpKind `json:"kind"`
	Key      string `json:"key"`
	Value    string `json:"value,omitempty"`
	Revision int64  `json:"revision"`
}

// WatchEvent is one event a watcher received.
type WatchEvent struct {
	Type   string `json:"type"` // "put" or "delete"
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	ModRev int64  `json:"mod_rev"` // the revision of the change
}

// WatchResponse is one response a watcher received, or the end of a watch.
// Start marks a (re)started watch from Start; CompactRev a watch cancelled
// because its start revision was compacted; Progress a progress
// notification, after which every event up to Revision has arrived.
type WatchResponse struct {
	Time       int64        `json:"time"`
	Start      int64        `json:"start,omitempty"`
	Revision   int64        `json:"revision,omitempty"`
	Events     []WatchEvent `json:"events,omitempty"`
	CompactRev int64        `json:"compact_rev,omitempty"`
	Progress   bool         `json:"progress,omitempty"`
	Err        string       `json:"err,omitempty"`
}

// WatchLog is what one watcher of the prefix received, in order.
type WatchLog struct {
	Watcher   int             `json:"watcher"`
	Prefix    string          `json:"prefix"`
	Responses []WatchResponse `json:"responses"`
}

// History is a recorded run: it is what Check checks and what history.json
// holds.
type History struct {
	Prefix     string      `json:"prefix"`
	Keys       []string    `json:"keys"`
	StartRev   int64       `json:"start_rev"` // the store's revision before the first operation
	Operations []Operation `json:"operations"`
	Watches    []WatchLog  `json:"watches,omitempty"`
}

// AckedWrites are the writes etcd acknowledged, by revision: what a later
// check of the cluster's data must find, or find overwritten.
func (h *History) AckedWrites() []Write {
	var ws []Write
	for _, op := range h.Operations {
		if !op.acked() {
			continue
		}
		w := Write{Kind: OpPut, Key: op.Req.Key, Value: op.Req.Value, Revision: op.Resp.Revision}
		if op.Req.Kind == OpDelete {
			w = Write{Kind: OpDelete, Key: op.Req.Key, Revision: op.Resp.Revision}
		}
		ws = append(ws, w)
	}
	slices.SortFunc(ws, func(a, b Write) int { return cmp.Compare(a.Revision, b.Revision) })
	return ws
}

// Save writes h as JSON to path.
func (h *History) Save(path string) error {
	b, err := json.MarshalIndent(h, "", " ")
	if err != nil {
		return fmt.Errorf("encoding history: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing history: %w", err)
	}
	return nil
}

// LoadHistory reads a history Save wrote.
func LoadHistory(path string) (*History, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading history: %w", err)
	}
	var h History
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("decoding history %s: %w", path, err)
	}
	return &h, nil
}
