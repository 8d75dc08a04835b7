package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// service is a server running in the test's process on a memory store
// the test owns, so that it can read tasks after the server has stopped.
type service struct {
	*server
	mem  *memstore.Store
	url  string        // the base URL
	logs *lockedBuffer // the server's logs, as JSON lines
	stop func()        // shuts the server down gracefully and waits for it
}

// startService starts a service with the given delay scale and shutdown
// timeout, and stops it when t ends.
func startService(t *testing.T, delayScale float64, shutdownTimeout time.Duration) *service {
	t.Helper()
	return startServiceWith(t, config{delayScale: delayScale, shutdownTimeout: shutdownTimeout, lease: 30 * time.Second}, nil)
}

// startServiceWith starts a service with the configuration cfg, on a
// memstore seen through wrap if it is not nil, and stops it when t ends.
func startServiceWith(t *testing.T, cfg config, wrap func(store.Store) store.Store) *service {
	t.Helper()
	return startTracedService(t, cfg, wrap, nil)
}

// startTracedService is startServiceWith with the service's spans sent to
// tp.
func startTracedService(t *testing.T, cfg config, wrap func(store.Store) store.Store, tp trace.TracerProvider) *service {
	t.Helper()
	mem, err := memstore.New()
	require.NoError(t, err)
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var st store.Store = mem
	if wrap != nil {
		st = wrap(mem)
	}
	s, err := newServer(st, logger, cfg, tp)
	require.NoError(t, err)
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.serve(ctx, ln) }()
	svc := &service{server: s, mem: mem, url: "http://" + ln.Addr().String(), logs: logs}
	var once sync.Once
	svc.stop = func() {
		once.Do(func() {
			cancel()
			assert.NoError(t, wait(t, served, 30*time.Second), "serve")
		})
	}
	t.Cleanup(func() {
		svc.stop()
		mem.Close()
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	return svc
}

// get returns the current state of task id in the service's store.
func (s *service) get(t *testing.T, id string) store.State {
	t.Helper()
	st, err := s.mem.Get(t.Context(), id)
	require.NoError(t, err)
	return st
}

func TestSubmitAndStatus(t *testing.T) {
	svc := startService(t, 0, time.Second)
	fixture := loadFixture(t, "submit_response.json")

	resp := submit(t, svc.url, request(t, "doc-123", nil), "abc-456-def")
	requireShape(t, fixture, resp, nil)
	assert.Equal(t, map[string]any{
		"success":            true,
		"document_id":        "doc-123",
		"project_id":         "my-project",
		"entities_extracted": 1.0, // "Document content"
		"status":             "processing_queued",
		"status_url":         "/process/document/doc-123/status",
		"message":            fixture["message"],
	}, resp)

	doc := await(t, svc.url+resp["status_url"].(string), ended)
	requireShape(t, loadFixture(t, "status_success.json"), doc, statusExtras)
	assert.Equal(t, "success", doc["status"])
	assert.Equal(t, "abc-456-def", doc["correlation_id"])
	assert.InDelta(t, 1, doc["entities_extracted"], 0)
	assert.Equal(t, true, doc["vector_indexed"])

	// One log line per step, with the task id and the correlation id.
	lines := logLines(t, svc.logs, "step succeeded", "doc-123")
	var steps []string
	for _, l := range lines {
		assert.Equal(t, "abc-456-def", l["correlation_id"])
		steps = append(steps, l["step"].(string))
	}
	assert.Equal(t, []string{stepFileNode, stepGraph, stepEmbedding, stepIndexing, stepFreshness}, steps)
}

// TestEmbeddingProgress: the embedding step reports its progress over the
// document's chunks of 200 words, shown on the step.
func TestEmbeddingProgress(t *testing.T) {
	svc := startService(t, 0, time.Second)
	req := request(t, "doc-long", nil)
	req["content"] = strings.Repeat("word ", 2*chunkWords+1) // 3 chunks
	resp := submit(t, svc.url, req, "")
	await(t, svc.url+resp["status_url"].(string), ended)
	embedding, ok := svc.get(t, "doc-long").Step(stepEmbedding)
	require.True(t, ok)
	assert.Equal(t, store.Progress{Done: 3, Total: 3, Message: "chunks embedded"}, embedding.Progress)
}

func TestSimulatedFailure(t *testing.T) {
	svc := startService(t, 0, time.Second)
	want := loadFixture(t, "status_failed.json")

	for _, tc := range []struct {
		step  string
		task  string // the task's status
		steps map[string]any
		msg   any
	}{{
		step: stepEmbedding, task: "failed", steps: want["pipeline_steps"].(map[string]any),
		msg: want["error_message"],
	}, {
		step: stepFileNode, task: "failed", msg: "File node creation failed: Connection refused",
		steps: map[string]any{stepFileNode: "failed", stepGraph: "skipped", stepEmbedding: "skipped",
			stepIndexing: "skipped", stepFreshness: "skipped"},
	}, {
		// freshness_analysis is optional: the task succeeds without it.
		step: stepFreshness, task: "success", msg: nil,
		steps: map[string]any{stepFileNode: "success", stepGraph: "success", stepEmbedding: "success",
			stepIndexing: "success", stepFreshness: "failed"},
	}} {
		t.Run(tc.step, func(t *testing.T) {
			id := "doc-fail-" + tc.step
			resp := submit(t, svc.url, request(t, id, map[string]any{"simulate_failure": tc.step}), "")
			doc := await(t, svc.url+resp["status_url"].(string), ended)
			assert.Equal(t, tc.task, doc["status"])
			assert.Equal(t, tc.steps, doc["pipeline_steps"])
			assert.Equal(t, tc.msg, doc["error_message"])
			if tc.task != "failed" {
				return
			}
			requireShape(t, want, doc, statusExtras)
			assert.Equal(t, map[string]any{
				"exception_type": "ConnectionError",
				"project_id":     "my-project",
				"source_path":    "archon://projects/my-project/documents/" + id,
				"failed_step":    tc.step,
			}, doc["error_details"])
			assert.Equal(t, false, doc["vector_indexed"])
		})
	}
}

func TestSubmitInvalid(t *testing.T) {
	svc := startService(t, 0, time.Second)
	valid := func(change func(req map[string]any)) string {
		req := request(t, "doc-valid", nil)
		change(req)
		return mustJSON(req)
	}
	for _, tc := range []struct {
		name        string
		body        string
		contentType string
		code        int
		field       string // the field the problem names
	}{
		{"no document_id", valid(func(r map[string]any) { delete(r, "document_id") }), "", 400, "document_id"},
		{"empty document_id", valid(func(r map[string]any) { r["document_id"] = "" }), "", 400, "document_id"},
		{"null document_id", valid(func(r map[string]any) { r["document_id"] = nil }), "", 400, "document_id"},
		{"numeric document_id", valid(func(r map[string]any) { r["document_id"] = 123 }), "", 400, "document_id"},
		{"document_id with a brace", valid(func(r map[string]any) { r["document_id"] = "doc-{1}" }), "", 400, "document_id"},
		{"document_id with a newline", valid(func(r map[string]any) { r["document_id"] = "doc\n1" }), "", 400, "document_id"},
		{"long document_id", valid(func(r map[string]any) { r["document_id"] = strings.Repeat("d", store.MaxIDLen+1) }), "", 400, "document_id"},
		{"document_id ..", valid(func(r map[string]any) { r["document_id"] = ".." }), "", 400, "document_id"},
		{"no project_id", valid(func(r map[string]any) { delete(r, "project_id") }), "", 400, "project_id"},
		{"long project_id", valid(func(r map[string]any) { r["project_id"] = strings.Repeat("p", store.MaxIDLen+1) }), "", 400, "project_id"},
		{"no content", valid(func(r map[string]any) { delete(r, "content") }), "", 400, "content"},
		{"empty content", valid(func(r map[string]any) { r["content"] = "" }), "", 400, "content"},
		{"long content", valid(func(r map[string]any) { r["content"] = strings.Repeat("c", maxContentBytes+1) }), "", 400, "content"},
		{"long title", valid(func(r map[string]any) { r["title"] = strings.Repeat("t", maxTitleBytes+1) }), "", 400, "title"},
		{"long document_type", valid(func(r map[string]any) { r["document_type"] = strings.Repeat("t", maxDocumentTypeBytes+1) }), "", 400, "document_type"},
		{"metadata not an object", valid(func(r map[string]any) { r["metadata"] = "x" }), "", 400, "metadata"},
		{"unknown step to fail", valid(func(r map[string]any) { r["metadata"] = map[string]any{"simulate_failure": "parsing"} }), "", 400, "metadata.simulate_failure"},
		{"step to fail not a string", valid(func(r map[string]any) { r["metadata"] = map[string]any{"simulate_failure": true} }), "", 400, "metadata.simulate_failure"},
		{"empty body", "", "", 400, ""},
		{"not JSON", "document_id=doc-1", "", 400, ""},
		{"truncated JSON", `{"document_id": "doc-1"`, "", 400, ""},
		{"array", `[]`, "", 400, ""},
		{"two objects", valid(func(map[string]any) {}) + "{}", "", 400, ""},
		{"body too large", valid(func(r map[string]any) { r["content"] = strings.Repeat("c", maxBodyBytes) }), "", 413, ""},
		{"form", "document_id=doc-1", "application/x-www-form-urlencoded", 415, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.contentType
			if ct == "" {
				ct = "application/json"
			}
			resp := do(t, http.MethodPost, svc.url+"/process/document", []byte(tc.body), "Content-Type", ct)
			require.Equal(t, tc.code, resp.code, "body: %s", resp.body)
			assert.Equal(t, "application/problem+json", resp.header.Get("Content-Type"))
			prob := resp.object(t)
			assert.InDelta(t, tc.code, prob["status"], 0)
			assert.Equal(t, "/process/document", prob["instance"])
			assert.NotEmpty(t, prob["detail"])
			assert.NotContains(t, prob["detail"], "Go struct", "the detail leaks Go details")
			if tc.field == "" {
				assert.NotContains(t, prob, "field")
			} else {
				assert.Equal(t, tc.field, prob["field"])
				assert.Contains(t, prob["detail"], tc.field)
			}
		})
	}

	// None of them created a task.
	assert.Equal(t, 0, svc.mem.Len())
}

func TestSubmitAcceptsUnknownFieldsAndNoContentType(t *testing.T) {
	svc := startService(t, 0, time.Second)
	req := request(t, "doc-extra", nil)
	req["priority"] = "high"
	resp := do(t, http.MethodPost, svc.url+"/process/document", []byte(mustJSON(req)))
	require.Equal(t, http.StatusOK, resp.code, "body: %s", resp.body)
	await(t, svc.url+"/process/document/doc-extra/status", ended)
}

func TestStatusUnknown(t *testing.T) {
	svc := startService(t, 0, time.Second)
	resp := do(t, http.MethodGet, svc.url+"/process/document/doc-404/status", nil)
	assert.Equal(t, http.StatusNotFound, resp.code)
	assert.Equal(t, "application/problem+json", resp.header.Get("Content-Type"))

	resp = do(t, http.MethodGet, svc.url+"/process/document/%7Bx%7D/status", nil)
	assert.Equal(t, http.StatusBadRequest, resp.code)
}

func TestStoreDown(t *testing.T) {
	svc := startService(t, 0, time.Second)
	submit(t, svc.url, request(t, "doc-123", nil), "")
	await(t, svc.url+"/process/document/doc-123/status", ended)
	svc.mem.Close()

	for _, tc := range []struct {
		method, path string
		body         []byte
	}{
		{http.MethodGet, "/process/document/doc-123/status", nil},
		{http.MethodPost, "/process/document", []byte(mustJSON(request(t, "doc-456", nil)))},
	} {
		resp := do(t, tc.method, svc.url+tc.path, tc.body, "Content-Type", "application/json")
		assert.Equal(t, http.StatusServiceUnavailable, resp.code, "%s %s: %s", tc.method, tc.path, resp.body)
		assert.Equal(t, "application/problem+json", resp.header.Get("Content-Type"))
		assert.NotEmpty(t, resp.header.Get("Retry-After"))
	}
}

func TestResubmit(t *testing.T) {
	t.Run("ended", func(t *testing.T) {
		svc := startService(t, 0, time.Second)
		submit(t, svc.url, request(t, "doc-123", map[string]any{"simulate_failure": stepEmbedding}), "first")
		doc := await(t, svc.url+"/process/document/doc-123/status", ended)
		require.Equal(t, "failed", doc["status"])

		// A new attempt, which succeeds this time.
		submit(t, svc.url, request(t, "doc-123", nil), "second")
		doc = await(t, svc.url+"/process/document/doc-123/status", ended)
		assert.Equal(t, "success", doc["status"])
		assert.InDelta(t, 2, doc["attempt"], 0)
		assert.Nil(t, doc["error_details"])
		assert.Equal(t, true, doc["vector_indexed"])
		assert.InDelta(t, 1, doc["entities_extracted"], 0)
	})
	t.Run("running", func(t *testing.T) {
		svc := startService(t, 100, 0) // steps of 30s and more: canceled at the end
		submit(t, svc.url, request(t, "doc-123", nil), "")
		body := mustJSON(request(t, "doc-123", nil))
		resp := do(t, http.MethodPost, svc.url+"/process/document", []byte(body), "Content-Type", "application/json")
		assert.Equal(t, http.StatusConflict, resp.code, "body: %s", resp.body)
		assert.Contains(t, resp.object(t)["detail"], "/process/document/doc-123/status")
	})
}

// TestResubmitAbandoned: a task whose process died (its lease ended) is
// shown abandoned, and a new submission runs it again as attempt 2.
func TestResubmitAbandoned(t *testing.T) {
	svc := startService(t, 0, time.Second)
	// Another process created and started the task an hour ago, and died.
	dead, err := tracker.New(svc.mem, tracker.WithLease(time.Minute),
		tracker.WithClock(func() time.Time { return time.Now().Add(-time.Hour) }))
	require.NoError(t, err)
	require.NoError(t, dead.Apply(t.Context(), "doc-123", tracker.Create(stepFileNode, stepGraph)))
	_, err = dead.Start(t.Context(), "doc-123", tracker.StartStep(stepFileNode))
	require.NoError(t, err)

	doc := do(t, http.MethodGet, svc.url+"/process/document/doc-123/status", nil).object(t)
	assert.Equal(t, "running", doc["status"])
	assert.Equal(t, true, doc["abandoned"], "the status says the task was abandoned")

	submit(t, svc.url, request(t, "doc-123", nil), "")
	doc = await(t, svc.url+"/process/document/doc-123/status", ended)
	assert.Equal(t, "success", doc["status"])
	assert.InDelta(t, 2, doc["attempt"], 0)
	assert.Equal(t, false, doc["abandoned"])
}

// TestSubmitEncodedBody: a body with a Content-Encoding is refused with
// 415, not read as plain JSON.
func TestSubmitEncodedBody(t *testing.T) {
	svc := startService(t, 0, time.Second)
	body := mustJSON(request(t, "doc-123", nil))
	for _, enc := range []string{"gzip", "br", "deflate, gzip"} {
		resp := do(t, http.MethodPost, svc.url+"/process/document", []byte(body), "Content-Type", "application/json", "Content-Encoding", enc)
		assert.Equal(t, http.StatusUnsupportedMediaType, resp.code, enc)
		assert.Equal(t, "application/problem+json", resp.header.Get("Content-Type"))
	}
	resp := do(t, http.MethodPost, svc.url+"/process/document", []byte(body), "Content-Type", "application/json", "Content-Encoding", "identity")
	assert.Equal(t, http.StatusOK, resp.code)
}

func TestShutdown(t *testing.T) {
	for _, tc := range []struct {
		name       string
		delayScale float64
		timeout    time.Duration
		want       store.Status
	}{
		{"drains", 0.2, 30 * time.Second, store.StatusSuccess}, // 0.6s of work
		{"cancels", 100, 10 * time.Millisecond, store.StatusCanceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := startService(t, tc.delayScale, tc.timeout)
			resp := submit(t, svc.url, request(t, "doc-123", nil), "")

			await(t, svc.url+resp["status_url"].(string), running)
			svc.stop()

			st := svc.get(t, "doc-123")
			assert.Equal(t, tc.want, st.Status)
			for _, s := range st.Steps {
				assert.True(t, s.Status.Terminal(), "step %s is %s", s.Name, s.Status)
			}
			if tc.want == store.StatusCanceled {
				assert.Equal(t, "pipeline: runner is shutting down", st.ErrorMessage)
			}
		})
	}
}

// A shutdown answers the long polls it holds at once with the task's
// document, never with an empty answer.
func TestShutdownAnswersLongPolls(t *testing.T) {
	watching := make(chan struct{}, 100)
	svc := startServiceWith(t, config{shutdownTimeout: time.Minute}, func(s store.Store) store.Store {
		return signalingWatcher{Store: s, Watcher: s.(store.Watcher), Lister: s.(store.Lister), watching: watching}
	})
	require.NoError(t, svc.tracker.Apply(t.Context(), "doc-pending", tracker.Create(stepFileNode))) // never runs
	version := svc.get(t, "doc-pending").Version

	const polls = 8
	answers := make(chan *response, polls)
	for range polls {
		go func() {
			url := fmt.Sprintf("%s/process/document/doc-pending/status?wait=60s&version=%d", svc.url, version)
			resp := &response{code: -1}
			defer func() { answers <- resp }()
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
			if err != nil {
				return
			}
			res, err := httpClient.Do(req)
			if err != nil {
				resp.body = []byte(err.Error())
				return
			}
			defer res.Body.Close()
			resp.code, resp.header = res.StatusCode, res.Header
			resp.body, _ = io.ReadAll(res.Body)
		}()
	}
	for range polls {
		wait(t, watching, 10*time.Second) // the long poll is held
	}
	start := time.Now()
	svc.stop()
	assert.Less(t, time.Since(start), 10*time.Second, "shutdown waited for the long polls")
	for range polls {
		resp := wait(t, answers, 10*time.Second)
		switch resp.code {
		case http.StatusOK:
			assert.Equal(t, "application/json", resp.header.Get("Content-Type"))
			assert.NotEmpty(t, resp.header.Get("ETag"))
			assert.Equal(t, "pending", resp.object(t)["status"])
		case http.StatusServiceUnavailable:
			assert.NotEmpty(t, resp.header.Get("Retry-After"))
			assert.Equal(t, "application/problem+json", resp.header.Get("Content-Type"))
		default:
			t.Errorf("a long poll held at shutdown was answered %d: %q", resp.code, resp.body)
		}
	}
}

// signalingWatcher is a store that signals each watch it opens.
type signalingWatcher struct {
	store.Store
	store.Watcher
	store.Lister
	watching chan<- struct{}
}

func (s signalingWatcher) Watch(ctx context.Context, id string) (<-chan store.State, error) {
	ch, err := s.Watcher.Watch(ctx, id)
	s.watching <- struct{}{}
	return ch, err
}

// A shutdown ends the requests that wait for changes at once, rather than
// waiting for them for the shutdown timeout.
func TestShutdownEndsStreams(t *testing.T) {
	svc := startService(t, 0, time.Minute)
	require.NoError(t, svc.tracker.Apply(t.Context(), "doc-pending", tracker.Create(stepFileNode))) // never runs

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, svc.url+"/process/document/doc-pending/status", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/event-stream")
	res, err := httpClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	events := bufio.NewScanner(res.Body)
	for events.Scan() && !strings.HasPrefix(events.Text(), "data: ") {
		// The stream is open once its first event has come.
	}
	require.NoError(t, events.Err())

	start := time.Now()
	svc.stop()
	assert.Less(t, time.Since(start), 10*time.Second, "shutdown waited for the stream")
	for events.Scan() {
		// The stream ends.
	}
}

func TestServerSentEvents(t *testing.T) {
	svc := startService(t, 0.05, time.Second)
	resp := submit(t, svc.url, request(t, "doc-123", nil), "abc-456-def")
	r := do(t, http.MethodGet, svc.url+resp["status_url"].(string), nil, "Accept", "text/event-stream")
	require.Equal(t, http.StatusOK, r.code)
	assert.Equal(t, "text/event-stream", r.header.Get("Content-Type"))

	// The stream ends after the final state.
	var last string
	for line := range strings.Lines(string(r.body)) {
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			last = data
		}
	}
	require.NotEmpty(t, last, "no event in %s", r.body)
	assert.Contains(t, last, `"status":"success"`)
	assert.Contains(t, last, `"document_id":"doc-123"`)
	assert.Contains(t, last, `"correlation_id":"abc-456-def"`)
}

func TestCountEntities(t *testing.T) {
	for _, tc := range []struct {
		text string
		want int
	}{
		{"", 0},
		{"Document content", 1},
		{"Alice met Bob. Alice left; bob stayed in Zürich (Switzerland).", 4},
		{"all lower case", 0},
		{"COVID-19 and GPT-4 and COVID-19", 2},
	} {
		assert.Equal(t, tc.want, countEntities(tc.text), "%q", tc.text)
	}
}

func TestConnectionError(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &ConnectionError{Op: "Vectorization"})
	assert.Equal(t, "ConnectionError", exceptionType(err))
	assert.Equal(t, "wrapped: Vectorization failed: Connection refused", err.Error())
}

func TestHandlerMethodNotAllowed(t *testing.T) {
	mem, err := memstore.New()
	require.NoError(t, err)
	defer mem.Close()
	s, err := newServer(mem, slog.New(slog.DiscardHandler), config{shutdownTimeout: time.Second}, nil)
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	h, err := s.handler(make(chan struct{}))
	require.NoError(t, err)
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/process/document", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	assert.NotEmpty(t, rec.Header().Get("X-Correlation-ID"))
}

// TestListDocuments follows the failed documents of a project two at a
// time, as the curl does: newest first, each once, and the counts
// match.
func TestListDocuments(t *testing.T) {
	svc := startService(t, 0, time.Second)
	var failed []string // of project p1, newest last
	for i := range 9 {
		id := fmt.Sprintf("doc-%d", i)
		req := request(t, id, nil)
		req["project_id"] = []string{"p1", "p2"}[i%2]
		if i%3 != 2 {
			req["metadata"] = map[string]any{"simulate_failure": stepFileNode}
			if i%2 == 0 {
				failed = append(failed, id)
			}
		}
		resp := submit(t, svc.url, req, "")
		await(t, svc.url+resp["status_url"].(string), ended)
	}
	slices.Reverse(failed)

	var got []string
	next := "/process/documents?status=failed&label=project_id:p1&page_size=2"
	for next != "" {
		resp := do(t, http.MethodGet, svc.url+next, nil)
		require.Equal(t, http.StatusOK, resp.code, "body: %s", resp.body)
		var page struct {
			Tasks         []map[string]any `json:"tasks"`
			NextPageToken string           `json:"next_page_token"`
		}
		require.NoError(t, json.Unmarshal(resp.body, &page))
		require.LessOrEqual(t, len(page.Tasks), 2)
		for _, doc := range page.Tasks {
			requireShape(t, loadFixture(t, "status_failed.json"), doc, statusExtras)
			assert.Equal(t, "document", doc["kind"])
			assert.Equal(t, map[string]any{"project_id": "p1"}, doc["labels"])
			got = append(got, doc["document_id"].(string))
		}
		next = ""
		if page.NextPageToken != "" {
			next = "/process/documents?status=failed&label=project_id:p1&page_size=2&page_token=" + url.QueryEscape(page.NextPageToken)
		}
	}
	assert.Equal(t, failed, got)

	resp := do(t, http.MethodGet, svc.url+"/process/documents/counts?label=project_id:p1", nil)
	require.Equal(t, http.StatusOK, resp.code, "body: %s", resp.body)
	assert.JSONEq(t, `{"counts":{"pending":0,"running":0,"success":2,"failed":3,"canceled":0},"total":5}`, string(resp.body))

	resp = do(t, http.MethodGet, svc.url+"/process/documents?status=lost", nil)
	require.Equal(t, http.StatusBadRequest, resp.code)
	assert.Contains(t, resp.object(t)["detail"], "status")
}

// TestRescue: a task whose work stopped renewing its lease (as if its
// process had died) is failed with TaskAbandoned by the service's rescuer,
// with no request made.
func TestRescue(t *testing.T) {
	const lease = 200 * time.Millisecond
	svc := startServiceWith(t, config{shutdownTimeout: time.Second, lease: lease, rescueEvery: lease / 4}, nil)
	require.NoError(t, svc.tracker.Apply(t.Context(), "doc-dead", tracker.Create(stepFileNode, stepGraph)))
	ch, err := svc.mem.Watch(t.Context(), "doc-dead")
	require.NoError(t, err)
	_, err = svc.tracker.Start(t.Context(), "doc-dead", tracker.StartStep(stepFileNode)) // and nothing more
	require.NoError(t, err)
	started := time.Now()

	var st store.State
	for st = range ch {
		if st.Status.Terminal() {
			break
		}
	}
	assert.Equal(t, store.StatusFailed, st.Status)
	assert.JSONEq(t, `"TaskAbandoned"`, string(st.ErrorDetails["exception_type"]))
	assert.Equal(t, []store.StepStatus{store.StepFailed, store.StepSkipped}, []store.StepStatus{st.Steps[0].Status, st.Steps[1].Status})
	t.Logf("rescued %v after the lease began", time.Since(started).Round(time.Millisecond))
}

// TestCancelDocument cancels a document's task while a step runs: the
// step's context is canceled (its log line says so), no later step runs,
// and the task ends canceled with the reason.
func TestCancelDocument(t *testing.T) {
	svc := startService(t, 100, time.Second) // steps of 30 s and more
	resp := submit(t, svc.url, request(t, "doc-1", nil), "")
	statusURL := svc.url + resp["status_url"].(string)
	await(t, statusURL, running)

	cancelURL := svc.url + "/process/document/doc-1/cancel"
	r := do(t, http.MethodPost, cancelURL, []byte(`{"reason":"wrong file"}`), "Content-Type", "application/json")
	require.Equal(t, http.StatusAccepted, r.code, "body: %s", r.body)
	assert.Equal(t, "/process/document/doc-1/status", r.header.Get("Location"))
	doc := await(t, statusURL, ended)
	assert.Equal(t, "canceled", doc["status"])
	assert.Equal(t, "wrong file", doc["cancel_reason"])
	assert.Equal(t, "cancellation requested: wrong file", doc["error_message"])
	assert.Equal(t, map[string]any{stepFileNode: "failed", stepGraph: "skipped", stepEmbedding: "skipped",
		stepIndexing: "skipped", stepFreshness: "skipped"}, doc["pipeline_steps"])
	lines := logLines(t, svc.logs, "step canceled", "doc-1")
	require.Len(t, lines, 1)
	assert.Equal(t, "cancellation requested: wrong file", lines[0]["cause"])
	assert.Empty(t, logLines(t, svc.logs, "step succeeded", "doc-1"), "no later step ran")

	assert.Equal(t, http.StatusAccepted, do(t, http.MethodPost, cancelURL, nil).code, "a second cancel")
	assert.Equal(t, http.StatusNotFound, do(t, http.MethodPost, svc.url+"/process/document/doc-2/cancel", nil).code)
}

// TestRetryDocument: a document whose simulated failure failed its first
// attempt is retried over HTTP; attempt 2 succeeds, and attempt 1's error
// is still in the document.
func TestRetryDocument(t *testing.T) {
	svc := startService(t, 0, time.Second)
	resp := submit(t, svc.url, request(t, "doc-1", map[string]any{"simulate_failure": stepEmbedding}), "")
	statusURL := svc.url + resp["status_url"].(string)
	failed := await(t, statusURL, ended)
	require.Equal(t, "failed", failed["status"])

	retryURL := svc.url + "/process/document/doc-1/retry"
	r := do(t, http.MethodPost, retryURL, nil)
	require.Equal(t, http.StatusAccepted, r.code, "body: %s", r.body)
	doc := await(t, statusURL, func(doc map[string]any) bool { return ended(doc) && doc["attempt"] == 2.0 })
	assert.Equal(t, "success", doc["status"])
	assert.Equal(t, true, doc["vector_indexed"])
	assert.InDelta(t, 1, doc["entities_extracted"], 0, "kept from the first attempt")
	require.Len(t, doc["previous_attempts"], 1)
	first := doc["previous_attempts"].([]any)[0].(map[string]any)
	assert.Equal(t, "failed", first["status"])
	assert.Equal(t, failed["error_message"], first["error_message"])
	assert.Equal(t, failed["error_details"], first["error_details"])

	r = do(t, http.MethodPost, svc.url+"/process/document/doc-1/cancel", nil)
	assert.Equal(t, http.StatusConflict, r.code, "an ended task cannot be canceled")
	assert.Contains(t, r.object(t)["detail"], "ended")
}

// TestDashboardMounted: the dashboard is mounted at /dashboard/, lists a failed
// document, shows its page, and links its script to the document's status
// stream; a retry from its page runs the document again.
func TestDashboardMounted(t *testing.T) {
	svc := startService(t, 0, time.Second)
	resp := submit(t, svc.url, request(t, "doc-1", map[string]any{"simulate_failure": stepEmbedding}), "")
	statusURL := svc.url + resp["status_url"].(string)
	await(t, statusURL, ended)

	r := do(t, http.MethodGet, svc.url+"/dashboard/?status=failed", nil)
	require.Equal(t, http.StatusOK, r.code, "body: %s", r.body)
	assert.Contains(t, string(r.body), `href="tasks/doc-1"`)

	r = do(t, http.MethodGet, svc.url+"/dashboard/tasks/doc-1", nil)
	require.Equal(t, http.StatusOK, r.code, "body: %s", r.body)
	assert.Contains(t, string(r.body), `data-status-url="/process/document/doc-1/status"`)
	assert.Contains(t, string(r.body), "Vectorization failed: Connection refused")

	r = do(t, http.MethodPost, svc.url+"/dashboard/tasks/doc-1/retry", nil, "Sec-Fetch-Site", "same-origin")
	require.Equal(t, http.StatusOK, r.code, "the client follows the 303 to the task's page; body: %s", r.body)
	doc := await(t, statusURL, func(doc map[string]any) bool { return ended(doc) && doc["attempt"] == 2.0 })
	assert.Equal(t, "success", doc["status"])
}
