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
	clock *fakeClock
	mem   *memstore.Store
	store *watchCounter
	tr    *tracker.Tracker
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	clock := newFakeClock(t0)
	mem, err := memstore.New(memstore.WithClock(clock.Now))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, mem.Close()) })
	f := &fixture{clock: clock, mem: mem, store: newWatchCounter(mem)}
	f.tr = f.newTracker(t, mem)
	return f
}

// newTracker returns another tracker over s, on the fixture's clock, as
// another service instance would have, with options added.
func (f *fixture) newTracker(t testing.TB, s store.Store, opts ...tracker.Option) *tracker.Tracker {
	t.Helper()
	opts = append([]tracker.Option{tracker.WithClock(f.clock.Now),
		tracker.WithErrorHandler(func(context.Context, error) {})}, opts...)
	tr, err := tracker.New(s, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr.Close(context.Background())) })
	return tr
}

// newHandler returns the status handler over s with opts.
func newHandler(t testing.TB, s store.Store, opts ...httpapi.Option) http.Handler {
	t.Helper()
	h, err := httpapi.StatusHandler(s, opts...)
	require.NoError(t, err)
	return h
}

// handler returns the status handler over the fixture's store, on its
// clock, mounted on pattern.
func (f *fixture) handler(t testing.TB, opts ...httpapi.Option) http.Handler {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(pattern, newHandler(t, f.store, append([]httpapi.Option{httpapi.WithClock(f.clock)}, opts...)...))
	return mux
}

// create creates task id with steps.
func (f *fixture) create(t testing.TB, id string, steps ...string) {
	t.Helper()
	require.NoError(t, f.tr.Apply(context.Background(), id, tracker.Create(steps...)))
}

// running creates task id with the origin's steps and starts it.
func (f *fixture) running(t testing.TB, id string) *tracker.Run {
	t.Helper()
	f.create(t, id, seedSteps...)
	run, err := f.tr.Start(context.Background(), id)
	require.NoError(t, err)
	return run
}

// apply makes changes to task id, by id.
func (f *fixture) apply(t testing.TB, id string, changes ...tracker.Change) {
	t.Helper()
	require.NoError(t, f.tr.Apply(context.Background(), id, changes...))
}

// version returns the current version of task id.
func (f *fixture) version(t testing.TB, id string) int64 {
	t.Helper()
	st, err := f.tr.Get(context.Background(), id)
	require.NoError(t, err)
	return st.Version
}

// put stores st as written, for states a tracker would not write.
func (f *fixture) put(t testing.TB, st store.State) {
	t.Helper()
	require.NoError(t, f.mem.Put(context.Background(), store.Write{State: st}))
}

// leased starts task "t" through a tracker over s whose writes renew a
// lease of 5 seconds, and returns the tracker and the task's Run.
func (f *fixture) leased(t *testing.T, s store.Store) (*tracker.Tracker, *tracker.Run) {
	t.Helper()
	const id = "t"
	tr := f.newTracker(t, s, tracker.WithLease(leaseTime))
	require.NoError(t, tr.Apply(t.Context(), id, tracker.Create(seedSteps...)))
	run, err := tr.Start(t.Context(), id)
	require.NoError(t, err)
	return tr, run
}

const leaseTime = 5 * time.Second

// fakeClock is a manual httpapi.Clock: its time moves only when Advance
// is called, which ends the waits due by then. It counts its waits, so
// that a test can wait for a handler to wait.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waits   map[*fakeWait]struct{}
	made    int           // waits ever made
	changed chan struct{} // closed and replaced when a wait is made or ends
}

type fakeWait struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(start time.Time) *fakeClock {
	return &fakeClock{now: start.UTC(), waits: make(map[*fakeWait]struct{}), changed: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := &fakeWait{at: c.now.Add(d), ch: make(chan time.Time, 1)}
	c.made++
	c.waits[w] = struct{}{}
	c.fire()
	return w.ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.waits[w]; ok {
			delete(c.waits, w)
			c.signal()
		}
	}
}

// Advance moves the clock forward by d.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fire()
}

// fire ends the waits due. c.mu is held.
func (c *fakeClock) fire() {
	for w := range c.waits {
		if !w.at.After(c.now) {
			w.ch <- c.now
			delete(c.waits, w)
		}
	}
	c.signal()
}

func (c *fakeClock) signal() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// waitPending waits until n waits are under way.
func (c *fakeClock) waitPending(t testing.TB, n int) {
	t.Helper()
	c.waitUntil(t, func() bool { return len(c.waits) == n }, "%d waits under way, want %d", func() int { return len(c.waits) }, n)
}

// waitMade waits until n waits have been made in all.
func (c *fakeClock) waitMade(t testing.TB, n int) {
	t.Helper()
	c.waitUntil(t, func() bool { return c.made >= n }, "%d waits made, want %d", func() int { return c.made }, n)
}

// waitUntil waits until done, called with c.mu held, reports true.
func (c *fakeClock) waitUntil(t testing.TB, done func() bool, format string, got func() int, want int) {
	t.Helper()
	timeout := time.After(hangGuard)
	for {
		c.mu.Lock()
		ok, changed, n := done(), c.changed, got()
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

// loudStore delivers every write to watchers, lease renewals too, as a
// store may do (after a reconnect, say).
type loudStore struct{ *memstore.Store }

func (s loudStore) Put(ctx context.Context, w store.Write) error {
	w.Quiet = false
	return s.Store.Put(ctx, w)
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
	c.started++
	c.mu.Unlock()
	c.add(1)
	context.AfterFunc(ctx, func() { c.add(-1) })
	return ch, nil
}

// startedCount returns how many watches were started in all.
func (c *watchCounter) startedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started
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
