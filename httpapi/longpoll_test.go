package httpapi_test

import (
	"context"
	"fmt"
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

// serveAsync answers req with h on another goroutine.
func serveAsync(h http.Handler, req *http.Request) <-chan *httptest.ResponseRecorder {
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		done <- rec
	}()
	return done
}

// await returns the answer of serveAsync.
func await(t testing.TB, done <-chan *httptest.ResponseRecorder) *httptest.ResponseRecorder {
	t.Helper()
	select {
	case rec := <-done:
		return rec
	case <-time.After(hangGuard):
		t.Fatal("no answer")
		return nil
	}
}

// get returns a GET request for target with headers given as name, value
// pairs.
func get(target string, headers ...string) *http.Request {
	req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, target, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return req
}

func TestLongPollReturnsOnChange(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(ctx context.Context, f *fixture) error
		status store.Status
	}{
		{"progress", func(ctx context.Context, f *fixture) error {
			// Written by another instance of the service.
			return f.newTracker(t, f.mem).Apply(ctx, "t", tracker.SetProgress(store.Progress{Done: 1}))
		}, store.StatusRunning},
		{"end", func(ctx context.Context, f *fixture) error {
			return f.newTracker(t, f.mem).Apply(ctx, "t", tracker.Fail(fmt.Errorf("boom"), nil))
		}, store.StatusFailed},
	} {
		for _, named := range []string{"version", "If-None-Match"} {
			t.Run(tc.name+"/"+named, func(t *testing.T) {
				f := newFixture(t)
				f.running(t, "t")
				v := f.version(t, "t")
				req := get(fmt.Sprintf("/tasks/t/status?wait=1h&version=%d", v))
				if named == "If-None-Match" {
					req = get("/tasks/t/status?wait=1h", "If-None-Match", fmt.Sprintf(`"v%d"`, v))
				}
				done := serveAsync(f.handler(t), req)
				f.store.waitFor(t, 1)
				require.NoError(t, tc.change(t.Context(), f))

				rec := await(t, done)
				require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
				doc := document(t, rec.Body.Bytes())
				assert.EqualValues(t, v+1, doc["version"])
				assert.EqualValues(t, tc.status, doc["status"])
				assert.Equal(t, fmt.Sprintf(`"v%d"`, v+1), rec.Header().Get("ETag"))
				f.store.waitFor(t, 0)
			})
		}
	}
}

func TestLongPollTimeout(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	v := f.version(t, "t")
	h := f.handler(t)

	start := time.Now()
	rec := serve(h, "/tasks/t/status?wait=50ms", "If-None-Match", fmt.Sprintf(`"v%d"`, v))
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
	assert.Equal(t, http.StatusNotModified, rec.Code, "unchanged, and the client has it")
	assert.Equal(t, fmt.Sprintf(`"v%d"`, v), rec.Header().Get("ETag"))
	assert.Equal(t, "1", rec.Header().Get("Retry-After"))

	rec = serve(h, fmt.Sprintf("/tasks/t/status?wait=0.05&version=%d", v))
	require.Equal(t, http.StatusBadRequest, rec.Code, "0.05 is not a whole number of seconds: a Go duration")

	start = time.Now()
	rec = serve(h, fmt.Sprintf("/tasks/t/status?wait=50ms&version=%d", v))
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
	require.Equal(t, http.StatusOK, rec.Code, "unchanged, without If-None-Match")
	assert.EqualValues(t, v, document(t, rec.Body.Bytes())["version"])
	f.store.waitFor(t, 0)
}

func TestLongPollAnswersAtOnce(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	f.running(t, "ended")
	f.apply(t, "ended", tracker.Succeed())
	v := f.version(t, "t")
	h := f.handler(t)
	for _, tc := range []struct {
		name    string
		target  string
		headers []string
		code    int
	}{
		{"no version named", "/tasks/t/status?wait=1h", nil, http.StatusOK},
		{"older version", fmt.Sprintf("/tasks/t/status?wait=1h&version=%d", v-1), nil, http.StatusOK},
		{"older etag", "/tasks/t/status?wait=1h", []string{"If-None-Match", `"v1"`}, http.StatusOK},
		{"ended", fmt.Sprintf("/tasks/ended/status?wait=1h&version=%d", f.version(t, "ended")), nil, http.StatusOK},
		{"ended, client has it", "/tasks/ended/status?wait=3600", []string{"If-None-Match", fmt.Sprintf(`"v%d"`, f.version(t, "ended"))}, http.StatusNotModified},
		{"unknown", "/tasks/nope/status?wait=1h&version=1", nil, http.StatusNotFound},
		{"wait=0", fmt.Sprintf("/tasks/t/status?wait=0&version=%d", v), nil, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := await(t, serveAsync(h, get(tc.target, tc.headers...)))
			assert.Equal(t, tc.code, rec.Code, rec.Body.String())
		})
	}

	// A store that cannot watch answers at once.
	noWatch := newHandler(t, struct{ store.Store }{f.mem})
	req := get("/tasks/t/status?wait=1h", "If-None-Match", fmt.Sprintf(`"v%d"`, v))
	req.SetPathValue("id", "t")
	assert.Equal(t, http.StatusNotModified, await(t, serveAsync(noWatch, req)).Code)
	f.store.waitFor(t, 0)
}

func TestLongPollCapped(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	v := f.version(t, "t")
	h := f.handler(t, httpapi.WithMaxWait(50*time.Millisecond))
	for _, wait := range []string{"999h", "99999999999999999999", "2562047h"} {
		rec := await(t, serveAsync(h, get(fmt.Sprintf("/tasks/t/status?wait=%s&version=%d", wait, v))))
		assert.Equal(t, http.StatusOK, rec.Code, wait)
	}
	off := f.handler(t, httpapi.WithMaxWait(0))
	rec := await(t, serveAsync(off, get(fmt.Sprintf("/tasks/t/status?wait=1h&version=%d", v))))
	assert.Equal(t, http.StatusOK, rec.Code, "long polling off")
}

func TestLongPollClientGone(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	ctx, cancel := context.WithCancel(t.Context())
	req := get(fmt.Sprintf("/tasks/t/status?wait=1h&version=%d", f.version(t, "t"))).WithContext(ctx)
	done := serveAsync(f.handler(t), req)
	f.store.waitFor(t, 1)
	cancel()
	rec := await(t, done)
	assert.Empty(t, rec.Body.String(), "nobody to answer")
	assert.Empty(t, rec.Header().Get("ETag"))
	f.store.waitFor(t, 0)
}

func TestLongPollDeleted(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	done := serveAsync(f.handler(t), get(fmt.Sprintf("/tasks/t/status?wait=1h&version=%d", f.version(t, "t"))))
	f.store.waitFor(t, 1)
	require.NoError(t, f.tr.Delete(t.Context(), "t"))
	rec := await(t, done)
	assert.Equal(t, http.StatusNotFound, rec.Code)
	f.store.waitFor(t, 0)
}

func TestWatcherLimit(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	v := f.version(t, "t")
	h := f.handler(t, httpapi.WithMaxWatchers(1))
	done := serveAsync(h, get(fmt.Sprintf("/tasks/t/status?wait=1h&version=%d", v)))
	f.store.waitFor(t, 1)

	for _, req := range []*http.Request{
		get(fmt.Sprintf("/tasks/t/status?wait=1h&version=%d", v)),
		get("/tasks/t/status", "Accept", "text/event-stream"),
	} {
		rec := serve(h, req.URL.String(), "Accept", req.Header.Get("Accept"))
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, "1", rec.Header().Get("Retry-After"))
		assert.Equal(t, http.StatusServiceUnavailable, problem(t, rec).Status)
	}
	assert.Equal(t, http.StatusOK, serve(h, "/tasks/t/status").Code, "a plain GET does not wait")

	f.apply(t, "t", tracker.Succeed())
	assert.Equal(t, http.StatusOK, await(t, done).Code)
	f.store.waitFor(t, 0)
	rec := await(t, serveAsync(h, get(fmt.Sprintf("/tasks/t/status?wait=1h&version=%d", v))))
	assert.Equal(t, http.StatusOK, rec.Code, "the slot is free again")
}

// TestLongPollManyWaiters ends a task that 1,000 long polls wait for and
// checks that each is answered with the final state. It logs how soon
// (BenchmarkLongPollRelease measures 10,000).
func TestLongPollManyWaiters(t *testing.T) {
	const waiters = 1000
	f := newFixture(t)
	f.running(t, "t")
	h := newHandler(t, f.store)
	latencies := releaseWaiters(t, f, h, "t", waiters)
	t.Logf("%d waiters answered within %v of the end (median %v)", waiters, latencies[waiters-1], latencies[waiters/2])
}

// TestLongPollRenewals renews the lease of a task every second while a
// long poll waits for it to change: the renewals do not answer it, the
// next real change does; and once the renewals stop, the end of the lease
// answers the next long poll with the task abandoned. Renewals are quiet
// writes, which watchers are not told of, or are told of, as a store may.
func TestLongPollRenewals(t *testing.T) {
	for _, loud := range []bool{false, true} {
		t.Run(fmt.Sprintf("delivered=%v", loud), func(t *testing.T) {
			f := newFixture(t)
			var s store.Store = f.mem
			if loud {
				s = loudStore{f.mem}
			}
			tr, run := f.leased(t, s)
			ctx := t.Context()
			h := f.handler(t)

			done := serveAsync(h, get(fmt.Sprintf("/tasks/t/status?wait=1h&version=%d", f.version(t, "t"))))
			f.store.waitFor(t, 1)
			f.clock.waitPending(t, 1) // the end of the lease
			for range 3 * leaseTime / time.Second {
				f.clock.Advance(time.Second)
				require.NoError(t, run.Apply(ctx, tracker.Heartbeat()))
			}
			f.clock.waitMade(t, 2) // the handler read the renewed lease, and waits for its end
			select {
			case rec := <-done:
				t.Fatalf("a renewal answered the long poll: %s", rec.Body)
			default:
			}

			require.NoError(t, run.Apply(ctx, tracker.SetProgress(store.Progress{Done: 1, Total: 2})))
			rec := await(t, done)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			doc := document(t, rec.Body.Bytes())
			assert.Equal(t, map[string]any{"done": 1.0, "total": 2.0, "message": ""}, doc["progress"], "the change, not a renewal")
			assert.Equal(t, false, doc["abandoned"])
			v := f.version(t, "t")
			assert.EqualValues(t, v, doc["version"])

			// The renewals stop: the lease's end answers.
			done = serveAsync(h, get(fmt.Sprintf("/tasks/t/status?wait=1h&version=%d", v)))
			f.store.waitFor(t, 1)
			f.clock.waitPending(t, 1)
			f.clock.Advance(leaseTime + time.Millisecond)
			rec = await(t, done)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			doc = document(t, rec.Body.Bytes())
			assert.Equal(t, true, doc["abandoned"])
			assert.EqualValues(t, v, doc["version"])
			assert.Equal(t, fmt.Sprintf(`"v%da"`, v), rec.Header().Get("ETag"))

			// A client that has the abandoned document waits for a change:
			// a new attempt.
			done = serveAsync(h, get("/tasks/t/status?wait=1h", "If-None-Match", fmt.Sprintf(`"v%da"`, v)))
			f.store.waitFor(t, 1)
			require.NoError(t, tr.Apply(ctx, "t", tracker.Retry()))
			rec = await(t, done)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			doc = document(t, rec.Body.Bytes())
			assert.Equal(t, "pending", doc["status"])
			assert.EqualValues(t, 2, doc["attempt"])
			assert.Equal(t, false, doc["abandoned"])
			f.store.waitFor(t, 0)
		})
	}
}

// TestLongPollLeaseRenewedLate renews a lease just before it ends, quietly:
// at the end of the lease it knows of, the handler reads the renewal and
// waits for the new lease's end.
func TestLongPollLeaseRenewedLate(t *testing.T) {
	f := newFixture(t)
	_, run := f.leased(t, f.mem)
	v := f.version(t, "t")
	done := serveAsync(f.handler(t), get(fmt.Sprintf("/tasks/t/status?wait=1h&version=%d", v)))
	f.store.waitFor(t, 1)
	f.clock.waitPending(t, 1)
	f.clock.Advance(leaseTime - time.Millisecond)
	require.NoError(t, run.Apply(t.Context(), tracker.Heartbeat())) // quiet: the handler does not know
	f.clock.Advance(2 * time.Millisecond)                           // past the lease the handler knows
	f.clock.waitMade(t, 2)
	select {
	case rec := <-done:
		t.Fatalf("answered while the lease is renewed: %s", rec.Body)
	default:
	}
	f.clock.Advance(leaseTime)
	rec := await(t, done)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, true, document(t, rec.Body.Bytes())["abandoned"])
	assert.EqualValues(t, v+1, document(t, rec.Body.Bytes())["version"], "the renewal's version")
	f.store.waitFor(t, 0)
}

// downStore is a store whose Get fails with ErrUnavailable once down is set.
type downStore struct {
	*watchCounter
	down atomic.Bool
}

func (s *downStore) Get(ctx context.Context, id string) (store.State, error) {
	if s.down.Load() {
		return store.State{}, fmt.Errorf("test: %w", store.ErrUnavailable)
	}
	return s.watchCounter.Get(ctx, id)
}

// TestLongPollShutdown checks that a service that shuts down answers its
// long polls at once, with the current document or 503, never an empty
// answer.
func TestLongPollShutdown(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	v := f.version(t, "t")
	target := fmt.Sprintf("/tasks/t/status?wait=1h&version=%d", v)
	s := &downStore{watchCounter: f.store}
	shutdown := make(chan struct{})
	h := newHandler(t, s, httpapi.WithShutdown(shutdown), httpapi.WithClock(f.clock),
		httpapi.WithErrorHandler(func(context.Context, error) {}))
	served := func(target string, headers ...string) <-chan *httptest.ResponseRecorder {
		req := get(target, headers...)
		req.SetPathValue("id", "t")
		return serveAsync(h, req)
	}

	held := served(target)
	heldINM := served("/tasks/t/status?wait=1h", "If-None-Match", fmt.Sprintf(`"v%d"`, v))
	f.store.waitFor(t, 2)
	close(shutdown)
	rec := await(t, held)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.Equal(t, fmt.Sprintf(`"v%d"`, v), rec.Header().Get("ETag"))
	assert.EqualValues(t, v, document(t, rec.Body.Bytes())["version"])
	rec = await(t, heldINM)
	assert.Equal(t, http.StatusNotModified, rec.Code, "the client has the current document")
	assert.Equal(t, fmt.Sprintf(`"v%d"`, v), rec.Header().Get("ETag"))
	f.store.waitFor(t, 0)

	rec = await(t, served(target))
	assert.Equal(t, http.StatusOK, rec.Code, "a new long poll is answered at once")
	assert.Equal(t, 2, f.store.startedCount(), "without a watch")

	s.down.Store(true)
	rec = await(t, served(target))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	assert.Equal(t, http.StatusServiceUnavailable, problem(t, rec).Status)
}

// TestLongPollShutdownStoreDown shuts down while a long poll waits and the
// store is down: the long poll is answered 503.
func TestLongPollShutdownStoreDown(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	s := &downStore{watchCounter: f.store}
	shutdown := make(chan struct{})
	h := newHandler(t, s, httpapi.WithShutdown(shutdown), httpapi.WithErrorHandler(func(context.Context, error) {}))
	req := get(fmt.Sprintf("/tasks/t/status?wait=1h&version=%d", f.version(t, "t")))
	req.SetPathValue("id", "t")
	done := serveAsync(h, req)
	f.store.waitFor(t, 1)
	s.down.Store(true)
	close(shutdown)
	rec := await(t, done)
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	assert.Equal(t, http.StatusServiceUnavailable, problem(t, rec).Status)
	f.store.waitFor(t, 0)
}
