package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// discard is a ResponseWriter that keeps the status code and drops the
// body.
type discard struct {
	header http.Header
	code   int
	n      int
	timed  bool      // whether to note at
	at     time.Time // when the header was written
}

func newDiscard() *discard { return &discard{header: make(http.Header)} }

func (d *discard) Header() http.Header { return d.header }

func (d *discard) WriteHeader(code int) {
	d.code = code
	if d.timed {
		d.at = time.Now()
	}
}

func (d *discard) Write(p []byte) (int, error) {
	if d.code == 0 {
		d.WriteHeader(http.StatusOK)
	}
	d.n += len(p)
	return len(p), nil
}

func (d *discard) reset() {
	clear(d.header)
	d.code, d.n = 0, 0
}

// benchServe measures h serving req, which must answer 200, and reports
// the bytes of its body.
func benchServe(b *testing.B, h http.Handler, req *http.Request) {
	b.Helper()
	w := newDiscard()
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
	b.ReportMetric(float64(w.n), "body-bytes")
}

// benchTask makes task doc-123 what a status poll typically finds: the
// origin's five steps, three done and one running, progress, result
// fields and a correlation id.
func benchTask(tb testing.TB, f *fixture) {
	tb.Helper()
	const id = "doc-123"
	ctx := tracker.ContextWithCorrelationID(context.Background(), "c9a7f417-c2d2-48a3-802b-fa00e20dd207")
	require.NoError(tb, f.tr.Apply(ctx, id, tracker.Create(seedSteps...)))
	run, err := f.tr.Start(ctx, id)
	require.NoError(tb, err)
	for _, s := range seedSteps[:3] {
		f.clock.Advance(137 * time.Millisecond)
		require.NoError(tb, errors.Join(run.Apply(ctx, tracker.StartStep(s)), run.Apply(ctx, tracker.SucceedStep(s))))
	}
	require.NoError(tb, errors.Join(
		run.Apply(ctx, tracker.StartStep(seedSteps[3])),
		run.Apply(ctx, tracker.SetProgress(store.Progress{Done: 3, Total: 5, Message: "indexing vectors"})),
		run.Apply(ctx, tracker.SetResult(map[string]any{"entities_extracted": 42, "project_id": "my-project"}))))
}

// statusRequest returns a request for the status of id, as the mux would
// pass it to the handler.
func statusRequest(id, query string) *http.Request {
	req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/tasks/"+id+"/status"+query, nil)
	req.SetPathValue("id", id)
	return req
}

// BenchmarkStatusGET measures a status poll of a running task on memstore,
// to compare with BenchmarkBareHandler.
func BenchmarkStatusGET(b *testing.B) {
	f := newFixture(b)
	benchTask(b, f)
	h := newHandler(b, f.mem)
	req := statusRequest("doc-123", "")
	benchServe(b, h, req)
}

// BenchmarkStatusGETOverHTTP measures BenchmarkStatusGET's poll as a
// client sees it: a request over a loopback connection, answered by a
// server, and its body read.
func BenchmarkStatusGETOverHTTP(b *testing.B) {
	f := newFixture(b)
	benchTask(b, f)
	mux := http.NewServeMux()
	mux.Handle(pattern, newHandler(b, f.mem))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := srv.Client()
	url := srv.URL + "/tasks/doc-123/status"
	b.ReportAllocs()
	for b.Loop() {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		require.NoError(b, err)
		resp, err := client.Do(req)
		require.NoError(b, err)
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d, %v", resp.StatusCode, err)
		}
	}
}

// fixedStore hands out one state without copying it, at no cost.
type fixedStore struct {
	store.Store
	st store.State
}

func (s fixedStore) Get(context.Context, string) (store.State, error) { return s.st, nil }

// BenchmarkStatusGETHandler measures BenchmarkStatusGET's poll over a
// store whose Get costs nothing: the handler's own cost.
func BenchmarkStatusGETHandler(b *testing.B) {
	f := newFixture(b)
	benchTask(b, f)
	st, err := f.mem.Get(context.Background(), "doc-123")
	require.NoError(b, err)
	h := newHandler(b, fixedStore{f.mem, st})
	req := statusRequest("doc-123", "")
	benchServe(b, h, req)
}

// BenchmarkBareHandler measures a net/http handler that writes the bytes
// BenchmarkStatusGET's handler writes, headers and body, from memory.
func BenchmarkBareHandler(b *testing.B) {
	f := newFixture(b)
	benchTask(b, f)
	rec := httptest.NewRecorder()
	newHandler(b, f.mem).ServeHTTP(rec, statusRequest("doc-123", ""))
	require.Equal(b, http.StatusOK, rec.Code)
	body := rec.Body.Bytes()
	etag, length, retry := rec.Header().Get("ETag"), rec.Header().Get("Content-Length"), rec.Header().Get("Retry-After")
	bare := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hdr := w.Header()
		hdr.Set("Cache-Control", "no-store")
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("ETag", etag)
		hdr.Set("Retry-After", retry)
		hdr.Set("Content-Type", "application/json")
		hdr.Set("Content-Length", length)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
	benchServe(b, bare, statusRequest("doc-123", ""))
}

// releaseWaiters long-polls task id with n requests, ends the task once all
// of them wait, and returns how long after the write each was answered.
func releaseWaiters(tb testing.TB, f *fixture, h http.Handler, id string, n int) []time.Duration {
	tb.Helper()
	query := fmt.Sprintf("?wait=1m&version=%d", f.version(tb, id))
	writers := make([]*discard, n)
	var wg sync.WaitGroup
	for i := range writers {
		w, req := newDiscard(), statusRequest(id, query)
		w.timed = true
		writers[i] = w
		wg.Go(func() { h.ServeHTTP(w, req) })
	}
	f.store.waitFor(tb, n)
	start := time.Now()
	f.apply(tb, id, tracker.Succeed())
	wg.Wait()
	final := fmt.Sprintf(`"v%d"`, f.version(tb, id))
	latencies := make([]time.Duration, n)
	for i, w := range writers {
		require.Equal(tb, http.StatusOK, w.code, "waiter %d", i)
		require.Equal(tb, final, w.header.Get("ETag"), "waiter %d", i)
		latencies[i] = w.at.Sub(start)
	}
	slices.Sort(latencies)
	f.store.waitFor(tb, 0)
	return latencies
}

// BenchmarkLongPollRelease measures how soon 10,000 long polls of one task
// are answered after the task ends: the reported max-release-ms is the
// last one's delay.
func BenchmarkLongPollRelease(b *testing.B) {
	const waiters = 10_000
	f := newFixture(b)
	h := newHandler(b, f.store, httpapi.WithMaxWatchers(waiters))
	var worst, median time.Duration
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprint("doc-", i)
		f.running(b, id)
		latencies := releaseWaiters(b, f, h, id, waiters)
		worst = max(worst, latencies[waiters-1])
		median = max(median, latencies[waiters/2])
	}
	b.ReportMetric(float64(worst)/float64(time.Millisecond), "max-release-ms")
	b.ReportMetric(float64(median)/float64(time.Millisecond), "p50-release-ms")
}

// sseSink is the ResponseWriter of one event stream: each flushed event
// counts one delivery on delivered.
type sseSink struct {
	header    http.Header
	pending   []byte
	delivered *sync.WaitGroup
}

func (s *sseSink) Header() http.Header { return s.header }

func (s *sseSink) WriteHeader(int) {}

func (s *sseSink) Write(p []byte) (int, error) {
	s.pending = append(s.pending, p...)
	return len(p), nil
}

func (s *sseSink) Flush() {
	if bytes.HasPrefix(s.pending, []byte("id: ")) || bytes.Contains(s.pending, []byte("\nid: ")) {
		s.delivered.Done()
	}
	s.pending = s.pending[:0]
}

// BenchmarkSSEFanOut measures one change of a task delivered to 1,000
// event streams that follow it: ns/op is the time from the write until
// the last stream has flushed the event, ns/delivery that per stream.
func BenchmarkSSEFanOut(b *testing.B) {
	const streams = 1000
	f := newFixture(b)
	run := f.running(b, "doc")
	h := newHandler(b, f.store, httpapi.WithMaxWatchers(streams), httpapi.WithHeartbeat(0))
	var delivered, ended sync.WaitGroup
	delivered.Add(streams) // the first event: the current state
	for range streams {
		req := statusRequest("doc", "")
		req.Header.Set("Accept", "text/event-stream")
		w := &sseSink{header: make(http.Header), delivered: &delivered}
		ended.Go(func() { h.ServeHTTP(w, req) })
	}
	delivered.Wait()
	f.store.waitFor(b, streams)

	ctx := context.Background()
	var done int64
	for b.Loop() {
		done++
		delivered.Add(streams)
		require.NoError(b, run.Apply(ctx, tracker.SetProgress(store.Progress{Done: done})))
		delivered.Wait()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*streams), "ns/delivery")

	delivered.Add(streams) // the terminal event ends every stream
	require.NoError(b, run.Apply(ctx, tracker.Succeed()))
	ended.Wait()
}

// dashboardTasks makes 50 tasks, a dashboard page's worth, as a list
// typically finds them: of a kind, with two labels, the origin's five
// steps; one in three failed with an error and its details, one in three
// succeeded with results, the others running with progress.
func dashboardTasks(tb testing.TB, f *fixture) {
	tb.Helper()
	ctx := tracker.ContextWithCorrelationID(context.Background(), "c9a7f417-c2d2-48a3-802b-fa00e20dd207")
	for i := range 50 {
		id := fmt.Sprintf("doc-%03d", i)
		require.NoError(tb, f.tr.Apply(ctx, id, tracker.Create(seedSteps...), tracker.Kind("document"),
			tracker.Label("project_id", "my-project"), tracker.Label("tenant", "acme")))
		run, err := f.tr.Start(ctx, id)
		require.NoError(tb, err)
		for _, s := range seedSteps[:3] {
			f.clock.Advance(137 * time.Millisecond)
			require.NoError(tb, errors.Join(run.Apply(ctx, tracker.StartStep(s)), run.Apply(ctx, tracker.SucceedStep(s))))
		}
		require.NoError(tb, run.Apply(ctx, tracker.StartStep(seedSteps[3]),
			tracker.SetProgress(store.Progress{Done: 3, Total: 5, Message: "indexing vectors"}),
			tracker.SetResult(map[string]any{"entities_extracted": 42})))
		switch i % 3 {
		case 0:
			cause := errors.New("Vector indexing failed: Connection refused")
			require.NoError(tb, run.Apply(ctx, tracker.FailStep(seedSteps[3], cause),
				tracker.Fail(cause, map[string]any{"source_path": "archon://projects/my-project/documents/" + id})))
		case 1:
			require.NoError(tb, run.Apply(ctx, tracker.SucceedStep(seedSteps[3]), tracker.StartStep(seedSteps[4]),
				tracker.SucceedStep(seedSteps[4]), tracker.SetResult(map[string]any{"vector_indexed": true}), tracker.Succeed()))
		}
	}
}

// dashboardPage returns a dashboard over the fixture's tasks, and the
// request for its list page of 50 tasks.
func dashboardPage(tb testing.TB, f *fixture) (http.Handler, *http.Request) {
	tb.Helper()
	status, err := httpapi.ParseStatusPath(pattern)
	require.NoError(tb, err)
	h, err := httpapi.DashboardHandler(f.tr, f.mem, status, func(context.Context, store.State) error { return nil },
		httpapi.WithClock(f.clock))
	require.NoError(tb, err)
	return h, httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/?page_size=50", nil)
}

// serveDashboardPage serves the dashboard's list page of the fixture's 50
// tasks, requires all of them listed, and returns the answer.
func serveDashboardPage(tb testing.TB, f *fixture) *httptest.ResponseRecorder {
	tb.Helper()
	h, req := dashboardPage(tb, f)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(tb, http.StatusOK, rec.Code)
	require.Equal(tb, 50, bytes.Count(rec.Body.Bytes(), []byte(`href="tasks/`)), "tasks listed")
	return rec
}

// BenchmarkDashboardPage measures the dashboard's list page of 50 tasks,
// rendered on the server from memstore: counts, a page of the list, and
// the HTML. Compare with BenchmarkDashboardBare.
func BenchmarkDashboardPage(b *testing.B) {
	f := newFixture(b)
	dashboardTasks(b, f)
	h, req := dashboardPage(b, f)
	benchServe(b, h, req)
}

// BenchmarkDashboardBare measures a net/http handler that writes the bytes
// of BenchmarkDashboardPage's page from memory.
func BenchmarkDashboardBare(b *testing.B) {
	f := newFixture(b)
	dashboardTasks(b, f)
	rec := serveDashboardPage(b, f)
	body, hdr := rec.Body.Bytes(), rec.Header()
	bare := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range hdr {
			w.Header()[k] = v
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
	benchServe(b, bare, httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/", nil))
}

// BenchmarkDashboardListJSON measures ListHandler's answer for the tasks
// of BenchmarkDashboardPage: the same page as JSON documents, the
// endpoint's cost to compare the HTML page with.
func BenchmarkDashboardListJSON(b *testing.B) {
	f := newFixture(b)
	dashboardTasks(b, f)
	h, err := httpapi.ListHandler(f.mem, httpapi.WithClock(f.clock))
	require.NoError(b, err)
	req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/tasks?page_size=50", nil)
	benchServe(b, h, req)
}
