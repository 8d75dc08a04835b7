package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/store"
)

// TestDocumentRoundTrip serves a state whose every field is set, through
// the handler, reads it back with the Client, and checks each field of
// store.State by reflection: a field added to State fails here until the
// document serves it and the Client decodes it.
func TestDocumentRoundTrip(t *testing.T) {
	var want store.State
	fill(t, reflect.ValueOf(&want).Elem(), "State")
	want.ID, want.Status, want.Version = "t 1", store.StatusRunning, 7
	want.Steps[0].Status = store.StepFailed
	want.Steps[0].SubSteps[0].Status = store.StepSuccess
	want.PreviousAttempts[0].Status = store.StatusCanceled
	require.NoError(t, want.Validate())

	f := newFixture(t)
	f.put(t, want)
	mux := http.NewServeMux()
	mux.Handle("GET /docs/{doc}", newHandler(t, f.store, httpapi.WithClock(f.clock),
		httpapi.WithPathValue("doc"), httpapi.WithIDField("doc_id")))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := &httpapi.Client{HTTPClient: srv.Client(), BaseURL: srv.URL, IDField: "doc_id"}

	got, err := client.Get(t.Context(), "/docs/t%201")
	require.NoError(t, err)
	assert.Equal(t, "doc_id", got.IDField)
	assert.False(t, got.Abandoned, "the lease has not ended")
	equalFields(t, reflect.ValueOf(want), reflect.ValueOf(got.State), "State")
	assert.True(t, want.Equal(got.State))

	f.clock.Advance(want.LeaseUntil.Sub(f.clock.Now()) + time.Hour)
	got, err = client.Get(t.Context(), "/docs/t%201")
	require.NoError(t, err)
	assert.True(t, got.Abandoned, "the lease has ended")
}

// fill sets every field of v, a struct, slice, map or scalar, to a value
// that is not zero and differs from field to field.
func fill(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	n := int64(len(path)) // differs enough from field to field
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(t0.Add(time.Duration(n) * time.Hour)))
			return
		}
		for i := range v.NumField() {
			fill(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(t, v.Index(0), path+"[0]")
	case reflect.Map:
		switch v.Type() {
		case reflect.TypeFor[map[string]json.RawMessage]():
			v.Set(reflect.ValueOf(map[string]json.RawMessage{path + "_field": json.RawMessage(fmt.Sprint(n))}))
		case reflect.TypeFor[map[string]string]():
			v.Set(reflect.ValueOf(map[string]string{path + "_key": path + "_value"}))
		default:
			t.Fatalf("%s: fill does not know this map", path)
		}
	case reflect.String:
		v.SetString(path)
	case reflect.Int, reflect.Int64:
		v.SetInt(n)
	case reflect.Bool:
		v.SetBool(true)
	default:
		t.Fatalf("%s: fill does not know kind %s", path, v.Kind())
	}
	require.False(t, v.IsZero(), "%s: left zero", path)
}

// equalFields checks that got has the value of each field of want, times
// as instants, and names the field that differs.
func equalFields(t *testing.T, want, got reflect.Value, path string) {
	t.Helper()
	switch {
	case want.Type() == reflect.TypeFor[time.Time]():
		assert.True(t, want.Interface().(time.Time).Equal(got.Interface().(time.Time)),
			"%s: got %v, want %v", path, got, want)
	case want.Kind() == reflect.Struct:
		for i := range want.NumField() {
			equalFields(t, want.Field(i), got.Field(i), path+"."+want.Type().Field(i).Name)
		}
	case want.Kind() == reflect.Slice && want.Type().Elem().Kind() == reflect.Struct:
		require.Equal(t, want.Len(), got.Len(), "%s: length", path)
		for i := range want.Len() {
			equalFields(t, want.Index(i), got.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		assert.Equal(t, want.Interface(), got.Interface(), "%s: not served or not read back", path)
	}
}

func TestDocumentJSON(t *testing.T) {
	doc := httpapi.Document{
		IDField: "document_id",
		State: store.State{
			ID: "doc-123", Status: store.StatusPending, Attempt: 1, Version: 1,
			CreatedAt: time.Date(2025, 11, 12, 10, 0, 0, 120_000_000, time.FixedZone("CET", 3600)),
			UpdatedAt: time.Date(2025, 11, 12, 9, 0, 0, 999_999, time.UTC),
			Result:    map[string]json.RawMessage{"document_id": json.RawMessage(`"other"`), "html": json.RawMessage(`"<b>&</b>"`)},
		},
	}
	b, err := json.Marshal(doc)
	require.NoError(t, err)
	assert.JSONEq(t, `{"document_id":"doc-123","correlation_id":null,"status":"pending",`+
		`"started_at":null,"completed_at":null,"error_message":null,"error_details":null,"html":"<b>&</b>",`+
		`"pipeline_steps":{},"steps":[],"progress":null,"attempt":1,"version":1,`+
		`"created_at":"2025-11-12T09:00:00.12Z","updated_at":"2025-11-12T09:00:00Z","lease_until":null,`+
		`"abandoned":false,"incarnation":null,"kind":null,"labels":null,"cancel_requested_at":null,"cancel_reason":null,"previous_attempts":[]}`, string(b))

	back := httpapi.Document{IDField: "document_id"}
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, "doc-123", back.ID)
	assert.Equal(t, map[string]json.RawMessage{"html": json.RawMessage(`"\u003cb\u003e\u0026\u003c/b\u003e"`)}, back.Result,
		"json.Marshal escapes the HTML the handler does not")

	for _, bad := range []string{`null`, `[]`, `{"status":"done"}`, `{"status":"running","version":"7"}`, `{"status":"running","started_at":"today"}`} {
		require.Error(t, json.Unmarshal([]byte(bad), &back), bad)
	}
	doc.Result = map[string]json.RawMessage{"broken": json.RawMessage(`{`)}
	_, err = json.Marshal(doc)
	assert.ErrorContains(t, err, `"broken"`)
}
