package redisstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// FuzzDecodeState feeds decodeState the fields of a task's hash as anyone
// with redis-cli could have left them, and checks what the package doc
// promises of data it reads back: it never panics; it either refuses the
// data with an error wrapping store.ErrCorrupt, or returns a state of the
// task asked for, at the version of the version field and the incarnation
// of the inc field, that passes Validate, has every time in UTC, and
// survives being written again (encodeState) and read back (decodeState)
// unchanged.
//
// The seed corpus (below and in testdata/fuzz/FuzzDecodeState) runs in
// every go test; go test -run '^$' -fuzz '^FuzzDecodeState$' ./redisstore
// searches for more.
func FuzzDecodeState(f *testing.F) {
	at := time.Date(2025, 11, 12, 10, 0, 0, 123456789, time.UTC)
	full := store.State{
		ID: "doc-1", CorrelationID: "req-7", Status: store.StatusFailed,
		CreatedAt: at, StartedAt: at.Add(time.Second), UpdatedAt: at.Add(3 * time.Second),
		CompletedAt: at.Add(3 * time.Second), LeaseUntil: at.Add(time.Minute),
		ErrorMessage: "Vectorization failed ✗",
		ErrorDetails: map[string]json.RawMessage{"exception_type": json.RawMessage(`"ConnectionError"`)},
		Steps: []store.Step{
			{Name: "parse", Status: store.StepSuccess, StartedAt: at, CompletedAt: at.Add(time.Second), Attempt: 1},
			{Name: "embed", Status: store.StepFailed, StartedAt: at.Add(time.Second), Error: "refused", Attempt: 3},
			{Name: "index", Status: store.StepSkipped},
		},
		Progress: store.Progress{Done: 2, Total: 3, Message: "embedding"},
		Result:   map[string]json.RawMessage{"entities_extracted": json.RawMessage(`42`)},
		Attempt:  2, Version: 7,
	}
	written, err := encodeState(full)
	if err != nil {
		f.Fatal(err)
	}
	full.Incarnation = "k3x9"
	withInc, err := encodeState(full)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []struct {
		id, version, state, inc, announced string
		hasVersion, hasState, hasAnnounced bool
	}{
		{"doc-1", "7", string(written), "", "", true, true, false},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","created_at":"2025-11-12T10:00:00Z","updated_at":"2025-11-12T10:00:00Z","attempt":1,"version":1}`, "", "", true, true, false},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","version":1,"future_field":{"x":[1,2]}}`, "", "", true, true, false},
		{"doc-1", "1", `{"id":"doc-1","status":"running","version":1,"created_at":"2025-11-12T11:00:00+01:00","lease_until":"2025-11-12T11:01:00+01:00","steps":[{"name":"a","status":"running","started_at":"2025-11-12T11:00:00+01:00"}]}`, "", "", true, true, false},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","version":1,"result":{"x":{ "a" : "<b>" }}}`, "", "", true, true, false},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","version":1,"created_at":"9999-12-31T23:59:59-01:00"}`, "", "", true, true, false},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","version":1}`, "", "", false, true, false},
		{"doc-1", "1", "", "", "", true, false, false},
		{"doc-1", "x", `{"id":"doc-1","status":"pending","version":1}`, "", "", true, true, false},
		{"doc-1", "99999999999999999999", `{"id":"doc-1","status":"pending","version":1}`, "", "", true, true, false},
		{"doc-1", "2", `{"id":"doc-1","status":"pending","version":1}`, "", "", true, true, false},
		{"doc-1", "0", `{"id":"doc-1","status":"pending","version":0}`, "", "", true, true, false},
		{"doc-1", "1", `{"id":"doc-2","status":"pending","version":1}`, "", "", true, true, false},
		{"doc-1", "1", `{"id":"doc-1","status":"lost","version":1}`, "", "", true, true, false},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","version":1,"steps":[{"name":"a","status":"?"}]}`, "", "", true, true, false},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","version":1,"created_at":"yesterday"}`, "", "", true, true, false},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","version":"1"}`, "", "", true, true, false},
		{"doc-1", "1", `{"id":"doc-1",`, "", "", true, true, false},
		{"doc-1", "1", `null`, "", "", true, true, false},
		{"doc-1", "1", `[]`, "", "", true, true, false},
		{"a{b}", "1", `{"id":"a{b}","status":"pending","version":1}`, "", "", true, true, false},
		{"", "1", `{"status":"pending","version":1}`, "", "", true, true, false},
		{"doc-1", "7", string(withInc), "k3x9", "7", true, true, true},
		{"doc-1", "7", string(withInc), "k3x9", "", true, true, false},
		{"doc-1", "7", string(withInc), "", "", true, true, false},
		{"doc-1", "7", string(withInc), "other", "7", true, true, true},
		{"doc-1", "7", string(written), "k3x9", "7", true, true, true},
		{"doc-1", "7", string(withInc), "k3x9", "8", true, true, true},
		{"doc-1", "7", string(withInc), "k3x9", "-1", true, true, true},
		{"doc-1", "7", string(withInc), "k3x9", "six", true, true, true},
		{"doc-1", "7", string(withInc), "k3x9", "", true, true, true},
	} {
		f.Add(seed.id, seed.version, seed.state, seed.inc, seed.announced, seed.hasVersion, seed.hasState, seed.hasAnnounced)
	}

	var decoded hashCache // one for every input, as a store has
	f.Fuzz(func(t *testing.T, id, version, state, inc, announced string, hasVersion, hasState, hasAnnounced bool) {
		fields := map[string]string{"put_id": "p", "unknown": "ignored"}
		if hasVersion {
			fields[fieldVersion] = version
		}
		if hasState {
			fields[fieldState] = state
		}
		if hasAnnounced {
			fields[fieldAnnounced] = announced
		}
		if inc != "" { // no inc field reads as ""
			fields[fieldIncarnation] = inc
		}
		st, err := decodeState(&decoded, id, fields)
		if err != nil {
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("decodeState = %v, want an error wrapping store.ErrCorrupt", err)
			}
			return
		}
		requireDecoded(t, id, version, inc, st)
		if again, err := decodeState(&decoded, id, fields); err != nil || !again.Equal(st) {
			t.Fatalf("the same fields read again gave %+v, %v; want %+v", again, err, st)
		}
		requireRoundTrip(t, st)
	})
}

// requireDecoded fails t unless st, which decodeState returned for task
// id from a hash with the fields version and inc, passes Validate, is of
// task id, at that version and incarnation, and has every time in UTC.
func requireDecoded(t *testing.T, id, version, inc string, st store.State) {
	if err := st.Validate(); err != nil {
		t.Fatalf("decodeState returned a state Validate refuses: %v", err)
	}
	if st.ID != id || st.Incarnation != inc {
		t.Fatalf("decodeState(%q) of incarnation %q returned task %q of incarnation %q", id, inc, st.ID, st.Incarnation)
	}
	if strconv.FormatInt(st.Version, 10) != normalizeInt(t, version) {
		t.Fatalf("version field %q, state version %d", version, st.Version)
	}
	requireUTC(t, st)
}

// requireRoundTrip fails t unless st, which decodeState returned, is
// written (encodeState) and read back (decodeState) unchanged, and
// encodes the same once it has.
func requireRoundTrip(t *testing.T, st store.State) {
	again, err := encodeState(st)
	if err != nil {
		t.Fatalf("a state decodeState accepted cannot be written again: %v", err)
	}
	fields := map[string]string{fieldVersion: strconv.FormatInt(st.Version, 10), fieldState: string(again)}
	if st.Incarnation != "" {
		fields[fieldIncarnation] = st.Incarnation
	}
	back, err := decodeState(new(hashCache), st.ID, fields)
	if err != nil {
		t.Fatalf("a re-encoded state does not decode: %v\n%s", err, again)
	}
	if want := canonical(st); !want.Equal(back) {
		t.Fatalf("round trip changed the state:\nbefore %+v\nafter  %+v", want, back)
	}
	if third, err := encodeState(back); err != nil || string(third) != string(again) {
		t.Fatalf("encoding is not stable after one round trip (%v):\n%s\n%s", err, again, third)
	}
	requireCompactRoundTrip(t, st)
}

// requireCompactRoundTrip fails t unless st, which decodeState returned,
// is written in the compact form (compactFields) and read back
// (decodeState) unchanged, and written the same once it has; a state
// with a time the form cannot hold is skipped, as Put writes it as JSON.
func requireCompactRoundTrip(t *testing.T, st store.State) {
	compact, ok := compactFields(st)
	if !ok {
		return
	}
	back, err := decodeState(new(hashCache), st.ID, compactHash(st, compact))
	if err != nil {
		t.Fatalf("a state in the compact form does not decode: %v\n%q", err, compact)
	}
	if want := canonical(st); !want.Equal(back) {
		t.Fatalf("the compact round trip changed the state:\nbefore %+v\nafter  %+v\n%q", want, back, compact)
	}
	if again, ok := compactFields(back); !ok || fmt.Sprint(again) != fmt.Sprint(compact) {
		t.Fatalf("the compact form is not stable after one round trip:\n%q\n%q", compact, again)
	}
	for i := 0; i < len(compact); i += 2 {
		name, value := compact[i].(string), compact[i+1].(string)
		if value == "" {
			t.Fatalf("field %q is written empty: an empty field and none must be the same", name)
		}
	}
}

// compactHash returns the fields of a hash that holds st in the compact
// form, whose fields and values are compact.
func compactHash(st store.State, compact []any) map[string]string {
	hash := map[string]string{fieldVersion: strconv.FormatInt(st.Version, 10)}
	if st.Incarnation != "" {
		hash[fieldIncarnation] = st.Incarnation
	}
	for i := 0; i < len(compact); i += 2 {
		hash[compact[i].(string)] = compact[i+1].(string)
	}
	return hash
}

// FuzzDecodeCompact feeds decodeState hashes in the compact form, one
// "field=value" a line, and checks what FuzzDecodeState checks: no panic,
// and either an error wrapping store.ErrCorrupt or a state of the task
// asked for, at the version of the version field, that passes Validate,
// is in UTC and survives being written and read back in both forms.
func FuzzDecodeCompact(f *testing.F) {
	at := time.Date(2025, 11, 12, 10, 0, 0, 123456789, time.UTC)
	full := store.State{
		ID: "doc-1", Incarnation: "k3x9", CorrelationID: "req-7", Status: store.StatusFailed, Kind: "document",
		Labels:    map[string]string{"project_id": "p-1"},
		CreatedAt: at, StartedAt: at.Add(time.Second), UpdatedAt: at.Add(3 * time.Second),
		CompletedAt: at.Add(3 * time.Second), LeaseUntil: at.Add(time.Minute), CancelRequestedAt: at.Add(2 * time.Second),
		ErrorMessage: "Vectorization failed ✗", CancelReason: "user",
		ErrorDetails: map[string]json.RawMessage{"exception_type": json.RawMessage(`"ConnectionError"`)},
		Steps: []store.Step{
			{Name: "parse it", Status: store.StepSuccess, StartedAt: at.Add(-time.Second), CompletedAt: at.Add(time.Second), Attempt: 1},
			{Name: "embed", Status: store.StepFailed, StartedAt: at.Add(time.Second), Error: "refused", Attempt: 3,
				Progress: store.Progress{Done: 1, Total: 2}, SubSteps: []store.SubStep{{Name: "a", Status: store.StepFailed, StartedAt: at}}},
			{Name: "index", Status: store.StepSkipped},
		},
		Progress:         store.Progress{Done: 2, Total: 3, Message: "embedding"},
		Result:           map[string]json.RawMessage{"entities_extracted": json.RawMessage(`42`)},
		PreviousAttempts: []store.Attempt{{Attempt: 1, Status: store.StatusFailed, StartedAt: at, CompletedAt: at, ErrorMessage: "x"}},
		Attempt:          2, Version: 7,
	}
	compact, ok := compactFields(full)
	if !ok {
		f.Fatal("the seed state has no compact form")
	}
	var lines []string
	for i := 0; i < len(compact); i += 2 {
		lines = append(lines, fmt.Sprintf("%s=%s", compact[i], compact[i+1]))
	}
	seed := strings.Join(lines, "\n")
	for _, data := range []string{
		seed,
		"status=success",
		"status=success\ncreated_at=-1\nstep:0=pending 0 - - a",
		"status=success\nstep:0=success 1 5 -5 a b c",
		"status=success\nstep:1=success 1 - - a",
		"status=success\nstep:0=success 1 - - a\nstep:01=x",
		"status=success\nstep:0:error=no line",
		"status=success\nstep:0=success one - - a",
		"status=success\nstep:0=success 1 x - a",
		"status=success\nstep:0=done 1 - - a",
		"status=success\ncreated_at=9223372036854775807\nstep:0=success 1 9223372036854775807 - a",
		"status=paused",
		"status=success\nattempt=two",
		"status=success\ncreated_at=yesterday",
		"status=success\nresult:x={",
		"status=success\nresult:x={ \"a\" : \"<b>\" }",
		"status=success\nprogress={\"done\":-1}",
		"status=success\nprevious_attempts=[{\"status\":\"lost\"}]",
		"status=success\nlabel:bad key=v",
		"status=success\nkind=" + strings.Repeat("k", 300),
	} {
		f.Add("doc-1", "7", "k3x9", data)
	}
	f.Fuzz(func(t *testing.T, id, version, inc, data string) {
		fields := map[string]string{fieldVersion: version}
		if inc != "" {
			fields[fieldIncarnation] = inc
		}
		for line := range strings.SplitSeq(data, "\n") {
			name, value, _ := strings.Cut(line, "=")
			fields[name] = value
		}
		delete(fields, fieldState) // a state field chooses the JSON form
		st, err := decodeState(new(hashCache), id, fields)
		if err != nil {
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("decodeState = %v, want an error wrapping store.ErrCorrupt", err)
			}
			return
		}
		requireDecoded(t, id, version, inc, st)
		requireRoundTrip(t, st)
	})
}

// TestDecodedTimesAreUTC checks the promise of the package doc that stored
// times, and so times read back, are in UTC, for every time of a state.
func TestDecodedTimesAreUTC(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	at := time.Date(2025, 11, 12, 11, 0, 0, 0, cet)
	st := store.State{
		ID: "doc-1", Status: store.StatusRunning, CreatedAt: at, StartedAt: at, UpdatedAt: at,
		LeaseUntil: at.Add(time.Minute), CancelRequestedAt: at, Attempt: 2, Version: 1,
		Steps:            []store.Step{{Name: "a", Status: store.StepRunning, StartedAt: at, Attempt: 1}},
		PreviousAttempts: []store.Attempt{{Attempt: 1, Status: store.StatusFailed, StartedAt: at, CompletedAt: at}},
	}
	data, err := encodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeState(new(hashCache), "doc-1", map[string]string{fieldVersion: "1", fieldState: string(data)})
	if err != nil {
		t.Fatal(err)
	}
	requireUTC(t, got)
	if !got.Equal(st) {
		t.Fatalf("the state changed: %+v", got)
	}
}

// requireUTC fails t unless every time of st is in UTC: it visits every
// time.Time in st, so that a time added to store.State is checked too.
func requireUTC(t *testing.T, st store.State) {
	t.Helper()
	var visit func(path string, v reflect.Value)
	visit = func(path string, v reflect.Value) {
		switch {
		case v.Type() == reflect.TypeFor[time.Time]():
			if tm := v.Interface().(time.Time); tm.Location() != time.UTC {
				t.Errorf("%s is %v, in %q, not in UTC", path, tm, tm.Location())
			}
		case v.Kind() == reflect.Struct:
			for i := range v.NumField() {
				visit(path+"."+v.Type().Field(i).Name, v.Field(i))
			}
		case v.Kind() == reflect.Slice:
			for i := range v.Len() {
				visit(fmt.Sprintf("%s[%d]", path, i), v.Index(i))
			}
		}
	}
	visit("State", reflect.ValueOf(st))
}

// normalizeInt returns the decimal form of the integer s, which
// decodeState accepted as a version, as strconv.ParseInt reads it.
func normalizeInt(t *testing.T, s string) string {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("decodeState accepted the version field %q: %v", s, err)
	}
	return strconv.FormatInt(n, 10)
}

// canonical returns st with its raw JSON values in the form encodeState
// writes them (compact, HTML characters escaped): hand-written JSON such as
// { "a" : 1 } reads back as {"a":1} once written again, which is the same
// value.
func canonical(st store.State) store.State {
	st = st.Clone()
	for _, m := range []map[string]json.RawMessage{st.ErrorDetails, st.Result} {
		for k, v := range m {
			if b, err := json.Marshal(v); err == nil {
				m[k] = b
			}
		}
	}
	return st
}

// TestCompactFieldsRefuse checks that a state the compact form cannot
// hold, or that does not encode, is left to the JSON form, which keeps
// it or reports why, and never makes compactFields panic.
func TestCompactFieldsRefuse(t *testing.T) {
	at := time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC)
	for name, edit := range map[string]func(*store.State){
		"a time before 1678":               func(st *store.State) { st.CompletedAt = time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC) },
		"a step too far from the creation": func(st *store.State) { st.CreatedAt = time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC) },
		"a result that is not JSON":        func(st *store.State) { st.Result = map[string]json.RawMessage{"x": json.RawMessage(`{`)} },
		"an earlier attempt's bad details": func(st *store.State) {
			st.PreviousAttempts[0].ErrorDetails = map[string]json.RawMessage{"x": json.RawMessage(`{`)}
		},
		"a sub-step in a year JSON lacks": func(st *store.State) {
			st.Steps[0].SubSteps[0].StartedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
		},
	} {
		st := store.State{
			ID: "doc-1", Status: store.StatusSuccess, CreatedAt: at, UpdatedAt: at, Version: 1,
			Steps: []store.Step{{Name: "a", Status: store.StepSuccess, StartedAt: time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC),
				SubSteps: []store.SubStep{{Name: "b", Status: store.StepSuccess}}}},
			PreviousAttempts: []store.Attempt{{Attempt: 1, Status: store.StatusFailed}},
		}
		if _, ok := compactFields(st); !ok {
			t.Fatalf("the state edited for %q has no compact form before the edit", name)
		}
		edit(&st)
		if f, ok := compactFields(st); ok {
			t.Errorf("%s: compactFields = %q, want false", name, f)
		}
	}
}
