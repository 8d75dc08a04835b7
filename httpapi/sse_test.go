package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// nextStatus returns the next status event of ch, skipping the retry
// field, and checks that its id is the version of its data.
func nextStatus(t testing.TB, ch <-chan event) (event, map[string]any) {
	t.Helper()
	for {
		ev, ok := next(t, ch)
		require.True(t, ok, "the stream ended")
		if ev.retry != "" && ev.id == "" && ev.data == "" {
			continue
		}
		require.Equal(t, "status", ev.name, "event %+v", ev)
		doc := document(t, []byte(ev.data))
		id := fmt.Sprint(doc["version"])
		if doc["abandoned"] == true {
			id += "a"
		}
		require.Equal(t, id, ev.id, "the event's id names its document")
		return ev, doc
	}
}

// requireEnd checks that the stream ch ends without another event.
func requireEnd(t testing.TB, ch <-chan event) {
	t.Helper()
	ev, ok := next(t, ch)
	require.False(t, ok, "want the end of the stream, got %+v", ev)
}

func TestStreamEvents(t *testing.T) {
	f := newFixture(t)
	run := f.running(t, "t")
	srv := httptest.NewServer(f.handler(t))
	defer srv.Close()

	s := stream(t.Context(), t, srv, "/tasks/t/status")
	events := s.events
	require.Equal(t, http.StatusOK, s.code)
	assert.Equal(t, "text/event-stream", s.header.Get("Content-Type"))
	assert.Equal(t, "no-store", s.header.Get("Cache-Control"))
	assert.Equal(t, "nosniff", s.header.Get("X-Content-Type-Options"))

	first, ok := next(t, events)
	require.True(t, ok)
	assert.Equal(t, "1000", first.retry, "reconnect after Retry-After")

	v := f.version(t, "t")
	_, doc := nextStatus(t, events)
	assert.EqualValues(t, v, doc["version"], "the current state first")
	assert.Equal(t, "running", doc["status"])

	other := f.newTracker(t, f.mem) // another instance of the service
	for i := range int64(3) {
		require.NoError(t, other.Apply(t.Context(), "t", tracker.SetProgress(store.Progress{Done: i + 1, Total: 3})))
		ev, doc := nextStatus(t, events)
		assert.Equal(t, strconv.FormatInt(v+i+1, 10), ev.id)
		assert.Equal(t, map[string]any{"done": float64(i + 1), "total": 3.0, "message": ""}, doc["progress"])
	}
	require.NoError(t, run.Apply(t.Context(), tracker.Succeed()))
	ev, doc := nextStatus(t, events)
	assert.Equal(t, strconv.FormatInt(v+4, 10), ev.id)
	assert.Equal(t, "success", doc["status"])
	requireEnd(t, events)
	f.store.waitFor(t, 0)
}

func TestStreamResume(t *testing.T) {
	f := newFixture(t)
	run := f.running(t, "t")
	srv := httptest.NewServer(f.handler(t))
	defer srv.Close()
	v := f.version(t, "t")

	t.Run("has the current state", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		events := stream(ctx, t, srv, "/tasks/t/status", "Last-Event-ID", strconv.FormatInt(v, 10)).events
		f.store.waitFor(t, 1)
		require.NoError(t, run.Apply(t.Context(), tracker.SetProgress(store.Progress{Done: 1})))
		ev, _ := nextStatus(t, events)
		assert.Equal(t, strconv.FormatInt(v+1, 10), ev.id, "no event for the version the client has")
		v++
	})
	f.store.waitFor(t, 0)

	t.Run("has an older state", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		events := stream(ctx, t, srv, "/tasks/t/status", "Last-Event-ID", "1").events
		ev, _ := nextStatus(t, events)
		assert.Equal(t, strconv.FormatInt(v, 10), ev.id)
	})
	f.store.waitFor(t, 0)

	require.NoError(t, run.Apply(t.Context(), tracker.Succeed()))
	v++
	t.Run("ended", func(t *testing.T) {
		events := stream(t.Context(), t, srv, "/tasks/t/status", "Last-Event-ID", "junk").events
		ev, doc := nextStatus(t, events)
		assert.Equal(t, strconv.FormatInt(v, 10), ev.id, "an id the server did not send counts as none")
		assert.Equal(t, "success", doc["status"])
		requireEnd(t, events)
	})
	t.Run("has the final state", func(t *testing.T) {
		s := stream(t.Context(), t, srv, "/tasks/t/status", "Last-Event-ID", strconv.FormatInt(v, 10))
		events := s.events
		assert.Equal(t, http.StatusNoContent, s.code, "an EventSource stops reconnecting")
		requireEnd(t, events)
	})
	t.Run("unknown", func(t *testing.T) {
		s := stream(t.Context(), t, srv, "/tasks/nope/status")
		assert.Equal(t, http.StatusNotFound, s.code, "an EventSource does not reconnect")
		assert.Equal(t, "application/problem+json", s.header.Get("Content-Type"))
	})
}

func TestStreamHeartbeat(t *testing.T) {
	f := newFixture(t)
	run := f.running(t, "t")
	srv := httptest.NewServer(f.handler(t, httpapi.WithHeartbeat(time.Minute)))
	defer srv.Close()

	events := stream(t.Context(), t, srv, "/tasks/t/status").events
	nextStatus(t, events)
	for range 2 {
		f.clock.waitPending(t, 1)
		f.clock.Advance(time.Minute - time.Millisecond)
		f.clock.waitPending(t, 1) // not yet
		f.clock.Advance(time.Millisecond)
		ev, ok := next(t, events)
		require.True(t, ok)
		assert.Equal(t, event{comment: "heartbeat"}, ev)
	}
	// An event puts the next heartbeat off.
	f.clock.waitMade(t, 3)
	f.clock.Advance(time.Minute / 2)
	require.NoError(t, run.Apply(t.Context(), tracker.SetProgress(store.Progress{Done: 1})))
	nextStatus(t, events)
	f.clock.waitMade(t, 4)
	f.clock.Advance(time.Minute - time.Millisecond)
	require.NoError(t, run.Apply(t.Context(), tracker.Succeed()))
	_, doc := nextStatus(t, events)
	assert.Equal(t, "success", doc["status"])
	requireEnd(t, events)
	f.clock.waitPending(t, 0) // the heartbeat's wait is stopped
}

// TestStreamDisconnect checks that a client that goes away frees its
// stream: the handler returns, its watch is released, and no goroutine is
// left.
func TestStreamDisconnect(t *testing.T) {
	f := newFixture(t)
	leaks := goleak.IgnoreCurrent()
	f.running(t, "t")
	returned := make(chan struct{})
	h := f.handler(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(returned)
		h.ServeHTTP(w, r)
	}))

	ctx, cancel := context.WithCancel(t.Context())
	s := stream(ctx, t, srv, "/tasks/t/status")
	events := s.events
	nextStatus(t, events)
	f.store.waitFor(t, 1)
	cancel()
	s.close()
	select {
	case <-returned:
	case <-time.After(hangGuard):
		t.Fatal("the handler goes on after its client left")
	}
	f.store.waitFor(t, 0)
	for range events { // the reader ends
	}
	srv.Close()
	goleak.VerifyNone(t, leaks)
}

func TestStreamAccept(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	f.apply(t, "t", tracker.Succeed())
	h := f.handler(t)
	for accept, want := range map[string]string{
		"text/event-stream":                         "text/event-stream",
		"application/json;q=0.5, text/event-stream": "text/event-stream",
		"Text/Event-Stream; charset=utf-8":          "text/event-stream",
		"text/event-stream;q=0, application/json":   "application/json",
		"text/event-stream;q=bad":                   "application/json",
		"*/*":                                       "application/json",
		"":                                          "application/json",
	} {
		rec := serve(h, "/tasks/t/status", "Accept", accept)
		assert.Equal(t, want, rec.Header().Get("Content-Type"), "Accept: %s", accept)
	}
}

func TestStreamWithoutWatcher(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	mux := http.NewServeMux()
	mux.Handle(pattern, newHandler(t, struct{ store.Store }{f.mem}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	events := stream(t.Context(), t, srv, "/tasks/t/status").events
	_, doc := nextStatus(t, events)
	assert.Equal(t, "running", doc["status"])
	requireEnd(t, events) // an EventSource reconnects after retry: it polls
}

func TestStreamAuthorizeChange(t *testing.T) {
	f := newFixture(t)
	run := f.running(t, "t")
	srv := httptest.NewServer(f.handler(t, httpapi.WithAuthorize(func(_ *http.Request, st store.State) error {
		if _, ok := st.Result["secret"]; ok {
			return errors.New("hidden")
		}
		return nil
	})))
	defer srv.Close()

	events := stream(t.Context(), t, srv, "/tasks/t/status").events
	nextStatus(t, events)
	require.NoError(t, run.Apply(t.Context(), tracker.SetResult(map[string]any{"secret": true})))
	requireEnd(t, events)
	f.store.waitFor(t, 0)
}

// TestStreamManyClients follows one task with 1,000 event streams at once
// (the default limit) and checks that each gets every state to the end.
// The clients are raw connections, read one after the other, to keep the
// test light.
func TestStreamManyClients(t *testing.T) {
	const clients = httpapi.DefaultMaxWatchers
	f := newFixture(t)
	run := f.running(t, "t")
	v := f.version(t, "t")
	srv := httptest.NewServer(f.handler(t))
	defer srv.Close()

	bodies := make([]io.Reader, clients)
	conns := make([]net.Conn, clients)
	for i := range bodies {
		var code int
		code, bodies[i], conns[i] = rawStream(t, srv)
		require.Equal(t, http.StatusOK, code, "client %d", i)
	}
	f.store.waitFor(t, clients)
	require.NoError(t, run.Apply(t.Context(), tracker.SetProgress(store.Progress{Done: 1})))
	require.NoError(t, run.Apply(t.Context(), tracker.Succeed()))
	// Connecting every client may have taken most of a guard, on a
	// loaded machine: each gets a whole one from now to read its events.
	for _, conn := range conns {
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(hangGuard)))
	}

	for i, body := range bodies {
		var ids []string
		var last map[string]any
		for ev := range readEvents(body) {
			if ev.id != "" {
				ids = append(ids, ev.id)
				require.NoError(t, json.Unmarshal([]byte(ev.data), &last))
			}
		}
		// A client may skip the progress version, never the final one.
		require.Contains(t, [][]string{
			{fmt.Sprint(v), fmt.Sprint(v + 1), fmt.Sprint(v + 2)},
			{fmt.Sprint(v), fmt.Sprint(v + 2)},
		}, ids, "client %d", i)
		require.Equal(t, "success", last["status"], "client %d", i)
	}
	f.store.waitFor(t, 0)
}

// rawStream asks srv for an event stream of task "t" on a connection of
// its own, without an http.Client, and returns the answer's status code,
// its body and the connection, whose reads end hangGuard from now unless
// given another deadline. The connection is closed when t ends.
func rawStream(t *testing.T, srv *httptest.Server) (int, io.Reader, net.Conn) {
	t.Helper()
	conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = io.WriteString(conn, "GET /tasks/t/status HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(hangGuard)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp.StatusCode, resp.Body, conn
}

// smallBuffers is a listener whose connections have small write buffers,
// so that a client that does not read blocks the server's writes soon.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		err = errors.Join(err, tc.SetWriteBuffer(4096))
	}
	return c, err
}

// TestStreamClientNeverReads checks that the write timeout ends the stream
// of a client that does not read, however much it is sent.
func TestStreamClientNeverReads(t *testing.T) {
	f := newFixture(t)
	run := f.running(t, "t")
	// Make each state large: the task's result fields near their limit.
	big := strings.Repeat("x", 60<<10)
	require.NoError(t, run.Apply(t.Context(), tracker.SetResult(map[string]any{"blob": big})))

	returned := make(chan struct{})
	h := f.handler(t, httpapi.WithWriteTimeout(100*time.Millisecond), httpapi.WithHeartbeat(0))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") == "text/event-stream" {
			defer close(returned)
		}
		h.ServeHTTP(w, r)
	}))
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	defer srv.Close()

	conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.(*net.TCPConn).SetReadBuffer(4096))
	_, err = io.WriteString(conn, "GET /tasks/t/status HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n")
	require.NoError(t, err)

	// Keep changing the task until the stream gives up. The ticker paces
	// the writes; the test waits for the handler's return.
	pace := time.NewTicker(time.Millisecond)
	defer pace.Stop()
	guard := time.After(hangGuard)
	for done := int64(1); ; done++ {
		select {
		case <-returned:
			f.store.waitFor(t, 0)
			// The server still answers others.
			assert.Equal(t, http.StatusOK, serve(h, "/tasks/t/status").Code)
			return
		case <-guard:
			t.Fatal("the stream of a client that does not read goes on")
		case <-pace.C:
			require.NoError(t, run.Apply(t.Context(), tracker.SetProgress(store.Progress{Done: done})))
		}
	}
}

// TestStreamRenewals follows a task whose lease is renewed every second:
// the renewals send no event, a real change does, and once the renewals
// stop, the end of the lease sends the task's document that says it was
// abandoned.
func TestStreamRenewals(t *testing.T) {
	for _, loud := range []bool{false, true} {
		t.Run(fmt.Sprintf("delivered=%v", loud), func(t *testing.T) {
			f := newFixture(t)
			var s store.Store = f.mem
			if loud {
				s = loudStore{f.mem}
			}
			tr, run := f.leased(t, s)
			srv := httptest.NewServer(f.handler(t, httpapi.WithHeartbeat(0)))
			defer srv.Close()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel() // ends the stream

			events := stream(ctx, t, srv, "/tasks/t/status").events
			_, doc := nextStatus(t, events)
			assert.Equal(t, false, doc["abandoned"])
			f.clock.waitPending(t, 1) // the end of the lease
			for range 3 * leaseTime / time.Second {
				f.clock.Advance(time.Second)
				require.NoError(t, run.Apply(ctx, tracker.Heartbeat()))
			}
			f.clock.waitMade(t, 2)
			require.NoError(t, run.Apply(ctx, tracker.SetProgress(store.Progress{Done: 1})))
			ev, doc := nextStatus(t, events)
			assert.Equal(t, map[string]any{"done": 1.0, "total": 0.0, "message": ""}, doc["progress"], "the change is the next event")
			v := f.version(t, "t")
			assert.Equal(t, strconv.FormatInt(v, 10), ev.id)

			f.clock.Advance(leaseTime + time.Millisecond)
			ev, doc = nextStatus(t, events)
			assert.Equal(t, true, doc["abandoned"])
			assert.Equal(t, fmt.Sprintf("%da", v), ev.id)

			require.NoError(t, tr.Apply(ctx, "t", tracker.Retry()))
			_, doc = nextStatus(t, events)
			assert.Equal(t, false, doc["abandoned"])
			assert.EqualValues(t, 2, doc["attempt"])
		})
	}
}

// TestStreamResumeAbandoned reconnects to the stream of an abandoned task:
// a client whose last event said so gets no event for it again, one whose
// last event did not gets the abandoned document.
func TestStreamResumeAbandoned(t *testing.T) {
	f := newFixture(t)
	f.leased(t, f.mem)
	f.clock.Advance(leaseTime + time.Millisecond)
	v := f.version(t, "t")
	srv := httptest.NewServer(f.handler(t, httpapi.WithHeartbeat(0)))
	defer srv.Close()

	ctx, cancel := context.WithCancel(t.Context())
	events := stream(ctx, t, srv, "/tasks/t/status", "Last-Event-ID", strconv.FormatInt(v, 10)).events
	ev, doc := nextStatus(t, events)
	assert.Equal(t, fmt.Sprintf("%da", v), ev.id)
	assert.Equal(t, true, doc["abandoned"])
	cancel()
	f.store.waitFor(t, 0)

	events = stream(t.Context(), t, srv, "/tasks/t/status", "Last-Event-ID", fmt.Sprintf("%da", v)).events
	f.store.waitFor(t, 1)
	f.apply(t, "t", tracker.Cancel(nil))
	_, doc = nextStatus(t, events)
	assert.Equal(t, "canceled", doc["status"], "the first event is the next change")
	requireEnd(t, events)
}

// TestStreamShutdown checks that the streams of a service that shuts down
// end, and that a stream asked for meanwhile sends the current document
// and ends.
func TestStreamShutdown(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	shutdown := make(chan struct{})
	srv := httptest.NewServer(f.handler(t, httpapi.WithShutdown(shutdown)))
	defer srv.Close()

	events := stream(t.Context(), t, srv, "/tasks/t/status").events
	nextStatus(t, events)
	f.store.waitFor(t, 1)
	close(shutdown)
	requireEnd(t, events)
	f.store.waitFor(t, 0)

	events = stream(t.Context(), t, srv, "/tasks/t/status").events
	_, doc := nextStatus(t, events)
	assert.Equal(t, "running", doc["status"])
	requireEnd(t, events)
	assert.Equal(t, 1, f.store.startedCount(), "no watch during the shutdown")
}
