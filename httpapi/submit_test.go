package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/httpapi"
)

func TestParseStatusPath(t *testing.T) {
	for _, tc := range []struct {
		pattern  string
		wildcard string
		url      string // of the id "doc-123"
	}{
		{"GET /process/document/{document_id}/status", "document_id", "/process/document/doc-123/status"},
		{"/tasks/{id}", "id", "/tasks/doc-123"},
		{"{id}", "", ""},
		{"/{id}/", "id", "/doc-123/"},
		{"GET example.com/t/{id}/status", "id", "/t/doc-123/status"},
		{"HEAD  /t/{id}", "id", "/t/doc-123"},
		{"/tasks/status", "", ""},
		{"/a/{x}/{y}", "", ""},
		{"/a/{id...}", "", ""},
		{"/a/x{id}", "", ""},
		{"/a/{$}", "", ""},
		{"/a/{}", "", ""},
		{"GET", "", ""},
	} {
		p, err := httpapi.ParseStatusPath(tc.pattern)
		if tc.wildcard == "" {
			require.Error(t, err, tc.pattern)
			continue
		}
		require.NoError(t, err, tc.pattern)
		assert.Equal(t, tc.wildcard, p.Wildcard(), tc.pattern)
		assert.Equal(t, tc.url, p.URL("doc-123"), tc.pattern)
	}
}

// TestStatusPathRoundTrip checks that the URL built for an id reaches the
// handler with that id, whatever characters it has.
func TestStatusPathRoundTrip(t *testing.T) {
	f := newFixture(t)
	const mount = "GET /process/document/{document_id}/status"
	p, err := httpapi.ParseStatusPath(mount)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle(mount, newHandler(t, f.store, httpapi.WithPathValue(p.Wildcard()), httpapi.WithIDField("document_id")))

	for _, id := range []string{"doc-123", "a b/c?d#e%f", "ünï/cödé", "...", "%2F", "a+b&c=d;e"} {
		f.running(t, id)
		u := p.URL(id)
		rec := serve(mux, u)
		require.Equal(t, http.StatusOK, rec.Code, "id %q, URL %s: %s", id, u, rec.Body)
		assert.Equal(t, id, document(t, rec.Body.Bytes())["document_id"])
	}
	assert.Equal(t, "/process/document/a%20b%2Fc%3Fd%23e%25f/status", p.URL("a b/c?d#e%f"))
}

// seedResponse is the origin service's answer to POST /process/document,
// but for status_url, which WriteSubmitted adds.
type seedResponse struct {
	Success           bool   `json:"success"`
	DocumentID        string `json:"document_id"`
	ProjectID         string `json:"project_id"`
	EntitiesExtracted int    `json:"entities_extracted"`
	Status            string `json:"status"`
	Message           string `json:"message"`
}

func TestWriteSubmitted(t *testing.T) {
	rec := httptest.NewRecorder()
	require.NoError(t, httpapi.WriteSubmitted(rec, "/process/document/doc-123/status", seedResponse{
		Success:           true,
		DocumentID:        "doc-123",
		ProjectID:         "my-project",
		EntitiesExtracted: 42,
		Status:            "processing_queued",
		Message:           "Document queued for vectorization and indexing. Check status_url for completion.",
	}))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	assert.Empty(t, rec.Header().Get("Location"))
	assert.JSONEq(t, `{
  "success": true,
  "document_id": "doc-123",
  "project_id": "my-project",
  "entities_extracted": 42,
  "status": "processing_queued",
  "status_url": "/process/document/doc-123/status",
  "message": "Document queued for vectorization and indexing. Check status_url for completion."
}`, rec.Body.String())

	for _, body := range []any{nil, map[string]any{}} {
		rec = httptest.NewRecorder()
		require.NoError(t, httpapi.WriteSubmitted(rec, "/s", body))
		assert.JSONEq(t, `{"status_url":"/s"}`, rec.Body.String())
	}
}

func TestWriteAccepted(t *testing.T) {
	for retry, want := range map[time.Duration]string{0: "1", 1500 * time.Millisecond: "2", 5 * time.Second: "5"} {
		rec := httptest.NewRecorder()
		require.NoError(t, httpapi.WriteAccepted(rec, "/tasks/t%201/status", retry, map[string]string{"id": "t 1"}))
		assert.Equal(t, http.StatusAccepted, rec.Code)
		assert.Equal(t, "/tasks/t%201/status", rec.Header().Get("Location"))
		assert.Equal(t, want, rec.Header().Get("Retry-After"))
		assert.JSONEq(t, `{"id":"t 1","status_url":"/tasks/t%201/status"}`, rec.Body.String())
	}
}

func TestWriteSubmittedBadBody(t *testing.T) {
	for _, body := range []any{
		[]int{1},
		"text",
		map[string]string{"status_url": "/elsewhere"},
		struct {
			URL string `json:"status_url"`
		}{"/elsewhere"},
		func() {},
	} {
		rec := httptest.NewRecorder()
		require.Error(t, httpapi.WriteSubmitted(rec, "/s", body), "%#v", body)
		assert.Empty(t, rec.Header(), "nothing written")
		assert.Empty(t, rec.Body.String(), "nothing written")
		assert.False(t, rec.Flushed)
	}
}

func TestWriteSubmittedWriteError(t *testing.T) {
	err := httpapi.WriteSubmitted(failingWriter{httptest.NewRecorder()}, "/s", nil)
	assert.ErrorIs(t, err, context.Canceled)
}

// failingWriter is a ResponseWriter whose writes fail.
type failingWriter struct{ *httptest.ResponseRecorder }

func (failingWriter) Write([]byte) (int, error) { return 0, context.Canceled }
