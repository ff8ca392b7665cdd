package etcd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// maxLogLineBytes caps one line of etcd's output that is re-encoded. etcd's
// longest lines are fatal ones with a stack trace, a few KiB.
const maxLogLineBytes = 1 << 20

// Keys that etcd's lines get besides their own fields.
const (
	// callerKey is where in etcd's source the line was logged.
	callerKey = "caller"
	// etcdLevelKey is etcd's own level, on lines whose level is not it:
	// dpanic, panic and fatal (logged at ERROR) and the shutdown noise
	// logged at INFO (see shutdownNoise).
	etcdLevelKey = "etcd_level"
)

// etcdLog re-encodes etcd's output as records of the appliance's logger,
// one per line, so that the appliance's log has one schema: etcd's zap JSON
// lines keep their time, message and fields under their level, gRPC's own
// lines their message and severity, anything else (a Go panic, a usage
// text) is logged as it is at ERROR.
type etcdLog struct {
	handler slog.Handler
	// stopping reports whether the appliance asked etcd to stop, after
	// which the shutdown noise is no error.
	stopping func() bool
	partial  []byte
}

func newEtcdLog(logger *slog.Logger, stopping func() bool) *etcdLog {
	return &etcdLog{handler: logger.Handler(), stopping: stopping}
}

// Write logs every complete line of p and keeps the rest for the next
// Write. It never fails: the child must not stop for its log.
func (l *etcdLog) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.partial = append(l.partial, p[:min(len(p), max(maxLogLineBytes-len(l.partial), 0))]...)
			break
		}
		l.appendLine(p[:i])
		p = p[i+1:]
	}
	return n, nil
}

// flush logs a last line that had no newline, as when the child dies in the
// middle of writing.
func (l *etcdLog) flush() {
	if len(l.partial) > 0 {
		l.appendLine(nil)
	}
}

func (l *etcdLog) appendLine(p []byte) {
	line := p
	if len(l.partial) > 0 {
		l.partial = append(l.partial, p[:min(len(p), max(maxLogLineBytes-len(l.partial), 0))]...)
		line = l.partial
	}
	defer func() { l.partial = l.partial[:0] }()
	r, ok := logRecord(line, time.Now(), l.stopping())
	if ok && l.handler.Enabled(context.Background(), r.Level) {
		_ = l.handler.Handle(context.Background(), r)
	}
}

var _ io.Writer = (*etcdLog)(nil)

// logRecord is the record of one line of etcd's output; false for a blank
// line. now is the time of a line that does not carry one; stopping says
// the appliance asked etcd to stop.
func logRecord(line []byte, now time.Time, stopping bool) (slog.Record, bool) {
	line = bytes.TrimRight(line, "\r")
	if len(bytes.TrimSpace(line)) == 0 {
		return slog.Record{}, false
	}
	z, err := parseZap(line)
	if err != nil {
		if r, ok := grpcRecord(line, now); ok {
			return r, true
		}
		// Neither zap's nor gRPC's: etcd writes others only when it is
		// dying (a Go panic or runtime error) or refuses its command line.
		return slog.NewRecord(now, slog.LevelError, string(line), 0), true
	}
	at := now
	if t, ok := z.time(); ok {
		at = t
	}
	level, exact := levelOf(z.level)
	var attrs []slog.Attr
	if z.caller != "" {
		attrs = append(attrs, slog.String(callerKey, z.caller))
	}
	noise := stopping && exact && level >= slog.LevelWarn && isShutdownNoise(z)
	if noise || !exact {
		attrs = append(attrs, slog.String(etcdLevelKey, z.level))
	}
	if noise {
		level = slog.LevelInfo
	}
	for _, f := range z.fields {
		if noise && f.Key == "stacktrace" {
			continue
		}
		attrs = append(attrs, f)
	}
	r := slog.NewRecord(at, level, z.msg, 0)
	r.AddAttrs(attrs...)
	return r, true
}

// grpcLine is a line of gRPC's own logger, which etcd leaves on its
// default: the standard library's date and time to the second, a severity,
// the message. Seen at a stop: "2026/12/06 14:07:53 WARNING: [core] [Server
// #2] grpc: Server.processUnaryRPC failed to write status: connection
// error: desc = "transport is closing"".
var grpcLine = regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)? (INFO|WARNING|ERROR|FATAL): (.*)$`)

// grpcRecord is the record of a line of gRPC's logger, at its severity
// (FATAL at ERROR, with etcd_level) and at the time it was read, which is
// more precise than the line's own.
func grpcRecord(line []byte, now time.Time) (slog.Record, bool) {
	m := grpcLine.FindSubmatch(line)
	if m == nil {
		return slog.Record{}, false
	}
	level := map[string]slog.Level{"INFO": slog.LevelInfo, "WARNING": slog.LevelWarn, "ERROR": slog.LevelError, "FATAL": slog.LevelError}[string(m[1])]
	r := slog.NewRecord(now, level, string(m[2]), 0)
	r.AddAttrs(slog.String("logger", "grpc"))
	if string(m[1]) == "FATAL" {
		r.AddAttrs(slog.String(etcdLevelKey, "fatal"))
	}
	return r, true
}

// levelOf maps zap's level names to slog's. exact is false for zap's levels
// that slog has not (dpanic, panic and fatal, all logged at ERROR, and any
// unknown name, at INFO).
func levelOf(zap string) (level slog.Level, exact bool) {
	switch zap {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	case "dpanic", "panic", "fatal":
		return slog.LevelError, false
	}
	return slog.LevelInfo, false
}

// shutdownNoise are lines a member logs at warn or error while it shuts
// down because it was asked to (SIGTERM): its listeners and peer streams
// report being closed, the listeners' at error with a stack trace. They are
// logged at INFO, without the stack trace, when the appliance stopped etcd;
// after any other exit they keep their level. Seen with etcd 3.6 and 3.7
// (testdata/log).
var shutdownNoise = []struct {
	msg string
	// errs are texts one of which the line's error contains; none: any.
	errs []string
}{
	{"setting up serving from embedded etcd failed.",
		[]string{"mux: server closed", "mux: listener closed", "http: Server closed", "use of closed network connection", "grpc: the server has been stopped"}},
	{"stopping insecure grpc server due to error", []string{"use of closed network connection"}},
	{"stopped insecure grpc server due to error", []string{"use of closed network connection"}},
	{"stopping secure grpc server due to error", []string{"use of closed network connection"}},
	{"stopped secure grpc server due to error", []string{"use of closed network connection"}},
	// The member's own peer streams, closed as its transport stops.
	{"closed TCP streaming connection with remote peer", nil},
	{"lost TCP streaming connection with remote peer", []string{"context canceled"}},
	{"peer became inactive (message send to peer failed)", []string{"context canceled"}},
	{"failed to find remote peer in cluster", nil},
}

func isShutdownNoise(z zapLine) bool {
	for _, n := range shutdownNoise {
		if z.msg != n.msg {
			continue
		}
		if len(n.errs) == 0 {
			return true
		}
		for _, e := range n.errs {
			if strings.Contains(z.err, e) {
				return true
			}
		}
	}
	return false
}

// zapLine is one line of etcd's zap JSON encoder: its own keys apart, the
// other fields in their order.
type zapLine struct {
	ts, level, caller, msg string
	tsNumber               json.Number // ts, when zap wrote seconds since the epoch
	err                    string      // the error field, for isShutdownNoise
	fields                 []slog.Attr
}

func (z zapLine) time() (time.Time, bool) {
	if z.ts != "" {
		t, err := time.Parse(time.RFC3339Nano, z.ts)
		return t, err == nil
	}
	if z.tsNumber != "" {
		s, err := z.tsNumber.Float64()
		if err != nil {
			return time.Time{}, false
		}
		sec := int64(s)
		return time.Unix(sec, int64((s-float64(sec))*1e9)), true
	}
	return time.Time{}, false
}

// reservedKeys are the appliance's own keys: an etcd field of that name is
// renamed etcd_<name> so that no line has a key twice.
var reservedKeys = map[string]bool{
	slog.TimeKey: true, slog.LevelKey: true, slog.MessageKey: true, "component": true, etcdLevelKey: true,
}

// parseZap reads a JSON object, keeping the order of its fields.
func parseZap(line []byte) (zapLine, error) {
	var z zapLine
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return z, errors.New("not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return z, err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return z, err
		}
		if key == "ts" {
			// zap's ISO 8601 encoder writes a string, its default one
			// seconds since the epoch.
			if raw[0] == '"' {
				if json.Unmarshal(raw, &z.ts) == nil {
					continue
				}
			} else if _, err := strconv.ParseFloat(string(raw), 64); err == nil {
				z.tsNumber = json.Number(raw)
				continue
			}
		}
		v := jsonAttrValue(raw)
		switch key {
		case "level":
			if v.Kind() == slog.KindString {
				z.level = v.String()
				continue
			}
		case "caller":
			if v.Kind() == slog.KindString {
				z.caller = v.String()
				continue
			}
		case "msg":
			if v.Kind() == slog.KindString {
				z.msg = v.String()
				continue
			}
		case "error":
			if v.Kind() == slog.KindString {
				z.err = v.String()
			}
		}
		if reservedKeys[key] || key == callerKey {
			key = "etcd_" + key
		}
		z.fields = append(z.fields, slog.Attr{Key: key, Value: v})
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return z, errors.New("not a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return z, errors.New("more than one JSON value")
	}
	return z, nil
}

// jsonAttrValue is raw as a slog value: strings, numbers, booleans and null
// as themselves, objects and arrays as their JSON text.
func jsonAttrValue(raw json.RawMessage) slog.Value {
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return slog.StringValue(s)
		}
	case 't', 'f':
		return slog.BoolValue(raw[0] == 't')
	case 'n':
		return slog.AnyValue(nil)
	case '{', '[':
		return slog.AnyValue(jsonText(raw))
	default:
		if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			return slog.Int64Value(i)
		}
		if f, err := strconv.ParseFloat(string(raw), 64); err == nil {
			return slog.Float64Value(f)
		}
	}
	return slog.AnyValue(jsonText(raw))
}

// jsonText is a JSON value kept as it is: the JSON handler writes it as
// JSON, the text handler as its text.
type jsonText []byte

func (j jsonText) MarshalJSON() ([]byte, error) { return j, nil }
func (j jsonText) MarshalText() ([]byte, error) { return j, nil }
