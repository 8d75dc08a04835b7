package tracker

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"unicode"
	"unicode/utf8"

	"github.com/taskstatus/taskstatus/store"
)

// Limits on what a task records. See the package doc.
const (
	MaxSteps       = 256      // steps per task
	MaxStepNameLen = 128      // bytes per step name
	MaxMessageLen  = 4 << 10  // bytes per error or progress message
	MaxFieldsSize  = 64 << 10 // bytes of encoded error details, and of result fields
)

// TruncatedMarker ends a message cut to MaxMessageLen.
const TruncatedMarker = "…[truncated]"

// DetailsTruncatedKey is the error detail that replaces details too large
// to keep; its value says how large they were.
const DetailsTruncatedKey = "details_truncated"

// ExceptionTypeKey is the error detail that names the type of the error a
// task or step failed with, as the origin service's "exception_type" does.
const ExceptionTypeKey = "exception_type"

// truncate cuts s to at most MaxMessageLen bytes on a character boundary,
// ending it with TruncatedMarker when it cuts.
func truncate(s string) string {
	if len(s) <= MaxMessageLen {
		return s
	}
	cut := MaxMessageLen - len(TruncatedMarker)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + TruncatedMarker
}

// message returns err's message for the record, or def when err is nil.
func message(err error, def string) string {
	if err == nil {
		return def
	}
	return truncate(err.Error())
}

// checkStepName reports whether name can name a step.
func checkStepName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty step name", store.ErrInvalidInput)
	case len(name) > MaxStepNameLen:
		return fmt.Errorf("%w: step name of %d bytes (%d allowed)", store.ErrTooLarge, len(name), MaxStepNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: step name is not UTF-8", store.ErrInvalidInput)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: step name has unprintable %U", store.ErrInvalidInput, r)
		}
	}
	return nil
}

// ErrorType names the type of err for the record: the type of the first
// error in its chain that is not a wrapper made by fmt.Errorf, as
// "package.Type" (so "net.OpError", "main.ConnectionError"), or "error"
// for one made by errors.New.
func ErrorType(err error) string {
	for err != nil {
		t := reflect.TypeOf(err)
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch {
		case t.PkgPath() == "fmt":
			if next := errors.Unwrap(err); next != nil {
				err = next
				continue
			}
			return "error"
		case t.PkgPath() == "errors" && t.Name() == "errorString":
			return "error"
		}
		return t.String()
	}
	return ""
}

// encodeFields encodes each value of fields as JSON. A value that cannot
// be encoded is an error, as are fields too large to keep.
func encodeFields(fields map[string]any) (map[string]json.RawMessage, error) {
	encoded := make(map[string]json.RawMessage, len(fields))
	for k, v := range fields {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%w: result field %q: %w", store.ErrInvalidInput, k, err)
		}
		encoded[k] = b
	}
	return mergeFields(nil, encoded)
}

// mergeFields returns a new map of the fields of cur and add, add winning,
// or an error if their encoded size exceeds MaxFieldsSize.
func mergeFields(cur, add map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	next := make(map[string]json.RawMessage, len(cur)+len(add))
	maps.Copy(next, cur)
	maps.Copy(next, add)
	if n := fieldsSize(next); n > MaxFieldsSize {
		return nil, fmt.Errorf("%w: result fields of %d bytes (%d allowed)", store.ErrTooLarge, n, MaxFieldsSize)
	}
	return next, nil
}

// encodeDetails encodes error details for the record. It never fails: a
// value that cannot be encoded is recorded as its fmt form, and details
// larger than MaxFieldsSize are replaced by DetailsTruncatedKey and the
// exception type.
func encodeDetails(err error, details map[string]any) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(details)+1)
	for k, v := range details {
		b, jerr := json.Marshal(v)
		if jerr != nil {
			b, _ = json.Marshal(fmt.Sprint(v))
		}
		out[k] = b
	}
	if _, ok := out[ExceptionTypeKey]; !ok && err != nil {
		out[ExceptionTypeKey], _ = json.Marshal(ErrorType(err))
	}
	if n := fieldsSize(out); n > MaxFieldsSize {
		note, _ := json.Marshal(fmt.Sprintf("%d bytes of details exceeded the %d-byte limit", n, MaxFieldsSize))
		kept := map[string]json.RawMessage{DetailsTruncatedKey: note}
		if et, ok := out[ExceptionTypeKey]; ok && len(et) <= MaxStepNameLen {
			kept[ExceptionTypeKey] = et
		}
		out = kept
	}
	return out
}

func fieldsSize(m map[string]json.RawMessage) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}
