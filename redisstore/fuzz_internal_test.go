package redisstore

import (
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// FuzzDecodeState feeds decodeState the fields of a task's hash as anyone
// with redis-cli could have left them, and checks what the package doc
// promises of data it reads back: it never panics; it either refuses the
// data with an error wrapping store.ErrCorrupt, or returns a state of the
// task asked for, at the version of the version field, that passes
// Validate, has every time in UTC, and survives being written again
// (encodeState) and read back (decodeState) unchanged.
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
	for _, seed := range []struct {
		id, version, state   string
		hasVersion, hasState bool
	}{
		{"doc-1", "7", string(written), true, true},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","created_at":"2025-11-12T10:00:00Z","updated_at":"2025-11-12T10:00:00Z","attempt":1,"version":1}`, true, true},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","version":1,"future_field":{"x":[1,2]}}`, true, true},
		{"doc-1", "1", `{"id":"doc-1","status":"running","version":1,"created_at":"2025-11-12T11:00:00+01:00","lease_until":"2025-11-12T11:01:00+01:00","steps":[{"name":"a","status":"running","started_at":"2025-11-12T11:00:00+01:00"}]}`, true, true},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","version":1,"result":{"x":{ "a" : "<b>" }}}`, true, true},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","version":1,"created_at":"9999-12-31T23:59:59-01:00"}`, true, true},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","version":1}`, false, true},
		{"doc-1", "1", "", true, false},
		{"doc-1", "x", `{"id":"doc-1","status":"pending","version":1}`, true, true},
		{"doc-1", "99999999999999999999", `{"id":"doc-1","status":"pending","version":1}`, true, true},
		{"doc-1", "2", `{"id":"doc-1","status":"pending","version":1}`, true, true},
		{"doc-1", "0", `{"id":"doc-1","status":"pending","version":0}`, true, true},
		{"doc-1", "1", `{"id":"doc-2","status":"pending","version":1}`, true, true},
		{"doc-1", "1", `{"id":"doc-1","status":"lost","version":1}`, true, true},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","version":1,"steps":[{"name":"a","status":"?"}]}`, true, true},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","version":1,"created_at":"yesterday"}`, true, true},
		{"doc-1", "1", `{"id":"doc-1","status":"pending","version":"1"}`, true, true},
		{"doc-1", "1", `{"id":"doc-1",`, true, true},
		{"doc-1", "1", `null`, true, true},
		{"doc-1", "1", `[]`, true, true},
		{"a{b}", "1", `{"id":"a{b}","status":"pending","version":1}`, true, true},
		{"", "1", `{"status":"pending","version":1}`, true, true},
	} {
		f.Add(seed.id, seed.version, seed.state, seed.hasVersion, seed.hasState)
	}

	f.Fuzz(func(t *testing.T, id, version, state string, hasVersion, hasState bool) {
		fields := map[string]string{"put_id": "p", "unknown": "ignored"}
		if hasVersion {
			fields[fieldVersion] = version
		}
		if hasState {
			fields[fieldState] = state
		}
		st, err := decodeState(id, fields)
		if err != nil {
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("decodeState = %v, want an error wrapping store.ErrCorrupt", err)
			}
			return
		}
		if err := st.Validate(); err != nil {
			t.Fatalf("decodeState returned a state Validate refuses: %v", err)
		}
		if st.ID != id {
			t.Fatalf("decodeState(%q) returned task %q", id, st.ID)
		}
		if strconv.FormatInt(st.Version, 10) != normalizeInt(t, version) {
			t.Fatalf("version field %q, state version %d", version, st.Version)
		}
		requireUTC(t, st)

		again, err := encodeState(st)
		if err != nil {
			t.Fatalf("a state decodeState accepted cannot be written again: %v", err)
		}
		back, err := decodeState(id, map[string]string{fieldVersion: strconv.FormatInt(st.Version, 10), fieldState: string(again)})
		if err != nil {
			t.Fatalf("a re-encoded state does not decode: %v\n%s", err, again)
		}
		if want := canonical(st); !want.Equal(back) {
			t.Fatalf("round trip changed the state:\nbefore %+v\nafter  %+v", want, back)
		}
		if third, err := encodeState(back); err != nil || string(third) != string(again) {
			t.Fatalf("encoding is not stable after one round trip (%v):\n%s\n%s", err, again, third)
		}
	})
}

// TestDecodedTimesAreUTC checks the promise of the package doc that stored
// times, and so times read back, are in UTC, for every time of a state.
func TestDecodedTimesAreUTC(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	at := time.Date(2025, 11, 12, 11, 0, 0, 0, cet)
	st := store.State{
		ID: "doc-1", Status: store.StatusRunning, CreatedAt: at, StartedAt: at, UpdatedAt: at,
		LeaseUntil: at.Add(time.Minute), Attempt: 1, Version: 1,
		Steps: []store.Step{{Name: "a", Status: store.StepRunning, StartedAt: at, Attempt: 1}},
	}
	data, err := encodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeState("doc-1", map[string]string{fieldVersion: "1", fieldState: string(data)})
	if err != nil {
		t.Fatal(err)
	}
	requireUTC(t, got)
	if !got.Equal(st) {
		t.Fatalf("the state changed: %+v", got)
	}
}

// requireUTC fails t unless every time of st is in UTC.
func requireUTC(t *testing.T, st store.State) {
	t.Helper()
	times := map[string]time.Time{
		"created_at": st.CreatedAt, "started_at": st.StartedAt, "updated_at": st.UpdatedAt,
		"completed_at": st.CompletedAt, "lease_until": st.LeaseUntil,
	}
	for _, sp := range st.Steps {
		times["step "+sp.Name+" started_at"] = sp.StartedAt
		times["step "+sp.Name+" completed_at"] = sp.CompletedAt
	}
	for name, tm := range times {
		if tm.Location() != time.UTC {
			t.Errorf("%s is %v, in %q, not in UTC", name, tm, tm.Location())
		}
	}
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
