package redisstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/taskstatus/taskstatus/internal/statejson"
	"github.com/taskstatus/taskstatus/store"
)

// This file writes and reads the compact form of a task that ended (see
// Stored form in the package doc): its state as short hash fields instead
// of one JSON document, so that Redis keeps the hash in its compact
// encoding (a listpack, for fields and values of up to 64 bytes each, by
// default) rather than as a hash table.

// The fields of the compact form. Each is left out when its value is the
// zero one; fieldStatus is always there, and tells the form.
const (
	fieldStatus        = "status"
	fieldKind          = "kind"
	fieldCorrelationID = "correlation_id"
	fieldErrorMessage  = "error_message"
	fieldCancelReason  = "cancel_reason"
	fieldAttempt       = "attempt"
	fieldProgress      = "progress"          // JSON
	fieldPrevious      = "previous_attempts" // JSON
	prefixLabel        = "label:"            // and the key: the value
	prefixResult       = "result:"           // and the key: the JSON value
	prefixDetail       = "error_details:"    // and the key: the JSON value
	prefixStep         = "step:"             // and the step's index, from 0
	suffixStepError    = ":error"            // after prefixStep and the index
	suffixStepProgress = ":progress"         // the same; JSON
	suffixSubSteps     = ":sub_steps"        // the same; JSON
)

// compactTimes names the times of the compact form, each kept as
// nanoseconds since 1970 (Unix time), in decimal.
var compactTimes = [...]struct {
	field string
	of    func(*store.State) *time.Time
}{
	{"created_at", func(st *store.State) *time.Time { return &st.CreatedAt }},
	{"started_at", func(st *store.State) *time.Time { return &st.StartedAt }},
	{"updated_at", func(st *store.State) *time.Time { return &st.UpdatedAt }},
	{"completed_at", func(st *store.State) *time.Time { return &st.CompletedAt }},
	{"lease_until", func(st *store.State) *time.Time { return &st.LeaseUntil }},
	{"cancel_requested_at", func(st *store.State) *time.Time { return &st.CancelRequestedAt }},
}

// compactFields returns the fields and values, in turn, of st in the
// compact form, or false if st has a time that nanoseconds since 1970 in
// an int64 cannot hold (before 1678 or after 2262), which is then kept as
// JSON, or a part that does not encode. The version, incarnation and
// write ids are the fields of every form (putScript).
//
// A step is one field, "step:<i>", when it has no error, progress or
// sub-steps: its status, attempt, start and completion (nanoseconds after
// the task's creation, "-" for none) and name, separated by spaces, such
// as "success 1 1961927 2146741 parse"; each of the others is a field of
// its own.
func compactFields(st store.State) ([]any, bool) {
	w := compactWriter{fields: make([]any, 0, 16+2*len(st.Steps)+2*len(st.Labels)+2*len(st.Result)), ok: true}
	w.add(fieldStatus, string(st.Status))
	w.add(fieldKind, st.Kind)
	w.add(fieldCorrelationID, st.CorrelationID)
	w.add(fieldErrorMessage, st.ErrorMessage)
	w.add(fieldCancelReason, st.CancelReason)
	if st.Attempt != 0 {
		w.add(fieldAttempt, strconv.Itoa(st.Attempt))
	}
	for _, t := range compactTimes {
		w.addTime(t.field, *t.of(&st))
	}
	if st.Progress != (store.Progress{}) {
		w.addJSON(fieldProgress, st.Progress)
	}
	for _, k := range slices.Sorted(maps.Keys(st.Labels)) {
		w.add(prefixLabel+k, st.Labels[k])
	}
	for _, k := range slices.Sorted(maps.Keys(st.Result)) {
		w.addJSON(prefixResult+k, st.Result[k]) // compacted, as the JSON form keeps it
	}
	for _, k := range slices.Sorted(maps.Keys(st.ErrorDetails)) {
		w.addJSON(prefixDetail+k, st.ErrorDetails[k])
	}
	var base int64 // the creation's nanoseconds, against which steps' times are kept
	if !st.CreatedAt.IsZero() {
		base = st.CreatedAt.UnixNano() // checked by addTime
	}
	for i, sp := range st.Steps {
		w.addStep(prefixStep+strconv.Itoa(i), sp, base)
	}
	if len(st.PreviousAttempts) > 0 {
		w.addJSON(fieldPrevious, statejson.InUTC(store.State{PreviousAttempts: st.PreviousAttempts}).PreviousAttempts)
	}
	if !w.ok {
		return nil, false
	}
	return w.fields, true
}

// compactWriter gathers the fields of the compact form.
type compactWriter struct {
	fields []any // field, value, field, value...
	ok     bool  // false once a part could not be kept
}

// add adds field, unless value is empty.
func (w *compactWriter) add(field, value string) {
	if value != "" {
		w.fields = append(w.fields, field, value)
	}
}

// addJSON adds field with the JSON of v.
func (w *compactWriter) addJSON(field string, v any) {
	b, err := json.Marshal(v)
	w.ok = w.ok && err == nil
	w.add(field, string(b))
}

// addTime adds field with t in nanoseconds since 1970, unless t is zero.
func (w *compactWriter) addTime(field string, t time.Time) {
	if t.IsZero() {
		return
	}
	n, ok := unixNanos(t)
	w.ok = w.ok && ok
	w.add(field, strconv.FormatInt(n, 10))
}

// addStep adds the fields of step sp, named name and name's suffixes,
// its times after base nanoseconds.
func (w *compactWriter) addStep(name string, sp store.Step, base int64) {
	line, ok := stepLine(sp, base)
	w.ok = w.ok && ok
	w.add(name, line)
	w.add(name+suffixStepError, sp.Error)
	if sp.Progress != (store.Progress{}) {
		w.addJSON(name+suffixStepProgress, sp.Progress)
	}
	if len(sp.SubSteps) > 0 {
		w.addJSON(name+suffixSubSteps, statejson.InUTC(store.State{Steps: []store.Step{sp}}).Steps[0].SubSteps)
	}
}

// stepLine returns the line of sp, its times after base nanoseconds, or
// false if a time is too far from base for an int64 of nanoseconds.
func stepLine(sp store.Step, base int64) (string, bool) {
	b := make([]byte, 0, 48+len(sp.Name))
	b = append(b, sp.Status...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(sp.Attempt), 10)
	for _, t := range []time.Time{sp.StartedAt, sp.CompletedAt} {
		b = append(b, ' ')
		if t.IsZero() {
			b = append(b, '-')
			continue
		}
		n, ok := unixNanos(t)
		if !ok || overflows(n, base) {
			return "", false
		}
		b = strconv.AppendInt(b, n-base, 10)
	}
	b = append(b, ' ')
	b = append(b, sp.Name...)
	return string(b), true
}

// overflows reports whether n - base overflows an int64.
func overflows(n, base int64) bool {
	d := n - base
	return (base > 0 && d > n) || (base < 0 && d < n)
}

// unixNanos returns t as nanoseconds since 1970, or false if an int64
// cannot hold them.
func unixNanos(t time.Time) (int64, bool) {
	n := t.UnixNano()
	return n, time.Unix(0, n).Equal(t)
}

// decodeCompact returns the state of task id that the fields of its hash
// hold in the compact form, at version (the version field) and of the
// incarnation of the inc field. An error wraps store.ErrCorrupt and says
// which field is wrong. Fields it does not know are ignored.
func decodeCompact(id string, version int64, fields map[string]string) (store.State, error) {
	st := store.State{
		ID: id, Incarnation: fields[fieldIncarnation], Version: version,
		Status: store.Status(fields[fieldStatus]), Kind: fields[fieldKind],
		CorrelationID: text(fields[fieldCorrelationID]), ErrorMessage: text(fields[fieldErrorMessage]),
		CancelReason: text(fields[fieldCancelReason]),
	}
	if err := readScalars(&st, fields); err != nil {
		return store.State{}, err
	}
	if err := readParts(&st, fields); err != nil {
		return store.State{}, err
	}
	if err := st.Validate(); err != nil {
		return store.State{}, fmt.Errorf("%w: %v", store.ErrCorrupt, err) //nolint:errorlint // corrupt data, not invalid input
	}
	return statejson.InUTC(st), nil
}

// readScalars reads into st the fields of the compact form that are
// not a label, result, error detail or step: the incarnation, attempt,
// times, progress and previous attempts.
func readScalars(st *store.State, fields map[string]string) error {
	bad := func(field, what string) error {
		return fmt.Errorf("%w: %s field %q is not %s", store.ErrCorrupt, field, fields[field], what)
	}
	if !utf8.ValidString(st.Incarnation) { // the JSON form could not keep it either
		return bad(fieldIncarnation, "UTF-8")
	}
	if raw, ok := fields[fieldAttempt]; ok {
		n, err := strconv.Atoi(raw)
		if err != nil {
			return bad(fieldAttempt, "an integer")
		}
		st.Attempt = n
	}
	for _, t := range compactTimes {
		raw, ok := fields[t.field]
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return bad(t.field, "an integer of nanoseconds")
		}
		*t.of(st) = time.Unix(0, n).UTC()
	}
	if raw, ok := fields[fieldProgress]; ok && json.Unmarshal([]byte(raw), &st.Progress) != nil {
		return bad(fieldProgress, "the JSON of a progress")
	}
	if raw, ok := fields[fieldPrevious]; ok && json.Unmarshal([]byte(raw), &st.PreviousAttempts) != nil {
		return bad(fieldPrevious, "the JSON of attempts")
	}
	return nil
}

// readParts reads into st, whose creation time is read, the labels,
// results, error details and steps of the compact form.
func readParts(st *store.State, fields map[string]string) error {
	var base int64
	if !st.CreatedAt.IsZero() {
		base = st.CreatedAt.UnixNano()
	}
	steps := make(map[int]store.Step)
	for field, raw := range fields {
		var err error
		switch {
		case strings.HasPrefix(field, prefixLabel):
			if st.Labels == nil {
				st.Labels = make(map[string]string)
			}
			st.Labels[field[len(prefixLabel):]] = raw
		case strings.HasPrefix(field, prefixResult):
			st.Result, err = addRaw(st.Result, field[len(prefixResult):], raw)
		case strings.HasPrefix(field, prefixDetail):
			st.ErrorDetails, err = addRaw(st.ErrorDetails, field[len(prefixDetail):], raw)
		case strings.HasPrefix(field, prefixStep):
			err = addStepField(steps, field[len(prefixStep):], raw, base)
		}
		if err != nil {
			return fmt.Errorf("%w: %s field %q: %v", store.ErrCorrupt, field, raw, err) //nolint:errorlint // corrupt data
		}
	}
	if len(steps) == 0 {
		return nil
	}
	st.Steps = make([]store.Step, len(steps))
	for i, sp := range steps {
		if i >= len(steps) {
			return fmt.Errorf("%w: the steps are not numbered from 0 to %d", store.ErrCorrupt, len(steps)-1)
		}
		st.Steps[i] = sp
	}
	return nil
}

// addRaw returns m with key k set to the JSON value raw, compacted, and
// an error if raw is not one JSON value.
func addRaw(m map[string]json.RawMessage, k, raw string) (map[string]json.RawMessage, error) {
	v, err := json.Marshal(json.RawMessage(raw))
	if err != nil {
		return nil, errors.New("not a JSON value")
	}
	if m == nil {
		m = make(map[string]json.RawMessage)
	}
	m[k] = v
	return m, nil
}

// addStepField reads into steps the field of a step whose name, after
// prefixStep, is rest, and whose value is raw; base is the task's
// creation in nanoseconds, against which a step line keeps its times.
func addStepField(steps map[int]store.Step, rest, raw string, base int64) error {
	num, suffix, _ := strings.Cut(rest, ":")
	i, ok := stepIndex(num)
	if !ok {
		return nil // not a field of this form: ignored
	}
	sp := steps[i]
	switch ":" + suffix {
	case ":":
		if err := readStepLine(&sp, raw, base); err != nil {
			return err
		}
	case suffixStepError:
		sp.Error = text(raw)
	case suffixStepProgress:
		if json.Unmarshal([]byte(raw), &sp.Progress) != nil {
			return errors.New("not the JSON of a progress")
		}
	case suffixSubSteps:
		if json.Unmarshal([]byte(raw), &sp.SubSteps) != nil {
			return errors.New("not the JSON of sub-steps")
		}
	default:
		return nil
	}
	steps[i] = sp
	return nil
}

// stepIndex returns the step index num is in decimal, without a sign or
// a leading zero, and whether it is one.
func stepIndex(num string) (int, bool) {
	i, err := strconv.Atoi(num)
	return i, err == nil && i >= 0 && strconv.Itoa(i) == num
}

// readStepLine reads a step line (see compactFields) into sp.
func readStepLine(sp *store.Step, line string, base int64) error {
	parts := strings.SplitN(line, " ", 5)
	if len(parts) != 5 {
		return errors.New("not a step's status, attempt, times and name")
	}
	attempt, err := strconv.Atoi(parts[1])
	if err != nil {
		return fmt.Errorf("attempt %q is not an integer", parts[1])
	}
	sp.Status, sp.Attempt, sp.Name = store.StepStatus(parts[0]), attempt, text(parts[4])
	for i, t := range []*time.Time{&sp.StartedAt, &sp.CompletedAt} {
		raw := parts[2+i]
		if raw == "-" {
			continue
		}
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("time %q is not an integer of nanoseconds", raw)
		}
		*t = time.Unix(0, base).Add(time.Duration(n)).UTC()
	}
	return nil
}

// text returns s with each run of bytes that is not UTF-8 replaced by
// U+FFFD, so that it is UTF-8, as every string of a state read from JSON
// is.
func text(s string) string {
	return strings.ToValidUTF8(s, "\uFFFD")
}
