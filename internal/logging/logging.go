// Package logging builds the appliance's logger: one schema for every line,
// the appliance's own and its etcd's (which package etcd re-encodes into it).
//
// Every line has time, level, msg and exactly one component; durations read
// as Go writes them ("1.5s"), not as integer nanoseconds; the format is JSON
// or logfmt-like text (slog's two handlers).
package logging

import (
	"context"
	"io"
	"log/slog"
	"slices"
)

// ComponentKey names the part of the appliance a line comes from.
const ComponentKey = "component"

// New is a logger writing format ("json" or "text"; anything else is json)
// to w at level and above.
func New(w io.Writer, format string, level slog.Leveler) *slog.Logger {
	return slog.New(NewHandler(w, format, level))
}

// NewHandler is New's handler.
func NewHandler(w io.Writer, format string, level slog.Leveler) slog.Handler {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: readableDuration}
	if format == "text" {
		return oneComponent(slog.NewTextHandler(w, opts))
	}
	return oneComponent(slog.NewJSONHandler(w, opts))
}

// readableDuration writes durations as time.Duration.String does: slog's
// JSON handler would write integer nanoseconds.
func readableDuration(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// oneComponent wraps h so that a component given to a logger that already
// has one replaces it instead of adding a second key: the appliance hands
// its logger, With a component, to parts that name themselves (the etcd
// supervisor, the snapshot store, the provider's DNS), and the line belongs
// to the innermost of them.
func oneComponent(h slog.Handler) slog.Handler {
	return &componentHandler{root: h, inner: h}
}

type componentHandler struct {
	root      slog.Handler // h as given, without any attribute added here
	component []slog.Attr  // none or one; first on the line
	attrs     []slog.Attr  // the others, in the order given
	inner     slog.Handler // root with component and attrs: where records go
}

func (h *componentHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *componentHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.inner.Handle(ctx, r)
}

func (h *componentHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := &componentHandler{root: h.root, component: h.component, attrs: slices.Clip(h.attrs)}
	for _, a := range as {
		if a.Key == ComponentKey {
			n.component = []slog.Attr{a}
		} else {
			n.attrs = append(n.attrs, a)
		}
	}
	n.inner = n.root.WithAttrs(append(slices.Clone(n.component), n.attrs...))
	return n
}

// WithGroup hands over to the plain handler: a component given inside a
// group is that group's, not a second one of the line.
func (h *componentHandler) WithGroup(name string) slog.Handler {
	return h.inner.WithGroup(name)
}

var _ slog.Handler = (*componentHandler)(nil)
