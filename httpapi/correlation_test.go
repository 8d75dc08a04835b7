package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/tracker"
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestCorrelationHandler(t *testing.T) {
	long := strings.Repeat("a", tracker.MaxCorrelationIDLen)
	for _, tc := range []struct {
		name            string
		correlationID   string
		requestID       string
		want            string // "" means a new UUID
		headerUnchanged bool
	}{
		{name: "correlation id", correlationID: "abc-456-def", requestID: "req-1", want: "abc-456-def"},
		{name: "request id", requestID: "req-1", want: "req-1"},
		{name: "longest", correlationID: long, want: long},
		{name: "none"},
		{name: "too long", correlationID: long + "a"},
		{name: "space", correlationID: "abc def"},
		{name: "control", correlationID: "abc\x7f"},
		{name: "non-ASCII", correlationID: "abç"},
		{name: "invalid, then request id", correlationID: "a b", requestID: "req-2", want: "req-2"},
		{name: "both invalid", correlationID: "a b", requestID: "c d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen string
			h := httpapi.CorrelationHandler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				seen = tracker.CorrelationID(r.Context())
				assert.Equal(t, tc.correlationID, r.Header.Get(httpapi.CorrelationIDHeader), "request headers are left alone")
			}))
			req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/", nil)
			if tc.correlationID != "" {
				req.Header.Set(httpapi.CorrelationIDHeader, tc.correlationID)
			}
			if tc.requestID != "" {
				req.Header.Set(httpapi.RequestIDHeader, tc.requestID)
			}
			rec := httptestRecorder(h, req)
			got := rec.Header().Get(httpapi.CorrelationIDHeader)
			assert.Equal(t, got, seen, "the context holds the id echoed")
			if tc.want != "" {
				assert.Equal(t, tc.want, got)
			} else {
				assert.Regexp(t, uuidV4, got)
			}
		})
	}
}

func TestCorrelationIDsDiffer(t *testing.T) {
	h := httpapi.CorrelationHandler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	seen := make(map[string]bool)
	for range 100 {
		id := serve(h, "/").Header().Get(httpapi.CorrelationIDHeader)
		require.False(t, seen[id], "id %s made twice", id)
		seen[id] = true
	}
}

// TestCorrelationEndToEnd follows a correlation id from the submitting
// request's header, through the tracker's writes in the background work,
// to the status document, and checks the ids echoed on the way.
func TestCorrelationEndToEnd(t *testing.T) {
	f := newFixture(t)
	const mount = "GET /process/document/{document_id}/status"
	statusPath, err := httpapi.ParseStatusPath(mount)
	require.NoError(t, err)

	var work sync.WaitGroup
	defer work.Wait()
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle(mount, newHandler(t, f.store,
		httpapi.WithPathValue(statusPath.Wildcard()), httpapi.WithIDField("document_id")))
	mux.HandleFunc("POST /process/document", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			DocumentID string `json:"document_id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if err := f.tr.Apply(r.Context(), in.DocumentID, tracker.Create(seedSteps...)); err != nil {
			http.Error(w, "conflict", http.StatusConflict)
			return
		}
		ctx := context.WithoutCancel(r.Context()) // the work outlives the request
		work.Go(func() {
			<-release
			if run, err := f.tr.Start(ctx, in.DocumentID); err == nil {
				_ = run.Apply(ctx, tracker.Succeed())
			}
		})
		_ = httpapi.WriteAccepted(w, statusPath.URL(in.DocumentID), 0, map[string]any{"document_id": in.DocumentID})
	})
	srv := httptest.NewServer(httpapi.CorrelationHandler(mux))
	defer srv.Close()

	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/process/document", strings.NewReader(`{"document_id":"doc-123"}`))
	require.NoError(t, err)
	req.Header.Set(httpapi.CorrelationIDHeader, "abc-456-def")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Equal(t, "abc-456-def", resp.Header.Get(httpapi.CorrelationIDHeader))
	location := resp.Header.Get("Location")
	assert.Equal(t, "/process/document/doc-123/status", location)

	close(release)
	c := httpapi.Client{HTTPClient: srv.Client(), BaseURL: srv.URL, IDField: "document_id"}
	ctx := tracker.ContextWithCorrelationID(t.Context(), "poller-7")
	st, err := c.Wait(ctx, location)
	require.NoError(t, err)
	assert.Equal(t, "success", string(st.Status))
	assert.Equal(t, "abc-456-def", st.CorrelationID, "recorded by the background work")
	assert.Equal(t, "doc-123", st.ID)

	req, err = http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+location, nil)
	require.NoError(t, err)
	resp, err = srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var doc map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&doc))
	assert.Equal(t, "abc-456-def", doc["correlation_id"])
	assert.Regexp(t, uuidV4, resp.Header.Get(httpapi.CorrelationIDHeader), "the status request has its own id")
}
