package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// The origin document's status answers, which the handler must reproduce.
const (
	seedSuccess = `{
  "document_id": "doc-123",
  "correlation_id": "abc-456-def",
  "status": "success",
  "started_at": "2025-11-12T10:00:00Z",
  "completed_at": "2025-11-12T10:00:05.234Z",
  "error_message": null,
  "error_details": null,
  "entities_extracted": 42,
  "vector_indexed": true,
  "pipeline_steps": {
    "file_node_creation": "success",
    "memgraph_storage": "success",
    "embedding_generation": "success",
    "qdrant_indexing": "success",
    "freshness_analysis": "success"
  }
}`
	seedFailed = `{
  "document_id": "doc-123",
  "correlation_id": "abc-456-def",
  "status": "failed",
  "started_at": "2025-11-12T10:00:00Z",
  "completed_at": "2025-11-12T10:00:03.128Z",
  "error_message": "Vectorization failed: Connection refused",
  "error_details": {
    "exception_type": "ConnectionError",
    "project_id": "my-project",
    "source_path": "archon://projects/my-project/documents/doc-123"
  },
  "entities_extracted": 42,
  "vector_indexed": false,
  "pipeline_steps": {
    "file_node_creation": "success",
    "memgraph_storage": "success",
    "embedding_generation": "failed",
    "qdrant_indexing": "failed",
    "freshness_analysis": "skipped"
  }
}`
)

func TestSeedDocuments(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string
		work func(ctx context.Context, f *fixture, run *tracker.Run) error
	}{
		{"success", seedSuccess, func(ctx context.Context, f *fixture, run *tracker.Run) error {
			for _, s := range seedSteps {
				if err := errors.Join(run.Apply(ctx, tracker.StartStep(s)), run.Apply(ctx, tracker.SucceedStep(s))); err != nil {
					return err
				}
			}
			f.clock.Advance(5234 * time.Millisecond)
			return run.Apply(ctx,
				tracker.SetResult(map[string]any{"entities_extracted": 42, "vector_indexed": true}),
				tracker.Succeed())
		}},
		{"failed", seedFailed, func(ctx context.Context, f *fixture, run *tracker.Run) error {
			refused := errors.New("Connection refused")
			f.clock.Advance(3128 * time.Millisecond)
			return errors.Join(
				run.Apply(ctx, tracker.SucceedStep("file_node_creation")),
				run.Apply(ctx, tracker.SucceedStep("memgraph_storage")),
				run.Apply(ctx, tracker.SetResult(map[string]any{"entities_extracted": 42, "vector_indexed": false})),
				run.Apply(ctx, tracker.FailStep("embedding_generation", refused)),
				run.Apply(ctx, tracker.FailStep("qdrant_indexing", refused)),
				run.Apply(ctx, tracker.Fail(fmt.Errorf("Vectorization failed: %w", refused), map[string]any{
					"exception_type": "ConnectionError",
					"project_id":     "my-project",
					"source_path":    "archon://projects/my-project/documents/doc-123",
				})))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := tracker.ContextWithCorrelationID(t.Context(), "abc-456-def")
			require.NoError(t, f.tr.Apply(ctx, "doc-123", tracker.Create(seedSteps...)))
			run, err := f.tr.Start(ctx, "doc-123")
			require.NoError(t, err)
			require.NoError(t, tc.work(ctx, f, run))

			mux := http.NewServeMux()
			mux.Handle("GET /process/document/{document_id}/status", newHandler(t, f.store,
				httpapi.WithPathValue("document_id"), httpapi.WithIDField("document_id")))
			rec := serve(mux, "/process/document/doc-123/status")
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))

			got := document(t, rec.Body.Bytes())
			for field, want := range document(t, []byte(tc.want)) {
				assert.Equal(t, want, got[field], "field %q", field)
			}
		})
	}
}

func TestDocument(t *testing.T) {
	f := newFixture(t)
	ctx := tracker.ContextWithCorrelationID(t.Context(), "corr-1")
	apply := func(changes ...tracker.Change) {
		t.Helper()
		require.NoError(t, f.tr.Apply(ctx, "t1", changes...))
	}
	apply(tracker.Create("fetch", "parse"))
	f.clock.Advance(1500 * time.Millisecond)
	apply(tracker.StartStep("fetch"))
	f.clock.Advance(20 * time.Millisecond)
	apply(tracker.SucceedStep("fetch"))
	apply(tracker.StartStep("parse"))
	apply(tracker.RetryStep("parse", errors.New("timeout\n<retrying>")))
	apply(tracker.SetProgress(store.Progress{Done: 1, Total: 2, Message: "parsing \"a\""}))
	apply(tracker.SetResult(map[string]any{
		"zeta":          []int{1, 2},
		"alpha":         map[string]string{"k": "v"},
		"status":        "success", // a member of the document: not served
		"task_id":       "other",   // the id member: not served
		"steps":         nil,
		"version":       999,
		"progress":      1,
		"abandoned":     true,
		"incarnation":   "x",
		"kind":          "x",
		"labels":        "x",
		"cancel_reason": "x",
	}))
	st, err := f.tr.Get(ctx, "t1")
	require.NoError(t, err)

	rec := serve(f.handler(t), "/tasks/t1/status")
	require.Equal(t, http.StatusOK, rec.Code)
	want := `{"task_id":"t1","correlation_id":"corr-1","status":"running",` +
		`"started_at":"2025-11-12T10:00:01.5Z","completed_at":null,"error_message":null,"error_details":null,` +
		`"alpha":{"k":"v"},"zeta":[1,2],` +
		`"pipeline_steps":{"fetch":"success","parse":"running"},` +
		`"steps":[` +
		`{"name":"fetch","status":"success","started_at":"2025-11-12T10:00:01.5Z","completed_at":"2025-11-12T10:00:01.52Z","error":null,"attempt":1,"progress":null,"sub_steps":[]},` +
		`{"name":"parse","status":"running","started_at":"2025-11-12T10:00:01.52Z","completed_at":null,"error":"timeout\n\u003cretrying\u003e","attempt":2,"progress":null,"sub_steps":[]}],` +
		`"progress":{"done":1,"total":2,"message":"parsing \"a\""},` +
		`"attempt":1,"version":7,"created_at":"2025-11-12T10:00:00Z","updated_at":"2025-11-12T10:00:01.52Z","lease_until":null,` +
		`"abandoned":false,"incarnation":` + jsonString(t, st.Incarnation) + `,"kind":null,"labels":null,"cancel_requested_at":null,"cancel_reason":null,"previous_attempts":[]}`
	assert.JSONEq(t, want, rec.Body.String())
	// The order of the members is part of the contract too.
	assert.Equal(t, compact(t, want), rec.Body.String())
}

// jsonString returns s as a JSON string, or null if it is empty.
func jsonString(t *testing.T, s string) string {
	t.Helper()
	if s == "" {
		return "null"
	}
	b, _ := json.Marshal(s) // a string always encodes
	return string(b)
}

// compact returns the JSON document s without insignificant space, and
// with '<' and '>' as the handler writes them.
func compact(t *testing.T, s string) string {
	t.Helper()
	var v json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(s), &v))
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return strings.NewReplacer(`\u003c`, "<", `\u003e`, ">").Replace(string(b))
}

// TestDocumentStoredFields serves states a store holds as written, which
// the tracker would not write: fields with insignificant space, which must
// still fit on one line, and fields that are not JSON.
func TestDocumentStoredFields(t *testing.T) {
	f := newFixture(t)
	put := func(id string, result map[string]json.RawMessage) {
		f.put(t, store.State{
			ID: id, Status: store.StatusPending, CreatedAt: t0, UpdatedAt: t0,
			Result: result, Attempt: 1, Version: 1,
		})
	}
	put("spaced", map[string]json.RawMessage{"obj": json.RawMessage("{\n  \"a\": [1,\t2]\n}"), "s": json.RawMessage(`"x\u2028y"`)})
	put("bad", map[string]json.RawMessage{"obj": json.RawMessage("{not json")})

	var reported []error
	var mu sync.Mutex
	h := f.handler(t, httpapi.WithErrorHandler(func(_ context.Context, err error) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, err)
	}))

	rec := serve(h, "/tasks/spaced/status")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.NotContains(t, rec.Body.String(), "\n")
	assert.Contains(t, rec.Body.String(), `"obj":{"a":[1,2]}`)
	assert.Equal(t, map[string]any{"a": []any{1.0, 2.0}}, document(t, rec.Body.Bytes())["obj"])

	rec = serve(h, "/tasks/bad/status")
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	assert.NotContains(t, rec.Body.String(), "not json")
	require.Len(t, reported, 1)
	assert.ErrorIs(t, reported[0], store.ErrCorrupt)
}

func TestDocumentStrings(t *testing.T) {
	f := newFixture(t)
	odd := "q\"b\\s/\x01\t\r\n\u2028\u2029é\xff日本"
	f.put(t, store.State{
		ID: "t", Status: store.StatusFailed, CreatedAt: t0, UpdatedAt: t0, CompletedAt: t0,
		ErrorMessage: odd, Attempt: 1, Version: 1,
	})
	rec := serve(f.handler(t), "/tasks/t/status")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.NotContains(t, rec.Body.String(), "\n")
	assert.NotContains(t, rec.Body.String(), "\u2028")
	assert.Equal(t, strings.ToValidUTF8(odd, "\ufffd"), document(t, rec.Body.Bytes())["error_message"])
}

// faultStore is a store whose Get fails with err.
type faultStore struct {
	store.Store
	err error
}

func (s faultStore) Get(context.Context, string) (store.State, error) {
	return store.State{}, s.err
}

func TestErrorAnswers(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	secret := "redis://:hunter2@10.0.0.1:6379"
	for _, tc := range []struct {
		name       string
		store      store.Store
		mount      string
		method     string
		target     string
		code       int
		retryAfter bool
		reported   error // the error reported to the error handler, if any
	}{
		{name: "unknown", target: "/tasks/nope/status", code: http.StatusNotFound},
		{name: "invalid id", target: "/tasks/a%7Bb%7D/status", code: http.StatusBadRequest},
		{name: "bad wait", target: "/tasks/t/status?wait=soon", code: http.StatusBadRequest},
		{name: "negative wait", target: "/tasks/t/status?wait=-1s", code: http.StatusBadRequest},
		{name: "bad version", target: "/tasks/t/status?version=v1", code: http.StatusBadRequest},
		{name: "bad query", target: "/tasks/t/status?wait=%zz", code: http.StatusBadRequest},
		{name: "store down", target: "/tasks/t/status", code: http.StatusServiceUnavailable, retryAfter: true,
			store: faultStore{f.store, fmt.Errorf("dial %s: %w", secret, store.ErrUnavailable)}, reported: store.ErrUnavailable},
		{name: "store slow", target: "/tasks/t/status", code: http.StatusServiceUnavailable, retryAfter: true,
			store: faultStore{f.store, fmt.Errorf("%s: %w", secret, context.DeadlineExceeded)}, reported: context.DeadlineExceeded},
		{name: "store corrupt", target: "/tasks/t/status", code: http.StatusInternalServerError,
			store: faultStore{f.store, fmt.Errorf("%s: %w", secret, store.ErrCorrupt)}, reported: store.ErrCorrupt},
		{name: "store says not found", target: "/tasks/t/status", code: http.StatusNotFound,
			store: faultStore{f.store, fmt.Errorf("%s: %w", secret, store.ErrNotFound)}},
		{name: "method", mount: "/tasks/{id}/status", method: http.MethodDelete, target: "/tasks/t/status", code: http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reported []error
			s := tc.store
			if s == nil {
				s = f.store
			}
			mount := tc.mount
			if mount == "" {
				mount = pattern
			}
			mux := http.NewServeMux()
			mux.Handle(mount, newHandler(t, s, httpapi.WithErrorHandler(func(_ context.Context, err error) {
				reported = append(reported, err)
			})))
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			req, err := http.NewRequestWithContext(t.Context(), method, tc.target, nil)
			require.NoError(t, err)
			rec := httptestRecorder(mux, req)

			require.Equal(t, tc.code, rec.Code, rec.Body.String())
			p := problem(t, rec)
			assert.Equal(t, httpapi.Problem{
				Type: "about:blank", Title: http.StatusText(tc.code), Status: tc.code,
				Detail: p.Detail, Instance: req.URL.EscapedPath(),
			}, p)
			assert.NotEmpty(t, p.Detail)
			assert.NotContains(t, rec.Body.String(), "hunter2")
			assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
			assert.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
			if tc.retryAfter {
				assert.Equal(t, "1", rec.Header().Get("Retry-After"))
			}
			if tc.reported == nil {
				assert.Empty(t, reported)
			} else {
				require.Len(t, reported, 1)
				require.ErrorIs(t, reported[0], tc.reported)
			}
			if tc.code == http.StatusMethodNotAllowed {
				assert.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
			}
		})
	}
}

func TestConditional(t *testing.T) {
	f := newFixture(t)
	run := f.running(t, "t")
	h := f.handler(t)
	v := f.version(t, "t")
	tag := fmt.Sprintf(`"v%d"`, v)

	rec := serve(h, "/tasks/t/status")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, tag, rec.Header().Get("ETag"))
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	assert.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
	assert.Equal(t, "1", rec.Header().Get("Retry-After"), "a running task asks to be polled")
	assert.Equal(t, fmt.Sprint(rec.Body.Len()), rec.Header().Get("Content-Length"))

	for _, inm := range []string{tag, "W/" + tag, `"v1", ` + tag, "*"} {
		rec := serve(h, "/tasks/t/status", "If-None-Match", inm)
		assert.Equal(t, http.StatusNotModified, rec.Code, inm)
		assert.Empty(t, rec.Body.String())
		assert.Equal(t, tag, rec.Header().Get("ETag"))
		assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
		assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	}
	for _, inm := range []string{`"v1"`, fmt.Sprintf(`"v%d"`, v+1), fmt.Sprintf("v%d", v)} {
		assert.Equal(t, http.StatusOK, serve(h, "/tasks/t/status", "If-None-Match", inm).Code, inm)
	}

	require.NoError(t, run.Apply(t.Context(), tracker.Succeed()))
	rec = serve(h, "/tasks/t/status", "If-None-Match", tag)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, fmt.Sprintf(`"v%d"`, v+1), rec.Header().Get("ETag"))
	assert.Empty(t, rec.Header().Values("Retry-After"), "an ended task is not polled")

	head, err := http.NewRequestWithContext(context.Background(), http.MethodHead, "/tasks/t/status", nil)
	require.NoError(t, err)
	rec = httptestRecorder(h, head)
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, fmt.Sprintf(`"v%d"`, v+1), rec.Header().Get("ETag"))
}

func TestOptions(t *testing.T) {
	f := newFixture(t)
	f.running(t, "doc 1/2")
	mux := http.NewServeMux()
	mux.Handle("GET /api/v2/documents/{doc}", newHandler(t, f.store,
		httpapi.WithPathValue("doc"), httpapi.WithIDField("document_id"), httpapi.WithRetryAfter(1500*time.Millisecond)))
	mux.Handle("GET /custom/{id}", newHandler(t, f.store, httpapi.WithRender(func(doc httpapi.Document) any {
		return map[string]any{"state": doc.Status, "v": doc.Version, "abandoned": doc.Abandoned, "<&>": true}
	})))

	rec := serve(mux, "/api/v2/documents/doc%201%2F2")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, "doc 1/2", document(t, rec.Body.Bytes())["document_id"])
	assert.NotContains(t, document(t, rec.Body.Bytes()), "task_id")
	assert.Equal(t, "2", rec.Header().Get("Retry-After"), "rounded up to whole seconds")

	rec = serve(mux, "/custom/doc%201%2F2")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.JSONEq(t, fmt.Sprintf(`{"<&>":true,"abandoned":false,"state":"running","v":%d}`, f.version(t, "doc 1/2")), rec.Body.String())
	assert.Contains(t, rec.Body.String(), `"<&>"`, "not HTML-escaped")
	assert.Equal(t, fmt.Sprintf(`"v%d"`, f.version(t, "doc 1/2")), rec.Header().Get("ETag"))
}

// tenantKey is the context key of the tenant a request is made for.
type tenantKey struct{}

func TestAuthorize(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	for id, tenant := range map[string]string{"a1": "acme", "g1": "globex"} {
		run := f.running(t, id)
		require.NoError(t, run.Apply(ctx, tracker.SetResult(map[string]any{"tenant": tenant})))
	}
	authorize := func(r *http.Request, st store.State) error {
		var tenant string
		if err := json.Unmarshal(st.Result["tenant"], &tenant); err != nil || tenant != r.Context().Value(tenantKey{}) {
			return errors.New("another tenant's task")
		}
		return nil
	}
	as := func(tenant string, h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tenantKey{}, tenant)))
		})
	}
	h := f.handler(t, httpapi.WithAuthorize(authorize))

	assert.Equal(t, http.StatusOK, serve(as("acme", h), "/tasks/a1/status").Code)
	refused := serve(as("globex", h), "/tasks/a1/status")
	assert.Equal(t, http.StatusNotFound, refused.Code)

	// A refused task looks exactly like one that does not exist.
	empty := newFixture(t)
	unknown := serve(as("globex", empty.handler(t, httpapi.WithAuthorize(authorize))), "/tasks/a1/status")
	assert.Equal(t, unknown.Code, refused.Code)
	assert.Equal(t, unknown.Header(), refused.Header())
	assert.Equal(t, unknown.Body.String(), refused.Body.String())

	// Long polls are refused too.
	v := f.version(t, "a1")
	assert.Equal(t, http.StatusNotFound, serve(as("globex", h), fmt.Sprintf("/tasks/a1/status?wait=1s&version=%d", v)).Code)
}

func TestRecreatedTask(t *testing.T) {
	f := newFixture(t)
	h := f.handler(t)
	f.create(t, "t", "a")
	rec := serve(h, "/tasks/t/status")
	require.Equal(t, http.StatusOK, rec.Code)

	require.NoError(t, f.tr.Delete(t.Context(), "t"))
	f.clock.Advance(time.Millisecond)
	f.create(t, "t", "b")
	rec = serve(h, "/tasks/t/status")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, map[string]any{"b": "pending"}, document(t, rec.Body.Bytes())["pipeline_steps"])
}

func TestStatusHandlerRefuses(t *testing.T) {
	f := newFixture(t)
	h, err := httpapi.StatusHandler(nil)
	require.ErrorContains(t, err, "nil store")
	assert.Nil(t, h)
	for i, opt := range []httpapi.Option{
		httpapi.WithPathValue(""),
		httpapi.WithPathValue("1a"),
		httpapi.WithPathValue("a-b"),
		httpapi.WithPathValue("{id}"),
		httpapi.WithIDField(""),
		httpapi.WithIDField("status"),
		httpapi.WithIDField("pipeline_steps"),
		httpapi.WithIDField("abandoned"),
		httpapi.WithRender(nil),
		httpapi.WithAuthorize(nil),
		httpapi.WithMaxWait(-time.Nanosecond),
		httpapi.WithHeartbeat(-time.Second),
		httpapi.WithWriteTimeout(-time.Second),
		httpapi.WithMaxWatchers(-1),
		httpapi.WithRetryAfter(0),
		httpapi.WithRetryAfter(-time.Second),
		httpapi.WithErrorHandler(nil),
		httpapi.WithClock(nil),
		httpapi.WithShutdown(nil),
	} {
		h, err := httpapi.StatusHandler(f.store, httpapi.WithIDField("document_id"), opt)
		require.ErrorContains(t, err, "httpapi: With", "option %d", i)
		assert.Nil(t, h, "option %d", i)
	}
	for i, opt := range []httpapi.Option{
		httpapi.WithPathValue("_a1"),
		httpapi.WithPathValue("état"),
		httpapi.WithIDField("id"),
		httpapi.WithMaxWait(0),
		httpapi.WithHeartbeat(0),
		httpapi.WithWriteTimeout(0),
		httpapi.WithMaxWatchers(0),
		httpapi.WithRetryAfter(time.Nanosecond),
	} {
		_, err := httpapi.StatusHandler(f.store, opt)
		assert.NoError(t, err, "option %d", i)
	}
}

// TestAbandoned serves a task whose lease ends: from then on its document
// says it was abandoned, under an ETag of its own.
func TestAbandoned(t *testing.T) {
	f := newFixture(t)
	f.leased(t, f.mem)
	h := f.handler(t)
	v := f.version(t, "t")
	tag, abandonedTag := fmt.Sprintf(`"v%d"`, v), fmt.Sprintf(`"v%da"`, v)

	rec := serve(h, "/tasks/t/status")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, tag, rec.Header().Get("ETag"))
	doc := document(t, rec.Body.Bytes())
	assert.Equal(t, false, doc["abandoned"])
	assert.Equal(t, "2025-11-12T10:00:05Z", doc["lease_until"])

	f.clock.Advance(leaseTime)
	assert.Equal(t, false, document(t, serve(h, "/tasks/t/status").Body.Bytes())["abandoned"], "the lease ends, but not before")
	f.clock.Advance(time.Millisecond)
	rec = serve(h, "/tasks/t/status", "If-None-Match", tag)
	require.Equal(t, http.StatusOK, rec.Code, "no 304 hides that the task was abandoned")
	assert.Equal(t, abandonedTag, rec.Header().Get("ETag"))
	assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	doc = document(t, rec.Body.Bytes())
	assert.Equal(t, true, doc["abandoned"])
	assert.EqualValues(t, v, doc["version"])
	assert.Equal(t, "running", doc["status"])

	rec = serve(h, "/tasks/t/status", "If-None-Match", abandonedTag)
	assert.Equal(t, http.StatusNotModified, rec.Code)
	assert.Equal(t, abandonedTag, rec.Header().Get("ETag"))

	// A long poll that names the version is answered at once: the version
	// parameter names the document that does not say so.
	rec = await(t, serveAsync(h, get(fmt.Sprintf("/tasks/t/status?wait=1h&version=%d", v))))
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, true, document(t, rec.Body.Bytes())["abandoned"])
	// One that names the abandoned document waits for a change.
	rec = serve(h, "/tasks/t/status?wait=20ms", "If-None-Match", abandonedTag)
	assert.Equal(t, http.StatusNotModified, rec.Code)
	f.store.waitFor(t, 0)
}
