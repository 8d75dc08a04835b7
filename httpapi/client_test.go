package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// clientFixture is a fixture served by a test server, with a Client.
type clientFixture struct {
	*fixture
	srv    *httptest.Server
	client *httpapi.Client
}

func newClientFixture(t *testing.T) *clientFixture {
	f := newFixture(t)
	srv := httptest.NewServer(f.handler(t))
	t.Cleanup(srv.Close)
	return &clientFixture{f, srv, &httpapi.Client{HTTPClient: srv.Client(), BaseURL: srv.URL}}
}

func TestClientGet(t *testing.T) {
	f := newClientFixture(t)
	ctx := t.Context()
	run := f.running(t, "t 1")
	require.NoError(t, run.Apply(ctx, tracker.SucceedStep(seedSteps[0])))
	require.NoError(t, run.Apply(ctx, tracker.SetProgress(store.Progress{Done: 1, Total: 5, Message: "one"})))
	require.NoError(t, run.Apply(ctx, tracker.SetResult(map[string]any{"entities_extracted": 42, "tags": []string{"a"}})))
	f.clock.Advance(1234 * time.Millisecond)
	require.NoError(t, run.Apply(ctx, tracker.Fail(errors.New("boom"), map[string]any{"project_id": "p"})))
	want, err := f.tr.Get(ctx, "t 1")
	require.NoError(t, err)

	for _, u := range []string{"/tasks/t%201/status", f.srv.URL + "/tasks/t%201/status"} {
		got, err := f.client.Get(ctx, u)
		require.NoError(t, err, u)
		assert.True(t, want.Equal(got.State), "got %+v\nwant %+v", got, want)
		assert.False(t, got.Abandoned)
	}

	_, err = (&httpapi.Client{}).Get(ctx, "/tasks/t%201/status")
	assert.ErrorContains(t, err, "relative")
}

func TestClientErrors(t *testing.T) {
	f := newClientFixture(t)
	_, err := f.client.Get(t.Context(), "/tasks/nope/status")
	require.ErrorIs(t, err, store.ErrNotFound)
	var rerr *httpapi.ResponseError
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, http.StatusNotFound, rerr.StatusCode)
	assert.Equal(t, http.StatusNotFound, rerr.Problem.Status)
	assert.Equal(t, "/tasks/nope/status", rerr.Problem.Instance)

	mux := http.NewServeMux()
	mux.Handle(pattern, newHandler(t, faultStore{f.store, store.ErrUnavailable},
		httpapi.WithErrorHandler(func(context.Context, error) {})))
	down := httptest.NewServer(mux)
	defer down.Close()
	_, err = f.client.Get(t.Context(), down.URL+"/tasks/t/status")
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, time.Second, rerr.RetryAfter)
	assert.NotErrorIs(t, err, store.ErrNotFound)
}

func TestClientWait(t *testing.T) {
	f := newClientFixture(t)
	f.running(t, "t")
	other := f.newTracker(t, f.mem) // another instance does the work

	done := make(chan error, 1)
	var got httpapi.Document
	go func() {
		var err error
		got, err = f.client.Wait(t.Context(), "/tasks/t/status")
		done <- err
	}()
	for i, step := range seedSteps {
		f.store.waitStarted(t, i+1) // the client long-polls, again after each change
		require.NoError(t, other.Apply(t.Context(), "t", tracker.SucceedStep(step)), "step %d", i)
	}
	f.store.waitStarted(t, len(seedSteps)+1)
	require.NoError(t, other.Apply(t.Context(), "t", tracker.SetResult(map[string]any{"vector_indexed": true})))
	require.NoError(t, other.Apply(t.Context(), "t", tracker.Succeed()))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(hangGuard):
		t.Fatal("Wait did not return")
	}
	assert.Equal(t, store.StatusSuccess, got.Status)
	assert.JSONEq(t, "true", string(got.Result["vector_indexed"]))
	assert.Equal(t, f.version(t, "t"), got.Version)
}

func TestClientWaitTimeout(t *testing.T) {
	f := newClientFixture(t)
	f.running(t, "t")
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	st, err := f.client.Wait(ctx, "/tasks/t/status")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, store.StatusRunning, st.Status, "the last state read")
	f.store.waitFor(t, 0)
}

func TestClientWaitNotFound(t *testing.T) {
	f := newClientFixture(t)
	_, err := f.client.Wait(t.Context(), "/tasks/nope/status")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

// TestClientWaitRetries checks that Wait waits out 503 answers and polls a
// server that does not long-poll, honouring Retry-After.
func TestClientWaitRetries(t *testing.T) {
	var requests atomic.Int64
	answers := []func(w http.ResponseWriter, r *http.Request){
		func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
		},
		func(w http.ResponseWriter, r *http.Request) {
			assert.Empty(t, r.Header.Get("If-None-Match"))
			fmt.Fprint(w, `{"task_id":"t","status":"running","version":1,"attempt":1}`)
		},
		func(w http.ResponseWriter, r *http.Request) {
			assert.Equal(t, `"v1"`, r.Header.Get("If-None-Match"))
			assert.NotEmpty(t, r.URL.Query().Get("wait"))
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusNotModified) // at once: no long poll
		},
		func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, `{"task_id":"t","status":"canceled","version":2,"attempt":1,"error_message":"stop"}`)
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		if n > int64(len(answers)) {
			t.Errorf("request %d: too many", n)
			w.WriteHeader(http.StatusTeapot)
			return
		}
		answers[n-1](w, r)
	}))
	defer srv.Close()

	c := &httpapi.Client{HTTPClient: srv.Client(), PollWait: time.Minute}
	st, err := c.Wait(t.Context(), srv.URL+"/t")
	require.NoError(t, err)
	assert.Equal(t, store.StatusCanceled, st.Status)
	assert.Equal(t, "stop", st.ErrorMessage)
	assert.EqualValues(t, len(answers), requests.Load())
}

func TestClientBadDocument(t *testing.T) {
	for _, body := range []string{`not json`, `{"status":"done"}`, `{"status":"success","version":"7"}`, `[]`} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, body)
		}))
		_, err := (&httpapi.Client{HTTPClient: srv.Client()}).Get(t.Context(), srv.URL)
		require.Error(t, err, body)
		srv.Close()
	}
}

// TestClientWaitAbandoned checks that Wait gives up on a task that the
// server says was abandoned: its lease ended before it did, by the
// server's clock.
func TestClientWaitAbandoned(t *testing.T) {
	f := newClientFixture(t)
	f.leased(t, f.mem)
	before, err := f.client.Get(t.Context(), "/tasks/t/status")
	require.NoError(t, err)
	require.False(t, before.Abandoned)

	done := make(chan error, 1)
	var got httpapi.Document
	go func() {
		var err error
		got, err = f.client.Wait(t.Context(), "/tasks/t/status")
		done <- err
	}()
	f.store.waitFor(t, 1)
	f.clock.waitPending(t, 1) // the server waits for the lease to end
	f.clock.Advance(leaseTime + time.Millisecond)
	select {
	case err := <-done:
		require.ErrorIs(t, err, httpapi.ErrAbandoned)
	case <-time.After(hangGuard):
		t.Fatal("Wait did not return")
	}
	assert.True(t, got.Abandoned)
	assert.Equal(t, store.StatusRunning, got.Status)
	assert.True(t, before.LeaseUntil.Equal(got.LeaseUntil), "lease_until %v, want %v", got.LeaseUntil, before.LeaseUntil)
	f.store.waitFor(t, 0)
}
