package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/store/storetest"
	"github.com/taskstatus/taskstatus/tracker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the origin document's start time.
var t0 = time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC)

// hangGuard bounds every wait of a test for something that should happen.
const hangGuard = 10 * time.Second

// pattern is where the tests mount the status handler.
const pattern = "GET /tasks/{id}/status"

// seedSteps are the origin service's pipeline steps.
var seedSteps = []string{"file_node_creation", "memgraph_storage", "embedding_generation", "qdrant_indexing", "freshness_analysis"}

// fixture is a tracker over a memstore on a manual clock, with the store's
// watches counted.
type fixture struct {
	clock *storetest.Clock
	mem   *memstore.Store
	store *watchCounter
	tr    *tracker.Tracker
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	clock := storetest.NewClock(t0)
	mem, err := memstore.New(memstore.WithClock(clock.Now))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, mem.Close()) })
	f := &fixture{clock: clock, mem: mem, store: newWatchCounter(mem)}
	f.tr = f.newTracker(t)
	return f
}

// newTracker returns another tracker over the fixture's store, as another
// service instance would have.
func (f *fixture) newTracker(t testing.TB) *tracker.Tracker {
	t.Helper()
	tr, err := tracker.New(f.mem, tracker.WithClock(f.clock.Now),
		tracker.WithErrorHandler(func(context.Context, error) {}))
	require.NoError(t, err)
	return tr
}

// handler returns the status handler over the fixture's store, mounted on
// pattern.
func (f *fixture) handler(opts ...httpapi.Option) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(pattern, httpapi.StatusHandler(f.store, opts...))
	return mux
}

// running creates task id with the origin's steps and starts it.
func (f *fixture) running(t testing.TB, id string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, f.tr.Create(ctx, id, seedSteps...))
	require.NoError(t, f.tr.Start(ctx, id))
}

// version returns the current version of task id.
func (f *fixture) version(t testing.TB, id string) int64 {
	t.Helper()
	st, err := f.tr.Get(context.Background(), id)
	require.NoError(t, err)
	return st.Version
}

// serve answers a request for target made by h, with headers given as
// name, value pairs.
func serve(h http.Handler, target string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, target, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// document decodes a status document.
func document(t testing.TB, body []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	require.NoError(t, json.Unmarshal(body, &doc), "body: %s", body)
	return doc
}

// problem decodes a problem document and checks its media type.
func problem(t testing.TB, rec *httptest.ResponseRecorder) httpapi.Problem {
	t.Helper()
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	var p httpapi.Problem
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p), "body: %s", rec.Body)
	return p
}

// watchCounter counts the watches of a memstore whose context has not
// ended: a handler that cancels a watch's context frees it.
type watchCounter struct {
	*memstore.Store

	mu       sync.Mutex
	active   int
	started  int           // watches ever started
	changed  chan struct{} // closed and replaced on every change of active
	deadline time.Time     // of the last watch's context
}

func newWatchCounter(s *memstore.Store) *watchCounter {
	return &watchCounter{Store: s, changed: make(chan struct{})}
}

func (c *watchCounter) Watch(ctx context.Context, id string) (<-chan store.State, error) {
	ch, err := c.Store.Watch(ctx, id)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	c.mu.Lock()
	c.deadline = deadline
	c.mu.Unlock()
	c.mu.Lock()
	c.started++
	c.mu.Unlock()
	c.add(1)
	context.AfterFunc(ctx, func() { c.add(-1) })
	return ch, nil
}

// lastDeadline returns the deadline of the last watch's context.
func (c *watchCounter) lastDeadline() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline
}

func (c *watchCounter) add(d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active += d
	close(c.changed)
	c.changed = make(chan struct{})
}

// waitFor waits until n watches are active. A count that is reached and
// left again before waitFor looks may be missed: to follow a client that
// watches again at once, use waitStarted.
func (c *watchCounter) waitFor(t testing.TB, n int) {
	t.Helper()
	c.waitUntil(t, func() bool { return c.active == n }, "%d watches active, want %d", &c.active, n)
}

// waitStarted waits until n watches have been started in all, and the
// last of them is active.
func (c *watchCounter) waitStarted(t testing.TB, n int) {
	t.Helper()
	c.waitUntil(t, func() bool { return c.started >= n && c.active > 0 }, "%d watches started, want %d", &c.started, n)
}

// waitUntil waits until done, called with c.mu held, reports true.
func (c *watchCounter) waitUntil(t testing.TB, done func() bool, format string, got *int, want int) {
	t.Helper()
	timeout := time.After(hangGuard)
	for {
		c.mu.Lock()
		ok, changed, n := done(), c.changed, *got
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf(format, n, want)
		}
	}
}

// event is one Server-Sent Event, or a comment.
type event struct {
	id, name, data, retry string
	comment               string
}

// readEvents parses the event stream r into the returned channel, which is
// closed at the end of the stream.
func readEvents(r io.Reader) <-chan event {
	ch := make(chan event, 16)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		var ev event
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				ch <- ev
				ev = event{}
				continue
			}
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "":
				ev.comment = value
			case "id":
				ev.id = value
			case "event":
				ev.name = value
			case "data":
				ev.data = value
			case "retry":
				ev.retry = value
			}
		}
	}()
	return ch
}

// next returns the next event of ch; ok is false at the end of the stream.
func next(t testing.TB, ch <-chan event) (ev event, ok bool) {
	t.Helper()
	select {
	case ev, ok = <-ch:
		return ev, ok
	case <-time.After(hangGuard):
		t.Fatal("no event")
		return event{}, false
	}
}

// streamed is an answer to a request for an event stream.
type streamed struct {
	code   int
	header http.Header
	events <-chan event
	close  func() // closes the body
}

// stream opens an event stream of target on srv, with headers given as
// name, value pairs. The stream is closed when t ends.
func stream(ctx context.Context, t testing.TB, srv *httptest.Server, target string, headers ...string) streamed {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+target, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	closeBody := func() { resp.Body.Close() }
	t.Cleanup(closeBody)
	return streamed{resp.StatusCode, resp.Header, readEvents(resp.Body), closeBody}
}

// httptestRecorder answers req with h.
func httptestRecorder(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
