package statejson

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/taskstatus/taskstatus/store"
)

// appendState appends the JSON of st, without reflection, byte for byte
// as encoding/json's Marshal writes it (FuzzEncode compares them): the
// fields in their order, those tagged omitempty or omitzero left out when
// empty or zero, map keys sorted, strings escaped as Marshal escapes them
// (HTML's <, > and & too), times as [time.Time.MarshalJSON] writes them,
// and raw values compacted as [json.Compact] does, but for the HTML
// escapes. It fails on a time whose year JSON cannot hold and on a raw
// value that is not JSON.
func appendState(b []byte, st *store.State) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = appendString(b, st.ID)
	b = appendStringField(b, `,"incarnation":`, st.Incarnation)
	b = appendStringField(b, `,"correlation_id":`, st.CorrelationID)
	b = append(b, `,"status":`...)
	b = appendString(b, st.Status)
	b = appendStringField(b, `,"kind":`, st.Kind)
	b = appendLabels(b, st.Labels)
	b, err := appendStateTimes(b, st)
	if err != nil {
		return nil, err
	}
	b = appendStringField(b, `,"error_message":`, st.ErrorMessage)
	if b, err = appendRaws(b, `,"error_details":`, st.ErrorDetails); err != nil {
		return nil, err
	}
	if b, err = appendList(b, `,"steps":[`, st.Steps, appendStep); err != nil {
		return nil, err
	}
	b = appendProgressField(b, st.Progress)
	if b, err = appendRaws(b, `,"result":`, st.Result); err != nil {
		return nil, err
	}
	if b, err = appendTimeField(b, `,"cancel_requested_at":`, st.CancelRequestedAt); err != nil {
		return nil, err
	}
	b = appendStringField(b, `,"cancel_reason":`, st.CancelReason)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(st.Attempt), 10)
	if b, err = appendList(b, `,"previous_attempts":[`, st.PreviousAttempts, appendAttempt); err != nil {
		return nil, err
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, st.Version, 10)
	return append(b, '}'), nil
}

// appendLabels appends the labels field of a state, unless labels is
// empty.
func appendLabels(b []byte, labels map[string]string) []byte {
	if len(labels) == 0 {
		return b
	}
	b = append(b, `,"labels":{`...)
	var keys [store.MaxLabels]string
	for i, k := range sortedKeys(keys[:0], labels) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, labels[k])
	}
	return append(b, '}')
}

// appendStateTimes appends the fields of a state from CreatedAt to
// LeaseUntil: its times but CancelRequestedAt.
func appendStateTimes(b []byte, st *store.State) ([]byte, error) {
	b = append(b, `,"created_at":`...)
	b, err := appendTime(b, st.CreatedAt)
	if err != nil {
		return nil, err
	}
	if b, err = appendTimeField(b, `,"started_at":`, st.StartedAt); err != nil {
		return nil, err
	}
	b = append(b, `,"updated_at":`...)
	if b, err = appendTime(b, st.UpdatedAt); err != nil {
		return nil, err
	}
	if b, err = appendTimeField(b, `,"completed_at":`, st.CompletedAt); err != nil {
		return nil, err
	}
	return appendTimeField(b, `,"lease_until":`, st.LeaseUntil)
}

// appendStep appends the JSON object of *sp.
func appendStep(b []byte, sp *store.Step) ([]byte, error) {
	b, err := appendStepHead(b, sp.Name, sp.Status, sp.StartedAt, sp.CompletedAt)
	if err != nil {
		return nil, err
	}
	b = appendStringField(b, `,"error":`, sp.Error)
	if sp.Attempt != 0 {
		b = append(b, `,"attempt":`...)
		b = strconv.AppendInt(b, int64(sp.Attempt), 10)
	}
	b = appendProgressField(b, sp.Progress)
	if b, err = appendList(b, `,"sub_steps":[`, sp.SubSteps, appendSubStep); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// appendSubStep appends the JSON object of *sub.
func appendSubStep(b []byte, sub *store.SubStep) ([]byte, error) {
	b, err := appendStepHead(b, sub.Name, sub.Status, sub.StartedAt, sub.CompletedAt)
	if err != nil {
		return nil, err
	}
	b = appendStringField(b, `,"error":`, sub.Error)
	return append(b, '}'), nil
}

// appendStepHead opens the JSON object of a step or sub-step and appends
// the fields they share, which come first in both.
func appendStepHead(b []byte, name string, status store.StepStatus, startedAt, completedAt time.Time) ([]byte, error) {
	b = append(b, `{"name":`...)
	b = appendString(b, name)
	b = append(b, `,"status":`...)
	b = appendString(b, status)
	b, err := appendTimeField(b, `,"started_at":`, startedAt)
	if err != nil {
		return nil, err
	}
	return appendTimeField(b, `,"completed_at":`, completedAt)
}

// appendAttempt appends the JSON object of *a.
func appendAttempt(b []byte, a *store.Attempt) ([]byte, error) {
	b = append(b, `{"attempt":`...)
	b = strconv.AppendInt(b, int64(a.Attempt), 10)
	b = append(b, `,"status":`...)
	b = appendString(b, a.Status)
	b, err := appendTimeField(b, `,"started_at":`, a.StartedAt)
	if err != nil {
		return nil, err
	}
	if b, err = appendTimeField(b, `,"completed_at":`, a.CompletedAt); err != nil {
		return nil, err
	}
	b = appendStringField(b, `,"error_message":`, a.ErrorMessage)
	if b, err = appendRaws(b, `,"error_details":`, a.ErrorDetails); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// appendList appends open, the name of a field and the '[' of its array,
// and the elements of list, each by appendElem, unless list is empty.
func appendList[E any](b []byte, open string, list []E, appendElem func([]byte, *E) ([]byte, error)) ([]byte, error) {
	if len(list) == 0 {
		return b, nil
	}
	b = append(b, open...)
	for i := range list {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendElem(b, &list[i]); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

// appendProgressField appends the progress field of a state or step,
// unless p is zero.
func appendProgressField(b []byte, p store.Progress) []byte {
	if p == (store.Progress{}) {
		return b
	}
	b = append(b, `,"progress":{"done":`...)
	b = strconv.AppendInt(b, p.Done, 10)
	if p.Total != 0 {
		b = append(b, `,"total":`...)
		b = strconv.AppendInt(b, p.Total, 10)
	}
	b = appendStringField(b, `,"message":`, p.Message)
	return append(b, '}')
}

// appendStringField appends name and s, unless s is empty.
func appendStringField[S ~string](b []byte, name string, s S) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, name...), s)
}

// appendTimeField appends name and t, unless t is zero.
func appendTimeField(b []byte, name string, t time.Time) ([]byte, error) {
	if t.IsZero() {
		return b, nil
	}
	return appendTime(append(b, name...), t)
}

// appendTime appends t as a JSON string in RFC 3339 with nanoseconds.
func appendTime(b []byte, t time.Time) ([]byte, error) {
	b, err := t.AppendText(append(b, '"'))
	if err != nil {
		return nil, err
	}
	return append(b, '"'), nil
}

// appendRaws appends name and the object of m, unless m is empty.
func appendRaws(b []byte, name string, m map[string]json.RawMessage) ([]byte, error) {
	if len(m) == 0 {
		return b, nil
	}
	b = append(b, name...)
	b = append(b, '{')
	var keys [8]string // most have fewer
	for i, k := range sortedKeys(keys[:0], m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		var err error
		if b, err = appendCompact(b, m[k]); err != nil {
			return nil, fmt.Errorf("value %q: %w", k, err)
		}
	}
	return append(b, '}'), nil
}

// sortedKeys appends the keys of m to keys, and returns them in order.
func sortedKeys[V any](keys []string, m map[string]V) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendCompact appends raw, a JSON value, without the white space
// between its tokens, and with <, >, &, U+2028 and U+2029 escaped; nil as
// null. It fails if raw is not one JSON value.
func appendCompact(b []byte, raw json.RawMessage) ([]byte, error) {
	if raw == nil {
		return append(b, "null"...), nil
	}
	if err := checkValue(raw); err != nil {
		return nil, err
	}
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case ' ', '\t', '\n', '\r':
		case '"':
			b, i = appendCompactString(b, raw, i)
		default:
			b = append(b, c)
		}
	}
	return b, nil
}

// checkValue reports an error unless data is one JSON value between
// optional white space.
func checkValue(data []byte) error {
	d := decoder{data: data}
	d.space()
	if err := d.skip(); err != nil {
		return err
	}
	d.space()
	if d.off < len(data) {
		return d.syntaxError()
	}
	return nil
}

// appendCompactString appends the JSON string that starts at raw[i], as
// appendCompact appends it, and returns the offset of its closing quote.
// raw is valid JSON (see checkValue). Escapes are kept as they are
// written, and invalid UTF-8 as it is, as Marshal keeps them.
func appendCompactString(b, raw []byte, i int) ([]byte, int) {
	b = append(b, '"')
	for i++; ; i++ {
		switch c := raw[i]; {
		case c == '"':
			return append(b, '"'), i
		case c == '\\':
			b = append(b, c, raw[i+1])
			i++
		case c == '<' || c == '>' || c == '&':
			b = appendUnicodeEscape(b, c)
		case isLineSeparator(raw[i:]):
			b = append(b, `\u202`...)
			b = append(b, hex[raw[i+2]&0xF])
			i += 2
		default:
			b = append(b, c)
		}
	}
}

// isLineSeparator reports whether b starts with U+2028 or U+2029 in
// UTF-8, which Marshal escapes for JavaScript, where they end lines.
func isLineSeparator(b []byte) bool {
	return len(b) >= 3 && b[0] == 0xE2 && b[1] == 0x80 && b[2]&^1 == 0xA8
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as Marshal escapes it:
// ", \ and control characters, HTML's <, > and &, U+2028 and U+2029, and
// invalid UTF-8 as U+FFFD.
func appendString[S ~string](b []byte, s S) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if !verbatim[c] {
				b = append(b, s[start:i]...)
				b = appendEscape(b, c)
				start = i + 1
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:]))
		if esc := runeEscape(r, size); esc != "" {
			b = append(b, s[start:i]...)
			b = append(b, esc...)
			start = i + size
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// verbatim tells the ASCII bytes that Marshal writes as they are in a
// string: all but ", \, control characters and HTML's <, > and &.
var verbatim = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendEscape appends the escape of c, an ASCII byte that is not
// verbatim: a letter escape where JSON has one, else \u00XX.
func appendEscape(b []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(b, '\\', c)
	case '\b':
		return append(b, `\b`...)
	case '\f':
		return append(b, `\f`...)
	case '\n':
		return append(b, `\n`...)
	case '\r':
		return append(b, `\r`...)
	case '\t':
		return append(b, `\t`...)
	}
	return appendUnicodeEscape(b, c)
}

// appendUnicodeEscape appends c as a \u escape.
func appendUnicodeEscape(b []byte, c byte) []byte {
	return append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
}

// runeEscape returns the escape that Marshal writes for r, decoded from
// size bytes that are not ASCII, or "" if it writes the bytes as they are:
// \ufffd for invalid UTF-8, and \u2028 and \u2029, which end lines in
// JavaScript.
func runeEscape(r rune, size int) string {
	switch {
	case r == utf8.RuneError && size == 1:
		return `\ufffd`
	case r == '\u2028':
		return `\u2028`
	case r == '\u2029':
		return `\u2029`
	}
	return ""
}
