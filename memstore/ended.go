package memstore

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// This file keeps ended tasks in a smaller form. A task that has ended
// stays until its TTL, so ended tasks are most of what a store holds, and
// they are seldom written again (a retry, a cancel request). The store
// keeps the bulk of such a task apart from its entry's state: its steps
// with their times as Unix nanoseconds, and its Result and ErrorDetails
// encoded in one string, a Go map being some 350 bytes for two fields.
// Each reader gets a State rebuilt from them. Tasks that have not ended
// are kept as plain States, read and written as before.
//
// A task is kept so only when the rebuilt State is the one written, field
// for field as reflect.DeepEqual sees it: each time of its steps must be
// in UTC without a monotonic reading (as the tracker writes them), or the
// store keeps the task as written.
//
// Measured against the State kept whole (5 runs of each in turns, medians):
// BenchmarkMemoryPerTask, a finished 5-step task with two result fields,
// 1,419 bytes against 1,899; BenchmarkGetEnded 579 ns against 525.

// ended is the part of an ended task's state that its entry keeps apart:
// the entry's state has nil Steps, Result and ErrorDetails.
type ended struct {
	steps []endedStep // nil when Steps is nil
	// fields holds Result, then ErrorDetails, encoded by appendFields.
	fields string
}

// endedStep is a [store.Step] whose times are Unix nanoseconds (see nanos).
type endedStep struct {
	name                   string
	status                 store.StepStatus
	startedAt, completedAt int64
	err                    string
	attempt                int
	progress               store.Progress
	subSteps               []endedSubStep // nil when SubSteps is nil
}

// endedSubStep is a [store.SubStep] whose times are Unix nanoseconds.
type endedSubStep struct {
	name                   string
	status                 store.StepStatus
	startedAt, completedAt int64
	err                    string
}

// compact splits st, a state the caller keeps, into the state an entry
// holds and the part it keeps apart, sharing no memory with st. It
// reports false, and returns nothing, if the split would not give st back
// exactly (see nanos).
func compact(st store.State) (store.State, *ended, bool) {
	steps, ok := compactSteps(st.Steps)
	if !ok {
		return store.State{}, nil, false
	}
	fields := appendFields(appendFields(nil, st.Result), st.ErrorDetails)
	x := &ended{steps: steps, fields: string(fields)}
	st.Steps, st.Result, st.ErrorDetails = nil, nil, nil
	return st.Clone(), x, true
}

func compactSteps(steps []store.Step) ([]endedStep, bool) {
	if steps == nil {
		return nil, true
	}
	c := make([]endedStep, len(steps))
	for i := range steps {
		s := &steps[i]
		started, ok1 := nanos(s.StartedAt)
		completed, ok2 := nanos(s.CompletedAt)
		subSteps, ok3 := compactSubSteps(s.SubSteps)
		if !ok1 || !ok2 || !ok3 {
			return nil, false
		}
		c[i] = endedStep{name: s.Name, status: s.Status, startedAt: started, completedAt: completed,
			err: s.Error, attempt: s.Attempt, progress: s.Progress, subSteps: subSteps}
	}
	return c, true
}

func compactSubSteps(subs []store.SubStep) ([]endedSubStep, bool) {
	if subs == nil {
		return nil, true
	}
	c := make([]endedSubStep, len(subs))
	for i := range subs {
		s := &subs[i]
		started, ok1 := nanos(s.StartedAt)
		completed, ok2 := nanos(s.CompletedAt)
		if !ok1 || !ok2 {
			return nil, false
		}
		c[i] = endedSubStep{name: s.Name, status: s.Status, startedAt: started, completedAt: completed, err: s.Error}
	}
	return c, true
}

// restore sets st's Steps, Result and ErrorDetails, nil in an entry's
// state, to new copies of those x keeps.
func (x *ended) restore(st *store.State) {
	if x.steps != nil {
		st.Steps = make([]store.Step, len(x.steps))
		for i := range x.steps {
			x.steps[i].restore(&st.Steps[i])
		}
	}
	rest := x.fields
	st.Result, rest = readFields(rest)
	st.ErrorDetails, _ = readFields(rest)
}

// restore sets *dst, a zero Step, to s.
func (s *endedStep) restore(dst *store.Step) {
	dst.Name, dst.Status, dst.Error = s.name, s.status, s.err
	dst.StartedAt, dst.CompletedAt = timeOf(s.startedAt), timeOf(s.completedAt)
	dst.Attempt, dst.Progress = s.attempt, s.progress
	if s.subSteps != nil {
		dst.SubSteps = make([]store.SubStep, len(s.subSteps))
		for i := range s.subSteps {
			sub, d := &s.subSteps[i], &dst.SubSteps[i]
			d.Name, d.Status, d.Error = sub.name, sub.status, sub.err
			d.StartedAt, d.CompletedAt = timeOf(sub.startedAt), timeOf(sub.completedAt)
		}
	}
}

// noTime stands for the zero time among times kept as Unix nanoseconds.
// It is itself an instant of 1677, which nanos refuses.
const noTime = math.MinInt64

// nanos returns t as Unix nanoseconds, or noTime for the zero time, and
// whether timeOf gives t back exactly, field for field: a time in UTC
// without a monotonic reading, between the years 1678 and 2262.
func nanos(t time.Time) (int64, bool) {
	if t.IsZero() {
		return noTime, t.Location() == time.UTC
	}
	n := t.UnixNano()
	// == and not Equal: the same instant in another location, or with a
	// monotonic reading, is not t.
	return n, n != noTime && timeOf(n) == t //nolint:staticcheck // QF1009, see above
}

// timeOf returns the time n, made by nanos.
func timeOf(n int64) time.Time {
	if n == noTime {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// appendFields appends m to b: its length plus one (0 for a nil map),
// then each key, its length first, and each value, its length plus one
// first (0 for nil). Lengths are uvarints.
func appendFields(b []byte, m map[string]json.RawMessage) []byte {
	if m == nil {
		return binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(m))+1)
	for k, v := range m {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		if v == nil {
			b = binary.AppendUvarint(b, 0)
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(v))+1)
		b = append(b, v...)
	}
	return b
}

// readFields returns a new copy of the map at the start of s, which
// appendFields wrote, and the rest of s. Its keys are substrings of s.
func readFields(s string) (map[string]json.RawMessage, string) {
	n, s := readUvarint(s)
	if n == 0 {
		return nil, s
	}
	m := make(map[string]json.RawMessage, n-1)
	for range n - 1 {
		var k string
		k, s = readString(s)
		v, rest := readUvarint(s)
		s = rest
		if v == 0 {
			m[k] = nil
			continue
		}
		m[k] = json.RawMessage(s[:v-1])
		s = s[v-1:]
	}
	return m, s
}

// readString returns the string at the start of s, its length first, and
// the rest of s.
func readString(s string) (string, string) {
	n, s := readUvarint(s)
	return s[:n], s[n:]
}

// readUvarint returns the uvarint at the start of s, which
// binary.AppendUvarint wrote, and the rest of s.
func readUvarint(s string) (uint64, string) {
	var v uint64
	for shift := 0; ; shift += 7 {
		c := s[0]
		s = s[1:]
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, s
		}
	}
}
