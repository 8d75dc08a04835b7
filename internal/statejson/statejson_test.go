package statejson

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// decodeReflect is Decode as it was with encoding/json's Unmarshal: the
// oracle of FuzzDecode, and the baseline of BenchmarkDecode.
func decodeReflect(data []byte) (store.State, error) {
	var st store.State
	if err := json.Unmarshal(data, &st); err != nil {
		return store.State{}, fmt.Errorf("%w: state: %w", store.ErrCorrupt, err)
	}
	if err := st.Validate(); err != nil {
		return store.State{}, fmt.Errorf("%w: %v", store.ErrCorrupt, err) //nolint:errorlint // as Decode
	}
	st = InUTC(st)
	if err := checkYears(st); err != nil {
		return store.State{}, err
	}
	return st, nil
}

// fullState returns a state with every field set: a task failed in its
// second attempt, its steps with sub-steps, progress and errors.
func fullState() store.State {
	at := time.Date(2025, 11, 12, 10, 0, 0, 123456789, time.UTC)
	details := map[string]json.RawMessage{"exception_type": json.RawMessage(`"ConnectionError"`), "retry_after": json.RawMessage(`[1,{"s":2.5e3}]`)}
	return store.State{
		ID: "doc-1", Incarnation: "k3x9", CorrelationID: "req-7 <&>", Status: store.StatusFailed,
		Kind: "document", Labels: map[string]string{"project_id": "p1", "tenant": "acme"},
		CreatedAt: at, StartedAt: at.Add(time.Second), UpdatedAt: at.Add(3 * time.Second),
		CompletedAt: at.Add(3 * time.Second), LeaseUntil: at.Add(time.Minute),
		ErrorMessage: "Vectorization failed ✗ \"quoted\"\n\u2028", ErrorDetails: details,
		Steps: []store.Step{
			{Name: "parse", Status: store.StepSuccess, StartedAt: at, CompletedAt: at.Add(time.Second), Attempt: 1,
				Progress: store.Progress{Done: 3, Total: 3, Message: "pages"},
				SubSteps: []store.SubStep{
					{Name: "ocr", Status: store.StepSuccess, StartedAt: at, CompletedAt: at.Add(time.Millisecond)},
					{Name: "layout", Status: store.StepFailed, StartedAt: at, Error: "timeout"},
					{Name: "tables", Status: store.StepSkipped},
				}},
			{Name: "embed", Status: store.StepFailed, StartedAt: at.Add(time.Second), Error: "refused", Attempt: 3,
				Progress: store.Progress{Done: 1}},
			{Name: "index", Status: store.StepPending},
		},
		Progress:          store.Progress{Done: 2, Total: 3, Message: "embedding"},
		Result:            map[string]json.RawMessage{"entities_extracted": json.RawMessage(`42`), "summary": json.RawMessage(`{"a":null,"b":[true,false]}`)},
		CancelRequestedAt: at.Add(2 * time.Second), CancelReason: "user",
		Attempt: 2,
		PreviousAttempts: []store.Attempt{
			{Attempt: 1, Status: store.StatusFailed, StartedAt: at.Add(-time.Hour), CompletedAt: at.Add(-time.Minute),
				ErrorMessage: "OOM", ErrorDetails: details},
			{Attempt: 2, Status: store.StatusCanceled},
		},
		Version: 7,
	}
}

// finishedState returns a task that succeeded after five steps, with
// results: a state of the benchmarks.
func finishedState() store.State {
	at := time.Date(2025, 11, 12, 10, 0, 0, 123456789, time.UTC)
	st := store.State{
		ID: "5f0c1e2a-4b7d-4e8f-9a10-b2c3d4e5f607", Incarnation: "01JCX8Z7Q4", CorrelationID: "req-8f3a",
		Status: store.StatusSuccess, Kind: "document", Labels: map[string]string{"project_id": "p42"},
		CreatedAt: at, StartedAt: at.Add(time.Second), Attempt: 1,
		Result: map[string]json.RawMessage{
			"entities_extracted": json.RawMessage(`42`),
			"vector_indexed":     json.RawMessage(`true`),
			"document_id":        json.RawMessage(`"d-9001"`),
		},
	}
	for i, name := range []string{"file_node_creation", "memgraph_storage", "embedding_generation", "qdrant_indexing", "freshness_analysis"} {
		start := at.Add(time.Duration(i+1) * 1234567 * time.Microsecond)
		st.Steps = append(st.Steps, store.Step{Name: name, Status: store.StepSuccess, StartedAt: start,
			CompletedAt: start.Add(987654321 * time.Nanosecond), Attempt: 1})
	}
	st.UpdatedAt = at.Add(8 * time.Second)
	st.CompletedAt = st.UpdatedAt
	st.Progress = store.Progress{Done: 5, Total: 5, Message: "done"}
	st.Version = 13
	return st
}

// seedStates returns the JSON of states as stores keep them, and variants
// that only a hand or an earlier release would write.
func seedStates(tb testing.TB) [][]byte {
	tb.Helper()
	var seeds [][]byte
	for _, st := range []store.State{fullState(), finishedState()} {
		data, err := json.Marshal(st)
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, data)
	}
	for _, s := range []string{
		`{"id":"doc-1","status":"pending","created_at":"2025-11-12T10:00:00Z","updated_at":"2025-11-12T10:00:00Z","attempt":1,"version":1}`,
		` {"id":"doc-1","status":"pending","version":1,"future_field":{"x":[1,2,{"y":null}]},"f":-0.5e-3,"g":true} ` + "\n",
		`{"id":"doc-1","status":"running","version":1,"created_at":"2025-11-12T11:00:00+01:00","lease_until":"2025-11-12T11:01:00-04:30","steps":[{"name":"a","status":"running","started_at":"2025-11-12T11:00:00+01:00"}]}`,
		`{"id":"doc-1","status":"pending","version":1,"result":{"x":{ "a" : "<b>" }, "y" : [ 1 , 2 ] }}`,
		`{"id":"doc-1","status":"pending","version":1,"created_at":"9999-12-31T23:59:59-01:00"}`,
		`{"id":"doc-1","status":"pending","version":1,"created_at":"0000-01-01T00:30:00+01:00"}`,
		`{"id":"doc-1","status":"pending","version":1,"created_at":"2025-11-12T10:00:00\u005a"}`,
		`{"id":"doc-1","status":"pending","version":1,"created_at":"yesterday"}`,
		`{"id":"doc-1","status":"pending","version":1,"created_at":20251112}`,
		`{"id":"doc-1","status":"pending","version":"1"}`,
		`{"id":"doc-1","status":"pending","version":1.0}`,
		`{"id":"doc-1","status":"pending","version":1e2}`,
		`{"id":"doc-1","status":"pending","version":9223372036854775807,"attempt":-9223372036854775808}`,
		`{"id":"doc-1","status":"pending","version":9223372036854775808}`,
		`{"id":"doc-1","status":"pending","version":01}`,
		`{"id":"doc-1","status":"pending","version":-0}`,
		`{"id":"doc-1","status":"pending","version":1,}`,
		`{"id":"doc-1","status":"pending","version":1}x`,
		`{"id":"doc-1","status":"pending","version":1}{}`,
		`{"id":"doc-1",`,
		`{"id":"doc-1" "status":"pending"}`,
		`null`, `[]`, `""`, ``, ` `, `{}`, `{"id":null,"version":null}`,
		`{"ID":"doc-1","Status":"pending","VERSION":1,"\u212aind":"document","ſtatus":"running","versıon":2}`,
		`{"id":"doc-1","id":"doc-2","status":"pending","version":1,"version":null}`,
		`{"id":"doc-1","status":"pending","version":1,"labels":{"a":"x"},"labels":{"b":"y"},"labels":{"a":null}}`,
		`{"id":"doc-1","status":"pending","version":1,"labels":{"a":"x"},"labels":null}`,
		`{"id":"doc-1","status":"pending","version":1,"labels":{}}`,
		`{"id":"doc-1","status":"pending","version":1,"labels":{"a":1}}`,
		`{"id":"doc-1","status":"pending","version":1,"result":{"a":null,"a":"x","b":{}}}`,
		`{"id":"doc-1","status":"pending","version":1,"result":null,"error_details":{}}`,
		`{"id":"doc-1","status":"pending","version":1,"steps":[{"name":"a","status":"running","attempt":2},{"name":"b","status":"pending"},{"name":"c","status":"pending"}],"steps":[{"status":"success"}],"steps":[null,{},{"name":"d"},{}]}`,
		`{"id":"doc-1","status":"pending","version":1,"steps":[{"name":"a","status":"running"}],"steps":[]}`,
		`{"id":"doc-1","status":"pending","version":1,"steps":[null]}`,
		`{"id":"doc-1","status":"pending","version":1,"steps":[{"name":"a","status":"running","sub_steps":[{"name":"x","status":"running"}],"sub_steps":[{"error":"e"}]}]}`,
		`{"id":"doc-1","status":"pending","version":1,"steps":{}}`,
		`{"id":"doc-1","status":"pending","version":1,"steps":[1]}`,
		`{"id":"doc-1","status":"pending","version":1,"steps":[{"name":"a","status":"?"}]}`,
		`{"id":"doc-1","status":"pending","version":1,"progress":{"done":1},"progress":{"total":2},"progress":null}`,
		`{"id":"doc-1","status":"pending","version":1,"progress":[]}`,
		`{"id":"doc-1","status":"pending","version":1,"previous_attempts":[{"attempt":1,"status":"failed","error_details":{"k":[]}}]}`,
		`{"id":"d\u006fc-1","status":"pend\u0069ng","version":1,"error_message":"\ud83d\ude00 \ud83d \ude00 \udc00\ud800\u0041 \"\\\/\b\f\n\r\t"}`,
		"{\"id\":\"doc-1\",\"status\":\"pending\",\"version\":1,\"error_message\":\"\xff\xc3(\xed\xa0\x80 ok \xe2\x80\xa8\"}",
		"{\"id\":\"doc-1\",\"status\":\"pending\",\"version\":1,\"error_message\":\"tab\there\"}",
		`{"id":"doc-1","status":"pending","version":1,"error_message":"\x"}`,
		`{"id":"doc-1","status":"pending","version":1,"error_message":"\u12"}`,
		`{"id":"doc-1","status":"pending","version":1,"error_message":"\'"}`,
		`{"id":"doc-1","status":"pending","version":1,"x":tru}`,
		`{"id":"doc-1","status":"pending","version":1,"x":nul}`,
		`{"id":"doc-1","status":"pending","version":1,"x":[1,]}`,
		`{"id":"doc-1","status":"pending","version":1,"x":[,1]}`,
		`{"id":"doc-1","status":"pending","version":1,"x":{,}}`,
		`{"id":"doc-1","status":"pending","version":1,"x":-}`,
		`{"id":"doc-1","status":"pending","version":1,"x":1.}`,
		`{"id":"doc-1","status":"pending","version":1,"x":1e+}`,
		`{"id":"doc-1","status":"pending","version":1,"x":.5}`,
		`{"id":"doc-1","status":"pending","version":1,"x":+1}`,
		`{"id":"doc-1","status":"pending","version":1,"id":true}`,
		`{"id":"doc-1","status":"pending","version":1,"kind":"bad kind"}`,
		`{"id":"doc-1","status":"pending","version":1,"x":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + `}`,
		`{"id":"doc-1","status":"pending","version":1,"x":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`,
		`{"id":"doc-1","status":"pending","version":1,"result":{"x":` + strings.Repeat(`{"a":`, maxDepth) + `0` + strings.Repeat("}", maxDepth) + `}}`,
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// FuzzDecode checks that Decode accepts and refuses what Unmarshal of
// encoding/json, followed by the checks Decode adds, accepts and refuses,
// and returns the same state. Below those checks, it compares the states
// that both make of any JSON, whether a store could keep it or not.
//
// The seeds run in every go test; go test -run '^$' -fuzz '^FuzzDecode$'
// ./internal/statejson searches for more.
func FuzzDecode(f *testing.F) {
	for _, seed := range seedStates(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want store.State
		wantErr := json.Unmarshal(data, &want)
		got, err := decode(data)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("decode(%q) = %v, json.Unmarshal = %v", data, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("decode(%q) =\n%#v\njson.Unmarshal =\n%#v", data, got, want)
		}

		want, wantErr = decodeReflect(data)
		got, err = Decode(data)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("Decode(%q) = %v, with encoding/json %v", data, err, wantErr)
		}
		if err != nil && !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("Decode(%q) = %v, not wrapping store.ErrCorrupt", data, err)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode(%q) =\n%#v\nwith encoding/json\n%#v", data, got, want)
		}
	})
}

// encodeReflect is Encode as it was with encoding/json's Marshal: the
// oracle of FuzzEncode, and the baseline of BenchmarkEncode.
func encodeReflect(st store.State) ([]byte, error) {
	return json.Marshal(InUTC(st))
}

// FuzzEncode checks that Encode writes the bytes that encoding/json's
// Marshal writes, and fails where it fails, for the states that
// Unmarshal makes of the fuzzed JSON (whether or not a store could keep
// them), with fuzzed strings, raw values and times put in every kind of
// field those can be.
//
// The seeds run in every go test; go test -run '^$' -fuzz '^FuzzEncode$'
// ./internal/statejson searches for more.
func FuzzEncode(f *testing.F) {
	for i, seed := range seedStates(f) {
		f.Add(seed, "x <&> \u2028\xff\x01", []byte(`{ "a" : [1, "<\u2028>"] }`), int64(i)*1e17, int64(i)*1e7+1, int32(i-3)*3600)
	}
	f.Add([]byte(`{}`), "", []byte(nil), int64(0), int64(0), int32(0))
	f.Add([]byte(`{}`), "\x7f\"\\\b\f\n\r\t/", []byte{}, int64(-62135596800), int64(0), int32(0))
	f.Add([]byte(`{}`), "\xe2\x80\xa9\xe2\x80", []byte("\"\xe2\x80\xa8\xed\xa0\x80\" "), int64(253402300800), int64(0), int32(0))
	f.Add([]byte(`{}`), "a", []byte(`1 2`), int64(-62167219200), int64(-1), int32(-60))
	f.Add([]byte(`{}`), "a", []byte(`{"a":1`), int64(-62167219200), int64(0), int32(86399))
	f.Fuzz(func(t *testing.T, data []byte, s string, raw []byte, sec, nsec int64, offset int32) {
		var st store.State
		_ = json.Unmarshal(data, &st) // whatever it made before an error
		at := time.Unix(sec, nsec).In(time.FixedZone("", int(offset)))
		st.ID, st.CorrelationID, st.ErrorMessage = s, s, s
		st.Status = store.Status(s)
		st.LeaseUntil, st.CancelRequestedAt = at, at
		if st.Labels == nil {
			st.Labels = map[string]string{}
		}
		st.Labels[s] = s
		st.Result = map[string]json.RawMessage{s: raw, "n": nil}
		st.Steps = append(st.Steps, store.Step{Name: s, Status: store.StepStatus(s), StartedAt: at,
			Progress: store.Progress{Message: s}, SubSteps: []store.SubStep{{Name: s, Error: s, CompletedAt: at}}})
		st.PreviousAttempts = append(st.PreviousAttempts, store.Attempt{ErrorMessage: s, StartedAt: at,
			ErrorDetails: map[string]json.RawMessage{s: raw}})

		want, wantErr := encodeReflect(st)
		got, err := Encode(st)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("Encode = %q, %v; json.Marshal = %q, %v", got, err, want, wantErr)
		}
		if string(got) != string(want) {
			t.Fatalf("Encode =\n%s\njson.Marshal =\n%s", got, want)
		}
	})
}
