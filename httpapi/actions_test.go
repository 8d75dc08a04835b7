package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// actionFixture serves a status, a cancel and a retry handler over a
// fixture's tracker.
type actionFixture struct {
	*fixture
	mux      *http.ServeMux
	started  []store.State // what the retry handler started, in order
	startErr error         // what starting fails with
	srv      *httptest.Server
	client   *httpapi.Client
}

func newActionFixture(t *testing.T, opts ...httpapi.Option) *actionFixture {
	t.Helper()
	f := &actionFixture{fixture: newFixture(t), mux: http.NewServeMux()}
	status, err := httpapi.ParseStatusPath(pattern)
	require.NoError(t, err)
	f.mux.Handle(pattern, newHandler(t, f.store, opts...))
	cancel, err := httpapi.CancelHandler(f.tr, status, opts...)
	require.NoError(t, err)
	f.mux.Handle("POST /tasks/{id}/cancel", cancel)
	retry, err := httpapi.RetryHandler(f.tr, status, func(_ context.Context, ended store.State) error {
		f.started = append(f.started, ended)
		return f.startErr
	}, opts...)
	require.NoError(t, err)
	f.mux.Handle("/tasks/{id}/retry", retry) // any method: the handler answers 405
	f.srv = httptest.NewServer(f.mux)
	t.Cleanup(f.srv.Close)
	f.client = &httpapi.Client{HTTPClient: f.srv.Client(), BaseURL: f.srv.URL}
	return f
}

// post POSTs body to target on the fixture's handlers.
func (f *actionFixture) post(target, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, target, strings.NewReader(body))
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	return rec
}

func TestCancelHandler(t *testing.T) {
	f := newActionFixture(t)
	run := f.running(t, "t1")

	rec := f.post("/tasks/t1/cancel", `{"reason":"wrong file"}`)
	require.Equal(t, http.StatusAccepted, rec.Code, "body: %s", rec.Body)
	assert.Equal(t, "/tasks/t1/status", rec.Header().Get("Location"))
	assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	assert.JSONEq(t, `{"task_id":"t1","status_url":"/tasks/t1/status"}`, rec.Body.String())
	st, err := f.tr.Get(t.Context(), "t1")
	require.NoError(t, err)
	assert.Equal(t, "wrong file", st.CancelReason)
	assert.Equal(t, store.StatusRunning, st.Status, "the work stops and records the end")

	// A second request changes nothing.
	rec = f.post("/tasks/t1/cancel", "")
	require.Equal(t, http.StatusAccepted, rec.Code)
	assert.Equal(t, st.Version, f.version(t, "t1"))

	// The document tells clients of the request.
	doc := document(t, serve(f.mux, "/tasks/t1/status").Body.Bytes())
	assert.Equal(t, "wrong file", doc["cancel_reason"])
	assert.NotNil(t, doc["cancel_requested_at"])

	// An ended task: 409, and a second request for one canceled on request: 202.
	require.NoError(t, run.Apply(t.Context(), tracker.Cancel(errors.New("canceled on request"))))
	assert.Equal(t, http.StatusAccepted, f.post("/tasks/t1/cancel", "").Code)
	done := f.running(t, "done")
	require.NoError(t, done.Apply(t.Context(), tracker.Succeed()))
	rec = f.post("/tasks/done/cancel", "")
	require.Equal(t, http.StatusConflict, rec.Code)
	assert.Equal(t, "The task has ended: it cannot be canceled.", problem(t, rec).Detail)

	for _, tc := range []struct {
		target, body string
		code         int
	}{
		{"/tasks/unknown/cancel", "", http.StatusNotFound},
		{"/tasks/t1/cancel", "not json", http.StatusBadRequest},
		{"/tasks/t1/cancel", `{"reason":"` + strings.Repeat("x", 1025) + `"}`, http.StatusBadRequest},
		{"/tasks/t1/cancel", strings.Repeat(" ", 5000), http.StatusBadRequest},
		{"/tasks/%7B/cancel", "", http.StatusBadRequest},
	} {
		rec := f.post(tc.target, tc.body)
		assert.Equal(t, tc.code, rec.Code, "%s %.40s: %s", tc.target, tc.body, rec.Body)
	}
}

func TestRetryHandler(t *testing.T) {
	f := newActionFixture(t)
	run := f.running(t, "t1")
	rec := f.post("/tasks/t1/retry", "")
	require.Equal(t, http.StatusConflict, rec.Code, "a running task")
	assert.Contains(t, problem(t, rec).Detail, "not ended")

	require.NoError(t, run.Apply(t.Context(), tracker.Fail(errors.New("boom"), nil)))
	rec = f.post("/tasks/t1/retry", "")
	require.Equal(t, http.StatusAccepted, rec.Code, "body: %s", rec.Body)
	assert.Equal(t, "/tasks/t1/status", rec.Header().Get("Location"))
	require.Len(t, f.started, 1)
	assert.Equal(t, store.StatusFailed, f.started[0].Status, "start gets the attempt that ended")
	st, err := f.tr.Get(t.Context(), "t1")
	require.NoError(t, err)
	assert.Equal(t, store.StatusPending, st.Status)
	assert.Equal(t, 2, st.Attempt)
	require.Len(t, st.PreviousAttempts, 1)
	assert.Equal(t, "boom", st.PreviousAttempts[0].ErrorMessage)

	// A start that fails leaves no attempt pending.
	f.startErr = errors.New("queue full")
	require.NoError(t, f.tr.Apply(t.Context(), "t1", tracker.Cancel(nil)))
	rec = f.post("/tasks/t1/retry", "")
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.NotEmpty(t, rec.Header().Get("Retry-After"))
	st, err = f.tr.Get(t.Context(), "t1")
	require.NoError(t, err)
	assert.Equal(t, store.StatusCanceled, st.Status)
	assert.Equal(t, 3, st.Attempt)
	assert.Equal(t, "not started: queue full", st.ErrorMessage)

	assert.Equal(t, http.StatusNotFound, f.post("/tasks/unknown/retry", "").Code)
	get := serve(f.mux, "/tasks/t1/retry")
	assert.Equal(t, http.StatusMethodNotAllowed, get.Code)
	assert.Equal(t, "POST", get.Header().Get("Allow"))
}

// TestActionsAuthorize: a task the authorization hook refuses is unknown
// to the cancel and retry handlers, and nothing is written.
func TestActionsAuthorize(t *testing.T) {
	f := newActionFixture(t, httpapi.WithAuthorize(func(*http.Request, store.State) error { return errors.New("no") }))
	run := f.running(t, "t1")
	require.NoError(t, run.Apply(t.Context(), tracker.Fail(errors.New("boom"), nil)))
	v := f.version(t, "t1")
	for _, target := range []string{"/tasks/t1/cancel", "/tasks/t1/retry"} {
		rec := f.post(target, "")
		assert.Equal(t, http.StatusNotFound, rec.Code, target)
		assert.Equal(t, "No task has this id.", problem(t, rec).Detail)
	}
	assert.Equal(t, v, f.version(t, "t1"))
	assert.Empty(t, f.started)
}

// TestActionsRefuseOtherSites: a form on a page of another site cannot
// cancel or retry a task with the user's cookies; the same request from
// the task's own site, or from a client that is not a browser, can.
func TestActionsRefuseOtherSites(t *testing.T) {
	f := newActionFixture(t)
	run := f.running(t, "t1")
	v := f.version(t, "t1")
	for _, target := range []string{"/tasks/t1/cancel", "/tasks/t1/retry"} {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, target, nil)
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		req.Header.Set("Origin", "https://evil.example")
		rec := httptest.NewRecorder()
		f.mux.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusForbidden, rec.Code, target)
	}
	assert.Equal(t, v, f.version(t, "t1"), "nothing was recorded")

	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/tasks/t1/cancel", nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	require.Equal(t, http.StatusAccepted, rec.Code, "body: %s", rec.Body)
	require.NoError(t, run.Apply(t.Context(), tracker.Cancel(errors.New("asked"))))
	assert.Equal(t, http.StatusAccepted, f.post("/tasks/t1/retry", "").Code, "a client without the headers of a browser")
}

func TestActionsStoreDown(t *testing.T) {
	f := newFixture(t)
	s := &downStore{watchCounter: f.store}
	s.down.Store(true)
	tr, err := tracker.New(s, tracker.WithErrorHandler(func(context.Context, error) {}))
	require.NoError(t, err)
	defer tr.Close(context.Background())
	status, err := httpapi.ParseStatusPath(pattern)
	require.NoError(t, err)
	quiet := httpapi.WithErrorHandler(func(context.Context, error) {})
	cancel, err := httpapi.CancelHandler(tr, status, quiet)
	require.NoError(t, err)
	retry, err := httpapi.RetryHandler(tr, status, func(context.Context, store.State) error { return nil }, quiet)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("POST /tasks/{id}/cancel", cancel)
	mux.Handle("POST /tasks/{id}/retry", retry)
	for _, target := range []string{"/tasks/t1/cancel", "/tasks/t1/retry"} {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, target, nil)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code, target)
		assert.NotEmpty(t, rec.Header().Get("Retry-After"), target)
	}
}

func TestActionHandlersRefuse(t *testing.T) {
	f := newFixture(t)
	status, err := httpapi.ParseStatusPath(pattern)
	require.NoError(t, err)
	start := func(context.Context, store.State) error { return nil }
	_, err = httpapi.CancelHandler(nil, status)
	require.ErrorContains(t, err, "nil tracker")
	_, err = httpapi.CancelHandler(f.tr, httpapi.StatusPath{})
	require.ErrorContains(t, err, "zero StatusPath")
	_, err = httpapi.RetryHandler(f.tr, status, nil)
	require.ErrorContains(t, err, "nil start")
	_, err = httpapi.RetryHandler(f.tr, status, start, httpapi.WithRetryAfter(0))
	require.ErrorContains(t, err, "WithRetryAfter")
}

func TestClientCancelRetry(t *testing.T) {
	f := newActionFixture(t)
	ctx := t.Context()
	f.running(t, "t 1")
	statusURL, err := f.client.Cancel(ctx, "/tasks/t%201/cancel", `"quoted" reason`)
	require.NoError(t, err)
	assert.Equal(t, f.srv.URL+"/tasks/t%201/status", statusURL)
	doc, err := f.client.Get(ctx, statusURL)
	require.NoError(t, err)
	assert.Equal(t, `"quoted" reason`, doc.CancelReason)

	_, err = f.client.Retry(ctx, "/tasks/t%201/retry")
	var rerr *httpapi.ResponseError
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, http.StatusConflict, rerr.StatusCode)

	_, err = f.client.Cancel(ctx, "/tasks/unknown/cancel", "")
	require.ErrorIs(t, err, store.ErrNotFound)

	body, err := json.Marshal(doc)
	require.NoError(t, err)
	assert.Contains(t, string(body), `"cancel_reason":"\"quoted\" reason"`)
}
