package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/pipeline"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if binDir != "" {
			os.RemoveAll(binDir)
		}
		os.Exit(code)
	}))
}

// httpClient makes the tests' requests. It keeps no idle connections,
// which would outlive the tests.
var httpClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   30 * time.Second,
}

// statusExtras are the fields the library's status document serves beyond
// the origin's, by the path of the object that holds them ("" for the
// document itself).
var statusExtras = map[string][]string{
	"": {"steps", "progress", "attempt", "version", "created_at", "updated_at", "lease_until", "abandoned", "incarnation", "kind", "labels",
		"cancel_requested_at", "cancel_reason", "previous_attempts"},
	"error_details": {pipeline.FailedStepKey},
}

// loadFixture returns the JSON object in testdata/name.
func loadFixture(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	var v map[string]any
	require.NoError(t, json.Unmarshal(b, &v), name)
	return v
}

// requireShape fails t unless got has the shape of the fixture want: the
// same field names, with values of the same JSON types, in every object
// (pipeline_steps, error_details), and no other fields but those extras
// allows.
func requireShape(t *testing.T, want, got map[string]any, extras map[string][]string) {
	t.Helper()
	if diffs := shapeDiff("", want, got, extras); len(diffs) > 0 {
		t.Fatalf("document does not match the fixture:\n\t%s\ndocument: %s",
			strings.Join(diffs, "\n\t"), mustJSON(got))
	}
}

// shapeDiff returns how the object got, at path, differs in shape from
// want: fields of want missing from got or holding another JSON type, and
// fields of got that are neither in want nor in extras[path]. It compares
// objects held in both field by field.
func shapeDiff(path string, want, got map[string]any, extras map[string][]string) []string {
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		p := joinPath(path, k)
		g, ok := got[k]
		if !ok {
			diffs = append(diffs, p+": missing")
			continue
		}
		wt, gt := jsonType(want[k]), jsonType(g)
		if wt != gt {
			diffs = append(diffs, fmt.Sprintf("%s: %s, want %s", p, gt, wt))
			continue
		}
		if wt == "object" {
			diffs = append(diffs, shapeDiff(p, want[k].(map[string]any), g.(map[string]any), extras)...)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok && !slices.Contains(extras[path], k) {
			diffs = append(diffs, joinPath(path, k)+": not in the fixture")
		}
	}
	return diffs
}

func joinPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// jsonType names the JSON type of v, a value decoded by encoding/json.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// response is an answer read whole.
type response struct {
	code   int
	header http.Header
	body   []byte
}

// object returns the body as a JSON object.
func (r *response) object(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal(r.body, &v), "body: %s", r.body)
	return v
}

// do makes a request and reads its answer.
func do(t *testing.T, method, url string, body []byte, header ...string) *response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return &response{code: resp.StatusCode, header: resp.Header, body: b}
}

// submit posts body, a JSON document, to the service at baseURL with the
// given correlation id ("" for none), requires a 200 answer and returns it.
func submit(t *testing.T, baseURL string, body map[string]any, correlationID string) map[string]any {
	t.Helper()
	header := []string{"Content-Type", "application/json"}
	if correlationID != "" {
		header = append(header, "X-Correlation-ID", correlationID)
	}
	resp := do(t, http.MethodPost, baseURL+"/process/document", []byte(mustJSON(body)), header...)
	require.Equal(t, http.StatusOK, resp.code, "body: %s", resp.body)
	return resp.object(t)
}

// request returns the fixture request with the given document id and
// metadata.
func request(t *testing.T, documentID string, metadata map[string]any) map[string]any {
	t.Helper()
	req := loadFixture(t, "request.json")
	req["document_id"] = documentID
	if metadata != nil {
		req["metadata"] = metadata
	}
	return req
}

// await follows the status at url with long polls until until accepts its
// document, and returns the document. It fails t if that takes more than
// 30 seconds.
func await(t *testing.T, url string, until func(doc map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	query := "?wait=5s"
	for time.Now().Before(deadline) {
		resp := do(t, http.MethodGet, url+query, nil)
		require.Equal(t, http.StatusOK, resp.code, "GET %s: %s", url, resp.body)
		doc := resp.object(t)
		if until(doc) {
			return doc
		}
		query = fmt.Sprintf("?wait=5s&version=%v", doc["version"])
	}
	t.Fatalf("%s: no awaited status within 30s", url)
	return nil
}

// ended reports whether doc is the status of a task that has ended.
func ended(doc map[string]any) bool {
	switch doc["status"] {
	case "success", "failed", "canceled":
		return true
	}
	return false
}

// running reports whether doc is the status of a running task.
func running(doc map[string]any) bool { return doc["status"] == "running" }

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Len returns the number of bytes written so far.
func (b *lockedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logLines returns the JSON log lines in b whose msg is msg and whose
// document_id is id.
func logLines(t *testing.T, b *lockedBuffer, msg, id string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for line := range strings.Lines(b.String()) {
		var v map[string]any
		if json.Unmarshal([]byte(line), &v) != nil {
			continue // not a log line, such as a race report
		}
		if v["msg"] == msg && v["document_id"] == id {
			lines = append(lines, v)
		}
	}
	return lines
}

// firstLine is a writer that sends the first line written to it, without
// its prefix, on a channel, and discards the rest.
type firstLine struct {
	prefix string
	ch     chan<- string
	buf    []byte
	sent   bool
}

func (w *firstLine) Write(p []byte) (int, error) {
	if w.sent {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	if line, _, ok := bytes.Cut(w.buf, []byte("\n")); ok {
		w.ch <- strings.TrimPrefix(string(line), w.prefix)
		w.sent = true
	}
	return len(p), nil
}

// waitAddr returns the address sent on ch, or fails t after 30 seconds or
// when done is closed first.
func waitAddr(t *testing.T, ch <-chan string, done <-chan struct{}) string {
	t.Helper()
	select {
	case addr := <-ch:
		return addr
	case <-done:
		t.Fatal("the service stopped before it listened")
	case <-time.After(30 * time.Second):
		t.Fatal("the service did not listen within 30s")
	}
	return ""
}

// wait returns the value received from ch, or fails t after d.
func wait[T any](t *testing.T, ch <-chan T, d time.Duration) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("nothing received within %v", d)
	}
	var zero T
	return zero
}
