package snapshot

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestVerifyingReader(t *testing.T) {
	content := payload(10000, 1)
	want := Meta{Key: "c/20260510T120000Z-r100.db", Size: int64(len(content)), SHA256: sha(content)}
	flipped := bytes.Clone(content)
	flipped[0] ^= 0x80
	lost := errors.New("connection reset by peer")
	for _, tt := range []struct {
		name    string
		body    io.Reader
		corrupt bool
		err     error // other than ErrCorrupt, passed through
	}{
		{name: "intact", body: bytes.NewReader(content)},
		{name: "intact, a byte a read", body: iotest.OneByteReader(bytes.NewReader(content))},
		{name: "a flipped byte", body: bytes.NewReader(flipped), corrupt: true},
		{name: "short", body: bytes.NewReader(content[:9999]), corrupt: true},
		{name: "long", body: bytes.NewReader(append(bytes.Clone(content), 0)), corrupt: true},
		{name: "empty", body: bytes.NewReader(nil), corrupt: true},
		{name: "data and EOF in one read", body: iotest.DataErrReader(bytes.NewReader(content))},
		{name: "a broken connection is no corruption", body: io.MultiReader(bytes.NewReader(content[:5000]), iotest.ErrReader(lost)), err: lost},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newVerifyingReader(io.NopCloser(tt.body), want)
			b, err := io.ReadAll(r)
			switch {
			case tt.corrupt:
				if !errors.Is(err, ErrCorrupt) {
					t.Errorf("read %d bytes, %v; want ErrCorrupt", len(b), err)
				}
			case tt.err != nil:
				if !errors.Is(err, tt.err) || errors.Is(err, ErrCorrupt) {
					t.Errorf("read %d bytes, %v; want %v and not ErrCorrupt", len(b), err, tt.err)
				}
			default:
				if err != nil || !bytes.Equal(b, content) {
					t.Errorf("read %d bytes, %v; want all %d", len(b), err, len(content))
				}
			}
			// The verdict stays.
			if _, again := r.Read(make([]byte, 1)); tt.corrupt && !errors.Is(again, ErrCorrupt) || !tt.corrupt && tt.err == nil && again != io.EOF {
				t.Errorf("a read after the end: %v", again)
			}
		})
	}
}
