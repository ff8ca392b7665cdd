package robustness

import (
	"fmt"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"
)

// keyState is one key of the modelled store. Rev is the revision of the
// key's last change (0: never changed) when RevKnown; otherwise an unknown
// write changed it since, at some revision above Rev.
type keyState struct {
	Exists   bool
	Value    string
	Rev      int64
	RevKnown bool
}

var initialKeyState = keyState{RevKnown: true}

// after reports whether rev may be the revision of the key's next change.
func (s keyState) after(rev int64) bool { return rev > s.Rev }

// notBefore reports whether a response with header revision rev may have
// read the key in state s: the store's revision is never below the key's
// last change.
func (s keyState) notBefore(rev int64) bool {
	if s.RevKnown {
		return rev >= s.Rev
	}
	return rev > s.Rev
}

// step is the sequential specification of one key: whether a request could
// have had this response in state s, and the state after it.
func step(s keyState, req Request, resp Response) (bool, keyState) {
	if resp.Outcome == Unknown {
		return true, stepUnknown(s, req)
	}
	switch req.Kind {
	case OpGet:
		if resp.Found != s.Exists || !s.notBefore(resp.Revision) {
			return false, s
		}
		if !s.Exists {
			return true, s
		}
		if resp.Value != s.Value {
			return false, s
		}
		if s.RevKnown {
			return resp.ModRev == s.Rev, s
		}
		if !s.after(resp.ModRev) {
			return false, s
		}
		return true, keyState{Exists: true, Value: s.Value, Rev: resp.ModRev, RevKnown: true}
	case OpPut:
		return s.after(resp.Revision), keyState{Exists: true, Value: req.Value, Rev: resp.Revision, RevKnown: true}
	case OpCAS:
		holds := s.Exists && s.Value == req.Expect
		if resp.Found != holds {
			return false, s
		}
		if !holds {
			return s.notBefore(resp.Revision), s
		}
		return s.after(resp.Revision), keyState{Exists: true, Value: req.Value, Rev: resp.Revision, RevKnown: true}
	case OpDelete:
		if resp.Found != s.Exists {
			return false, s
		}
		if !s.Exists {
			return s.notBefore(resp.Revision), s
		}
		return s.after(resp.Revision), keyState{Rev: resp.Revision, RevKnown: true}
	}
	return false, s
}

// stepUnknown applies a write whose response never came, at the instant
// the linearization puts it; the checker may also put it after everything,
// which is the write never applied.
func stepUnknown(s keyState, req Request) keyState {
	switch req.Kind {
	case OpPut:
		return keyState{Exists: true, Value: req.Value, Rev: s.Rev}
	case OpCAS:
		if s.Exists && s.Value == req.Expect {
			return keyState{Exists: true, Value: req.Value, Rev: s.Rev}
		}
	case OpDelete:
		if s.Exists {
			return keyState{Rev: s.Rev}
		}
	}
	return s
}

// kvModel is the porcupine model of etcd's key-value store for the
// operations Record issues. Every operation touches one key, so the history
// is checked key by key.
func kvModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			var keys []string
			for _, op := range history {
				k := op.Input.(Request).Key
				if _, ok := byKey[k]; !ok {
					keys = append(keys, k)
				}
				byKey[k] = append(byKey[k], op)
			}
			slices.Sort(keys)
			parts := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				parts = append(parts, byKey[k])
			}
			return parts
		},
		PartitionEvent: func(history []porcupine.Event) [][]porcupine.Event {
			// Return events carry no key: find it through the call's id.
			keyOf := map[int]string{}
			byKey := map[string][]porcupine.Event{}
			var keys []string
			for _, e := range history {
				if e.Kind == porcupine.CallEvent {
					keyOf[e.Id] = e.Value.(Request).Key
				}
				k := keyOf[e.Id]
				if _, ok := byKey[k]; !ok {
					keys = append(keys, k)
				}
				byKey[k] = append(byKey[k], e)
			}
			slices.Sort(keys)
			parts := make([][]porcupine.Event, 0, len(keys))
			for _, k := range keys {
				parts = append(parts, byKey[k])
			}
			return parts
		},
		Init: func() any { return initialKeyState },
		Step: func(state, input, output any) (bool, any) {
			return step(state.(keyState), input.(Request), output.(Response))
		},
		DescribeOperation: func(input, output any) string {
			return Operation{Req: input.(Request), Resp: output.(Response)}.describe()
		},
		DescribeState: func(state any) string {
			s := state.(keyState)
			var b strings.Builder
			if s.Exists {
				fmt.Fprintf(&b, "%q", s.Value)
			} else {
				b.WriteString("absent")
			}
			if s.RevKnown {
				fmt.Fprintf(&b, " @%d", s.Rev)
			} else {
				fmt.Fprintf(&b, " @>%d", s.Rev)
			}
			return b.String()
		},
	}
}

// describe is an operation without its client, as the visualization shows it.
func (op Operation) describe() string {
	var in string
	switch op.Req.Kind {
	case OpGet:
		in = fmt.Sprintf("get(%s)", op.Req.Key)
	case OpPut:
		in = fmt.Sprintf("put(%s, %q)", op.Req.Key, op.Req.Value)
	case OpCAS:
		in = fmt.Sprintf("cas(%s, %q → %q)", op.Req.Key, op.Req.Expect, op.Req.Value)
	case OpDelete:
		in = fmt.Sprintf("delete(%s)", op.Req.Key)
	default:
		in = fmt.Sprintf("%s(%s)", op.Req.Kind, op.Req.Key)
	}
	r := op.Resp
	var out string
	switch {
	case r.Outcome != OK:
		out = string(r.Outcome)
		if r.Err != "" {
			out += " (" + r.Err + ")"
		}
	case op.Req.Kind == OpGet && !r.Found:
		out = fmt.Sprintf("absent @rev %d", r.Revision)
	case op.Req.Kind == OpGet:
		out = fmt.Sprintf("%q mod %d @rev %d", r.Value, r.ModRev, r.Revision)
	case op.Req.Kind == OpPut:
		out = fmt.Sprintf("ok @rev %d", r.Revision)
	default:
		out = fmt.Sprintf("%t @rev %d", r.Found, r.Revision)
	}
	return in + " → " + out
}
