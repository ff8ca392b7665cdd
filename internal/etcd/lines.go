package etcd

import (
	"bytes"
	"sync"
)

const (
	// keptLines is how much of the child's output a Process keeps for
	// ClassifyExit. etcd's reason to exit is often followed by a few lines of
	// shutdown per peer (about ten each) or by a Go panic trace (about twenty),
	// so this leaves room for a seven-member cluster.
	keptLines = 100
	// maxLineBytes caps one kept line. etcd's JSON lines put the message and
	// error before the long stacktrace field, so a cut line still classifies.
	maxLineBytes = 8 << 10
)

// lineRing keeps the last lines written to it. Writes of partial lines are
// joined; a line only counts once its newline arrives or flush is called.
type lineRing struct {
	mu      sync.Mutex
	lines   []string // ring storage; oldest at next once full
	next    int
	partial []byte
}

func newLineRing(n int) *lineRing { return &lineRing{lines: make([]string, 0, n)} }

// Write never fails: losing the tail of the child's output must not stop the
// child from writing.
func (r *lineRing) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			r.appendPartial(p)
			break
		}
		r.appendPartial(p[:i])
		r.push()
		p = p[i+1:]
	}
	return n, nil
}

// flush keeps a last line that had no newline, as when the child dies in the
// middle of writing.
func (r *lineRing) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.partial) > 0 {
		r.push()
	}
}

// Lines returns a copy of the kept lines, oldest first.
func (r *lineRing) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.lines))
	out = append(out, r.lines[r.next:]...)
	return append(out, r.lines[:r.next]...)
}

func (r *lineRing) appendPartial(p []byte) {
	room := maxLineBytes - len(r.partial)
	r.partial = append(r.partial, p[:min(len(p), max(room, 0))]...)
}

func (r *lineRing) push() {
	line := string(r.partial)
	r.partial = r.partial[:0]
	switch {
	case cap(r.lines) == 0:
		return
	case len(r.lines) < cap(r.lines):
		r.lines = append(r.lines, line)
	default:
		r.lines[r.next] = line
		r.next = (r.next + 1) % len(r.lines)
	}
}
