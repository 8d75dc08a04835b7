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
	var err error
	b = append(b, `{"id":`...)
	b = appendString(b, st.ID)
	if st.Incarnation != "" {
		b = append(b, `,"incarnation":`...)
		b = appendString(b, st.Incarnation)
	}
	if st.CorrelationID != "" {
		b = append(b, `,"correlation_id":`...)
		b = appendString(b, st.CorrelationID)
	}
	b = append(b, `,"status":`...)
	b = appendString(b, st.Status)
	if st.Kind != "" {
		b = append(b, `,"kind":`...)
		b = appendString(b, st.Kind)
	}
	if len(st.Labels) > 0 {
		b = append(b, `,"labels":{`...)
		var keys [store.MaxLabels]string
		for i, k := range sortedKeys(keys[:0], st.Labels) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, st.Labels[k])
		}
		b = append(b, '}')
	}
	b = append(b, `,"created_at":`...)
	if b, err = appendTime(b, st.CreatedAt); err != nil {
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
	if b, err = appendTimeField(b, `,"lease_until":`, st.LeaseUntil); err != nil {
		return nil, err
	}
	if st.ErrorMessage != "" {
		b = append(b, `,"error_message":`...)
		b = appendString(b, st.ErrorMessage)
	}
	if b, err = appendRaws(b, `,"error_details":`, st.ErrorDetails); err != nil {
		return nil, err
	}
	if len(st.Steps) > 0 {
		b = append(b, `,"steps":[`...)
		for i := range st.Steps {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendStep(b, &st.Steps[i]); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	if st.Progress != (store.Progress{}) {
		b = append(b, `,"progress":`...)
		b = appendProgress(b, st.Progress)
	}
	if b, err = appendRaws(b, `,"result":`, st.Result); err != nil {
		return nil, err
	}
	if b, err = appendTimeField(b, `,"cancel_requested_at":`, st.CancelRequestedAt); err != nil {
		return nil, err
	}
	if st.CancelReason != "" {
		b = append(b, `,"cancel_reason":`...)
		b = appendString(b, st.CancelReason)
	}
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(st.Attempt), 10)
	if len(st.PreviousAttempts) > 0 {
		b = append(b, `,"previous_attempts":[`...)
		for i := range st.PreviousAttempts {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendAttempt(b, &st.PreviousAttempts[i]); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, st.Version, 10)
	return append(b, '}'), nil
}

func appendStep(b []byte, sp *store.Step) ([]byte, error) {
	var err error
	b = append(b, `{"name":`...)
	b = appendString(b, sp.Name)
	b = append(b, `,"status":`...)
	b = appendString(b, sp.Status)
	if b, err = appendTimeField(b, `,"started_at":`, sp.StartedAt); err != nil {
		return nil, err
	}
	if b, err = appendTimeField(b, `,"completed_at":`, sp.CompletedAt); err != nil {
		return nil, err
	}
	if sp.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, sp.Error)
	}
	if sp.Attempt != 0 {
		b = append(b, `,"attempt":`...)
		b = strconv.AppendInt(b, int64(sp.Attempt), 10)
	}
	if sp.Progress != (store.Progress{}) {
		b = append(b, `,"progress":`...)
		b = appendProgress(b, sp.Progress)
	}
	if len(sp.SubSteps) > 0 {
		b = append(b, `,"sub_steps":[`...)
		for i := range sp.SubSteps {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendSubStep(b, &sp.SubSteps[i]); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

func appendSubStep(b []byte, sub *store.SubStep) ([]byte, error) {
	var err error
	b = append(b, `{"name":`...)
	b = appendString(b, sub.Name)
	b = append(b, `,"status":`...)
	b = appendString(b, sub.Status)
	if b, err = appendTimeField(b, `,"started_at":`, sub.StartedAt); err != nil {
		return nil, err
	}
	if b, err = appendTimeField(b, `,"completed_at":`, sub.CompletedAt); err != nil {
		return nil, err
	}
	if sub.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, sub.Error)
	}
	return append(b, '}'), nil
}

func appendAttempt(b []byte, a *store.Attempt) ([]byte, error) {
	var err error
	b = append(b, `{"attempt":`...)
	b = strconv.AppendInt(b, int64(a.Attempt), 10)
	b = append(b, `,"status":`...)
	b = appendString(b, a.Status)
	if b, err = appendTimeField(b, `,"started_at":`, a.StartedAt); err != nil {
		return nil, err
	}
	if b, err = appendTimeField(b, `,"completed_at":`, a.CompletedAt); err != nil {
		return nil, err
	}
	if a.ErrorMessage != "" {
		b = append(b, `,"error_message":`...)
		b = appendString(b, a.ErrorMessage)
	}
	if b, err = appendRaws(b, `,"error_details":`, a.ErrorDetails); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

func appendProgress(b []byte, p store.Progress) []byte {
	b = append(b, `{"done":`...)
	b = strconv.AppendInt(b, p.Done, 10)
	if p.Total != 0 {
		b = append(b, `,"total":`...)
		b = strconv.AppendInt(b, p.Total, 10)
	}
	if p.Message != "" {
		b = append(b, `,"message":`...)
		b = appendString(b, p.Message)
	}
	return append(b, '}')
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
	d := decoder{data: raw}
	d.space()
	if err := d.skip(); err != nil {
		return nil, err
	}
	d.space()
	if d.off < len(raw) {
		return nil, d.syntaxError()
	}
	inString := false
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '<' || c == '>' || c == '&':
			b = append(b, `\u00`...)
			b = append(b, hex[c>>4], hex[c&0xF])
		case c == 0xE2 && i+2 < len(raw) && raw[i+1] == 0x80 && raw[i+2]&^1 == 0xA8:
			b = append(b, `\u202`...)
			b = append(b, hex[raw[i+2]&0xF])
			i += 2
		case inString:
			b = append(b, c)
			switch c {
			case '\\':
				i++
				b = append(b, raw[i])
			case '"':
				inString = false
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		default:
			b = append(b, c)
			inString = c == '"'
		}
	}
	return b, nil
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as Marshal escapes it:
// ", \ and control characters, HTML's <, > and &, U+2028 and U+2029, and
// invalid UTF-8 as U+FFFD.
func appendString[S ~string](b []byte, s S) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if ' ' <= c && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, `\b`...)
			case '\f':
				b = append(b, `\f`...)
			case '\n':
				b = append(b, `\n`...)
			case '\r':
				b = append(b, `\r`...)
			case '\t':
				b = append(b, `\t`...)
			default:
				b = append(b, `\u00`...)
				b = append(b, hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:]))
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
