package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// Patterns where the tests mount the WebSocket handler: one task, named
// by the path, and several, subscribed to.
const (
	wsPattern     = "GET /tasks/{id}/ws"
	wsManyPattern = "GET /tasks/ws"
)

// wsServer serves the fixture's store with the status handler and the
// WebSocket handler at wsPattern and wsManyPattern, with opts.
func (f *fixture) wsServer(t testing.TB, opts ...httpapi.Option) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(f.wsMux(t, opts...))
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func (f *fixture) wsMux(t testing.TB, opts ...httpapi.Option) *http.ServeMux {
	t.Helper()
	opts = append([]httpapi.Option{httpapi.WithClock(f.clock)}, opts...)
	ws, err := httpapi.WebSocketHandler(f.store, opts...)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle(wsPattern, ws)
	mux.Handle(wsManyPattern, ws)
	return mux
}

// wsMsg is a message of the WebSocket handler.
type wsMsg struct {
	Type     string         `json:"type"`
	ID       string         `json:"id"`
	EventID  string         `json:"event_id"`
	Document map[string]any `json:"document"`
	Code     int            `json:"code"`
	Detail   string         `json:"detail"`
}

// wsDial opens a WebSocket to target on srv, closed when t ends.
func wsDial(t testing.TB, srv *httptest.Server, target string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(t.Context(), "ws"+strings.TrimPrefix(srv.URL, "http")+target, nil) //nolint:bodyclose // a 101 answer has none
	require.NoError(t, err)
	c.SetReadLimit(-1)
	t.Cleanup(func() { _ = c.CloseNow() }) // most tests have closed it
	return c
}

// wsRead returns the next message of c, or the error that ended it.
func wsRead(t testing.TB, c *websocket.Conn) (wsMsg, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		return wsMsg{}, err
	}
	require.Equal(t, websocket.MessageText, typ)
	var m wsMsg
	require.NoError(t, json.Unmarshal(b, &m), "message %s", b)
	return m, nil
}

// wsStatus returns the next message of c, which must be a status message,
// and checks that its event id names its document.
func wsStatus(t testing.TB, c *websocket.Conn) wsMsg {
	t.Helper()
	m, err := wsRead(t, c)
	require.NoError(t, err)
	require.Equal(t, "status", m.Type, "message %+v", m)
	id := fmt.Sprint(m.Document["version"])
	if m.Document["abandoned"] == true {
		id += "a"
	}
	require.Equal(t, id, m.EventID, "the event id names the document")
	require.Equal(t, m.ID, m.Document["task_id"])
	return m
}

// wsRequireClose checks that c is closed with code and no message before,
// and returns the close reason.
func wsRequireClose(t testing.TB, c *websocket.Conn, code websocket.StatusCode) string {
	t.Helper()
	m, err := wsRead(t, c)
	require.Error(t, err, "want the close %d, got the message %+v", code, m)
	var ce websocket.CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, code, ce.Code, "close reason %q", ce.Reason)
	return ce.Reason
}

func TestWebSocketOrder(t *testing.T) {
	f := newFixture(t)
	run := f.running(t, "t")
	srv := f.wsServer(t)
	c := wsDial(t, srv, "/tasks/t/ws")

	v := f.version(t, "t")
	m := wsStatus(t, c)
	assert.EqualValues(t, v, m.Document["version"], "the current state first")
	assert.Equal(t, "running", m.Document["status"])

	other := f.newTracker(t, f.mem) // another instance of the service
	for i := range int64(3) {
		require.NoError(t, other.Apply(t.Context(), "t", tracker.SetProgress(store.Progress{Done: i + 1, Total: 3})))
		m := wsStatus(t, c)
		assert.Equal(t, strconv.FormatInt(v+i+1, 10), m.EventID)
		assert.Equal(t, map[string]any{"done": float64(i + 1), "total": 3.0, "message": ""}, m.Document["progress"])
	}
	require.NoError(t, run.Apply(t.Context(), tracker.Succeed()))
	m = wsStatus(t, c)
	assert.Equal(t, strconv.FormatInt(v+4, 10), m.EventID)
	assert.Equal(t, "success", m.Document["status"])
	wsRequireClose(t, c, websocket.StatusNormalClosure)
	f.store.waitFor(t, 0)
}

func TestWebSocketResume(t *testing.T) {
	f := newFixture(t)
	run := f.running(t, "t")
	srv := f.wsServer(t)
	v := f.version(t, "t")

	t.Run("has the current state", func(t *testing.T) {
		c := wsDial(t, srv, "/tasks/t/ws?last_event_id="+strconv.FormatInt(v, 10))
		f.store.waitFor(t, 1)
		require.NoError(t, run.Apply(t.Context(), tracker.SetProgress(store.Progress{Done: 1})))
		m := wsStatus(t, c)
		assert.Equal(t, strconv.FormatInt(v+1, 10), m.EventID, "no message for the version the client has")
		v++
		c.Close(websocket.StatusNormalClosure, "")
	})
	f.store.waitFor(t, 0)

	t.Run("has an older state", func(t *testing.T) {
		c := wsDial(t, srv, "/tasks/t/ws?last_event_id=1")
		m := wsStatus(t, c)
		assert.Equal(t, strconv.FormatInt(v, 10), m.EventID)
		c.Close(websocket.StatusNormalClosure, "")
	})
	f.store.waitFor(t, 0)

	require.NoError(t, run.Apply(t.Context(), tracker.Succeed()))
	v++
	t.Run("has the final state", func(t *testing.T) {
		c := wsDial(t, srv, "/tasks/t/ws?last_event_id="+strconv.FormatInt(v, 10))
		wsRequireClose(t, c, websocket.StatusNormalClosure)
	})
	t.Run("missed the final state", func(t *testing.T) {
		c := wsDial(t, srv, "/tasks/t/ws?last_event_id="+strconv.FormatInt(v-1, 10))
		m := wsStatus(t, c)
		assert.Equal(t, "success", m.Document["status"])
		wsRequireClose(t, c, websocket.StatusNormalClosure)
	})
	assert.Equal(t, 2, f.store.startedCount(), "no watch of a task that has ended")
}

func TestWebSocketUnknownAndRefused(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	f.running(t, "secret")
	srv := f.wsServer(t, httpapi.WithAuthorize(func(_ *http.Request, st store.State) error {
		if st.ID == "secret" {
			return errors.New("not yours")
		}
		return nil
	}))

	unknown := wsRequireClose(t, wsDial(t, srv, "/tasks/nope/ws"), 4404)
	refused := wsRequireClose(t, wsDial(t, srv, "/tasks/secret/ws"), 4404)
	assert.Equal(t, unknown, refused, "a refused id cannot be told from an unknown one")
	wsRequireClose(t, wsDial(t, srv, "/tasks/a%7Bb/ws"), 4400)

	c := wsDial(t, srv, "/tasks/t/ws")
	wsStatus(t, c)
	require.NoError(t, c.Write(t.Context(), websocket.MessageText, []byte(`{"type":"subscribe","id":"x"}`)))
	wsRequireClose(t, c, 4400)
	f.store.waitFor(t, 0)
}

func TestWebSocketRefusedMidway(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	srv := f.wsServer(t, httpapi.WithAuthorize(func(_ *http.Request, st store.State) error {
		if st.Progress.Message == "secret" {
			return errors.New("not yours")
		}
		return nil
	}))
	c := wsDial(t, srv, "/tasks/t/ws")
	wsStatus(t, c)
	f.apply(t, "t", tracker.SetProgress(store.Progress{Message: "secret"}))
	wsRequireClose(t, c, 4404)
	f.store.waitFor(t, 0)
}

func TestWebSocketWatcherLimit(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	srv := f.wsServer(t, httpapi.WithMaxWatchers(1))
	c := wsDial(t, srv, "/tasks/t/ws")
	wsStatus(t, c)
	wsRequireClose(t, wsDial(t, srv, "/tasks/t/ws"), 4503)
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	f.store.waitFor(t, 0)
}

func TestWebSocketShutdown(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	done := make(chan struct{})
	srv := f.wsServer(t, httpapi.WithShutdown(done))
	c := wsDial(t, srv, "/tasks/t/ws")
	wsStatus(t, c)
	close(done)
	wsRequireClose(t, c, websocket.StatusGoingAway)
	f.store.waitFor(t, 0)
}

func TestWebSocketClientGoes(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	srv := f.wsServer(t)
	c := wsDial(t, srv, "/tasks/t/ws")
	wsStatus(t, c)
	require.NoError(t, c.CloseNow())
	f.store.waitFor(t, 0) // and goleak checks that nothing is left
}

// TestWebSocketSlowReader stops the server's writes to a client in the
// middle of a message, writes many changes meanwhile, and checks that the
// client then gets the latest state after the message, not a queue.
func TestWebSocketSlowReader(t *testing.T) {
	f := newFixture(t)
	run := f.running(t, "t")
	g := newGate()
	srv := httptest.NewUnstartedServer(f.wsMux(t, httpapi.WithWriteTimeout(0)))
	srv.Listener = gatedListener{srv.Listener, g}
	srv.Start()
	defer srv.Close()
	c := wsDial(t, srv, "/tasks/t/ws")
	wsStatus(t, c)

	g.shut()
	require.NoError(t, run.Apply(t.Context(), tracker.SetProgress(store.Progress{Done: 1})))
	<-g.blocked // the server writes that change, and cannot
	const changes = 50
	for i := range int64(changes) {
		require.NoError(t, run.Apply(t.Context(), tracker.SetProgress(store.Progress{Done: i + 2})))
	}
	require.NoError(t, run.Apply(t.Context(), tracker.Succeed()))
	final := f.version(t, "t")
	g.open()

	var got []int64
	for {
		m, err := wsRead(t, c)
		if err != nil {
			require.Equal(t, websocket.StatusNormalClosure, websocket.CloseStatus(err), "the end after the terminal state: %v", err)
			break
		}
		v := int64(m.Document["version"].(float64))
		if len(got) > 0 {
			require.Greater(t, v, got[len(got)-1], "versions in order")
		}
		got = append(got, v)
	}
	require.NotEmpty(t, got)
	assert.Equal(t, final, got[len(got)-1], "the final state last")
	assert.LessOrEqual(t, len(got), 2, "the blocked message and the latest state, not %d changes: %v", changes, got)
}

// gate stops the writes of the connections of a gatedListener while shut.
type gate struct {
	mu      sync.Mutex
	opened  chan struct{} // closed while the gate is open
	blocked chan struct{} // gets a signal when a write waits
}

func newGate() *gate {
	g := &gate{opened: make(chan struct{}), blocked: make(chan struct{}, 1)}
	close(g.opened)
	return g
}

func (g *gate) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.opened = make(chan struct{})
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.opened)
}

func (g *gate) wait() {
	g.mu.Lock()
	opened := g.opened
	g.mu.Unlock()
	select {
	case <-opened:
		return
	default:
	}
	select {
	case g.blocked <- struct{}{}:
	default:
	}
	<-opened
}

type gatedListener struct {
	net.Listener
	g *gate
}

func (l gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return gatedConn{c, l.g}, nil
}

type gatedConn struct {
	net.Conn
	g *gate
}

func (c gatedConn) Write(b []byte) (int, error) {
	c.g.wait()
	return c.Conn.Write(b)
}

// TestWebSocketRedisOutage follows a task on redisstore over a miniredis
// that then goes away: the client is told by the close code 4503, or on a
// connection of several tasks by an error message, rather than left
// waiting.
func TestWebSocketRedisOutage(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), DisableIdentity: true, MaxRetries: -1})
	defer client.Close()
	rs, err := redisstore.New(client, redisstore.WithTimeout(200*time.Millisecond),
		redisstore.WithHealthInterval(100*time.Millisecond), redisstore.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	defer rs.Close()
	tr, err := tracker.New(rs, tracker.WithErrorHandler(func(context.Context, error) {}))
	require.NoError(t, err)
	defer tr.Close(context.Background())
	require.NoError(t, tr.Apply(t.Context(), "t", tracker.Create(seedSteps...)))

	var reported sync.WaitGroup
	reported.Add(1)
	var once sync.Once
	ws, err := httpapi.WebSocketHandler(rs, httpapi.WithErrorHandler(func(_ context.Context, err error) {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("reported %v, want the store unavailable", err)
		}
		once.Do(reported.Done)
	}))
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle(wsPattern, ws)
	mux.Handle(wsManyPattern, ws)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	c := wsDial(t, srv, "/tasks/t/ws")
	m := wsStatus(t, c)
	require.Equal(t, "pending", m.Document["status"])
	many := wsDial(t, srv, "/tasks/ws")
	wsSend(t, many, map[string]any{"type": "subscribe", "id": "t"})
	wsStatus(t, many)

	mr.Close()
	assert.Contains(t, wsRequireClose(t, c, 4503), "unavailable")
	m, err = wsRead(t, many)
	require.NoError(t, err, "the connection of several tasks stays open")
	assert.Equal(t, wsMsg{Type: "error", ID: "t", Code: 4503, Detail: m.Detail}, m)
	assert.Contains(t, m.Detail, "unavailable")
	reported.Wait() // the outage went to the error handler
	require.NoError(t, many.Close(websocket.StatusNormalClosure, ""))
}

// wsSend sends the client message of the JSON object v on c.
func wsSend(t testing.TB, c *websocket.Conn, v map[string]any) {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	require.NoError(t, c.Write(t.Context(), websocket.MessageText, b))
}

func TestWebSocketSeveralTasks(t *testing.T) {
	f := newFixture(t)
	runA := f.running(t, "a")
	runB := f.running(t, "b")
	f.running(t, "secret")
	srv := f.wsServer(t, httpapi.WithAuthorize(func(_ *http.Request, st store.State) error {
		if st.ID == "secret" {
			return errors.New("not yours")
		}
		return nil
	}))
	c := wsDial(t, srv, "/tasks/ws")

	wsSend(t, c, map[string]any{"type": "subscribe", "id": "a"})
	assert.Equal(t, "a", wsStatus(t, c).ID)
	wsSend(t, c, map[string]any{"type": "subscribe", "id": "b"})
	assert.Equal(t, "b", wsStatus(t, c).ID)
	f.store.waitFor(t, 2)

	require.NoError(t, runB.Apply(t.Context(), tracker.SetProgress(store.Progress{Done: 1})))
	m := wsStatus(t, c)
	assert.Equal(t, "b", m.ID)
	assert.Equal(t, map[string]any{"done": 1.0, "total": 0.0, "message": ""}, m.Document["progress"])

	wsSend(t, c, map[string]any{"type": "unsubscribe", "id": "b"})
	f.store.waitFor(t, 1) // b's watch is freed

	for _, tc := range []struct {
		name string
		msg  string
		id   string
		code int
	}{
		{"unknown task", `{"type":"subscribe","id":"nope"}`, "nope", 4404},
		{"refused task", `{"type":"subscribe","id":"secret"}`, "secret", 4404},
		{"invalid id", `{"type":"subscribe","id":"a{b"}`, "a{b", 4400},
		{"followed already", `{"type":"subscribe","id":"a"}`, "a", 4400},
		{"unknown type", `{"type":"follow","id":"a"}`, "a", 4400},
		{"not JSON", `subscribe a`, "", 4400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, c.Write(t.Context(), websocket.MessageText, []byte(tc.msg)))
			m, err := wsRead(t, c)
			require.NoError(t, err)
			assert.Equal(t, wsMsg{Type: "error", ID: tc.id, Code: tc.code, Detail: m.Detail}, m)
			assert.NotEmpty(t, m.Detail)
		})
	}

	require.NoError(t, runA.Apply(t.Context(), tracker.Succeed()))
	m = wsStatus(t, c)
	assert.Equal(t, "a", m.ID)
	assert.Equal(t, "success", m.Document["status"])
	f.store.waitFor(t, 0) // a's subscription ended with its task

	// The subscription can be made again, from the document the client has.
	wsSend(t, c, map[string]any{"type": "subscribe", "id": "a", "last_event_id": "1"})
	m = wsStatus(t, c)
	assert.Equal(t, "a", m.ID)
	assert.Equal(t, "success", m.Document["status"])
	wsSend(t, c, map[string]any{"type": "subscribe", "id": "b", "last_event_id": strconv.FormatInt(f.version(t, "b"), 10)})
	f.store.waitFor(t, 1)
	require.NoError(t, runB.Apply(t.Context(), tracker.Fail(errors.New("boom"), nil)))
	m = wsStatus(t, c)
	assert.Equal(t, "b", m.ID)
	assert.Equal(t, "failed", m.Document["status"])
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	f.store.waitFor(t, 0)
}

func TestClientFollow(t *testing.T) {
	f := newFixture(t)
	run := f.running(t, "t")
	srv := f.wsServer(t)
	c := httpapi.Client{BaseURL: srv.URL}

	var got []int64
	for doc, err := range c.Follow(t.Context(), "/tasks/t/ws") {
		require.NoError(t, err)
		got = append(got, doc.Version)
		if len(got) == 1 {
			f.store.waitFor(t, 1)
			require.NoError(t, run.Apply(t.Context(), tracker.SetProgress(store.Progress{Done: 1})))
		}
		if len(got) == 2 {
			assert.Equal(t, int64(1), doc.Progress.Done)
			require.NoError(t, run.Apply(t.Context(), tracker.Succeed()))
		}
		if doc.Status.Terminal() {
			assert.Equal(t, store.StatusSuccess, doc.Status)
		}
	}
	v := f.version(t, "t")
	assert.Equal(t, []int64{v - 2, v - 1, v}, got, "each document in order, the terminal one last")

	t.Run("unknown task", func(t *testing.T) {
		for doc, err := range c.Follow(t.Context(), "/tasks/nope/ws") {
			require.ErrorIs(t, err, store.ErrNotFound)
			assert.Zero(t, doc.Version)
		}
	})
	t.Run("stops early", func(t *testing.T) {
		f.running(t, "u")
		for doc, err := range c.Follow(t.Context(), srv.URL+"/tasks/u/ws") {
			require.NoError(t, err)
			assert.Equal(t, "u", doc.ID)
			break
		}
		f.store.waitFor(t, 0) // the connection is closed, its watch freed
	})
}

// TestClientFollowReconnects follows a task on a server that shuts down
// after the first document: the client connects again, to the server
// that replaces it, and gets each later document once.
func TestClientFollowReconnects(t *testing.T) {
	f := newFixture(t)
	run := f.running(t, "t")
	stopping := make(chan struct{})
	old, err := httpapi.WebSocketHandler(f.store, httpapi.WithClock(f.clock), httpapi.WithShutdown(stopping))
	require.NoError(t, err)
	replacement, err := httpapi.WebSocketHandler(f.store, httpapi.WithClock(f.clock))
	require.NoError(t, err)
	var connections atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc(wsPattern, func(w http.ResponseWriter, r *http.Request) {
		if connections.Add(1) == 1 {
			old.ServeHTTP(w, r)
			return
		}
		replacement.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var got []int64
	c := httpapi.Client{BaseURL: srv.URL}
	for doc, err := range c.Follow(t.Context(), "/tasks/t/ws") {
		require.NoError(t, err)
		got = append(got, doc.Version)
		switch len(got) {
		case 1:
			close(stopping)
			f.store.waitFor(t, 0) // the old server's connection has ended
			require.NoError(t, run.Apply(t.Context(), tracker.SetProgress(store.Progress{Done: 1})))
		case 2:
			require.NoError(t, run.Apply(t.Context(), tracker.Succeed()))
		}
	}
	v := f.version(t, "t")
	assert.Equal(t, []int64{v - 2, v - 1, v}, got, "each document once, in order")
	assert.Equal(t, int32(2), connections.Load())
}

// dropper is an HTTP client whose connections a test cuts as a network
// failure or a dead server would: without a close message.
type dropper struct {
	mu     sync.Mutex
	conns  []net.Conn
	dialed int
}

func (d *dropper) client() *http.Client {
	var dialer net.Dialer
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err == nil {
			d.mu.Lock()
			d.conns = append(d.conns, c)
			d.dialed++
			d.mu.Unlock()
		}
		return c, err
	}}}
}

// drop cuts every connection made so far.
func (d *dropper) drop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		_ = c.Close()
	}
	d.conns = nil
}

// TestClientFollowReconnectsAfterDrop cuts the client's connection after
// the first document: the client connects again and gets each later
// document once, in order.
func TestClientFollowReconnectsAfterDrop(t *testing.T) {
	f := newFixture(t)
	run := f.running(t, "t")
	srv := f.wsServer(t)
	var d dropper
	c := httpapi.Client{BaseURL: srv.URL, HTTPClient: d.client()}

	var got []int64
	for doc, err := range c.Follow(t.Context(), "/tasks/t/ws") {
		require.NoError(t, err)
		got = append(got, doc.Version)
		switch len(got) {
		case 1:
			d.drop()
			require.NoError(t, run.Apply(t.Context(), tracker.SetProgress(store.Progress{Done: 1})))
		case 2:
			require.NoError(t, run.Apply(t.Context(), tracker.Succeed()))
		}
	}
	v := f.version(t, "t")
	assert.Equal(t, []int64{v - 2, v - 1, v}, got, "each document once, in order")
	assert.Equal(t, 2, d.dialed, "one connection again after the drop")
	f.store.waitFor(t, 0)

	t.Run("FollowTasks", func(t *testing.T) {
		runs := map[string]*tracker.Run{"a": f.running(t, "a"), "b": f.running(t, "b")}
		var d dropper
		c := httpapi.Client{BaseURL: srv.URL, HTTPClient: d.client()}
		got := map[string][]store.Status{}
		n := 0
		for doc, err := range c.FollowTasks(t.Context(), "/tasks/ws", "a", "b") {
			require.NoError(t, err)
			got[doc.ID] = append(got[doc.ID], doc.Status)
			if n++; n == 2 { // both tasks' first documents
				d.drop()
				for _, run := range runs {
					require.NoError(t, run.Apply(t.Context(), tracker.Succeed()))
				}
			}
		}
		assert.Equal(t, map[string][]store.Status{
			"a": {store.StatusRunning, store.StatusSuccess},
			"b": {store.StatusRunning, store.StatusSuccess},
		}, got, "each task's documents once, in order")
		assert.Equal(t, 2, d.dialed, "one connection again after the drop")
		f.store.waitFor(t, 0)
	})
	t.Run("no server at first", func(t *testing.T) {
		var lc net.ListenConfig
		ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close()) // nothing listens there now
		c := httpapi.Client{BaseURL: "http://" + addr}
		// A Follow that retried would yield only its context's error, at
		// the end of this guard.
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		errs := 0
		for doc, err := range c.Follow(ctx, "/tasks/t/ws") {
			require.Error(t, err, "a connection refused before any document is an error, not retried")
			require.NoError(t, ctx.Err(), "a connection refused before any document is not retried: %v", err)
			assert.Zero(t, doc.Version)
			errs++
		}
		assert.Equal(t, 1, errs)
	})
}

// TestWebSocketPing pings two clients after a heartbeat's time: the one
// that reads answers and stays, the one that does not is cut off once
// the write timeout passes without its pong, and its watch is freed.
func TestWebSocketPing(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	srv := f.wsServer(t, httpapi.WithHeartbeat(time.Minute), httpapi.WithWriteTimeout(time.Second))
	live := wsDial(t, srv, "/tasks/t/ws")
	wsStatus(t, live)
	read := make(chan error, 1)
	go func() {
		for {
			if _, _, err := live.Read(context.Background()); err != nil {
				read <- err
				return
			}
		}
	}()
	silent := wsDial(t, srv, "/tasks/t/ws")
	wsStatus(t, silent)

	f.clock.waitPending(t, 2) // the heartbeats of both
	f.clock.Advance(time.Minute)
	f.store.waitFor(t, 1)  // the silent client is cut off
	f.clock.waitMade(t, 3) // the live one waits for its next heartbeat
	f.store.waitFor(t, 1)
	select {
	case err := <-read:
		t.Fatalf("the live client's connection ended: %v", err)
	default:
	}
	require.NoError(t, live.Close(websocket.StatusNormalClosure, ""))
	assert.Equal(t, websocket.StatusNormalClosure, websocket.CloseStatus(<-read))
}

func TestClientFollowTasks(t *testing.T) {
	f := newFixture(t)
	runs := map[string]*tracker.Run{"a": f.running(t, "a"), "b": f.running(t, "b")}
	srv := f.wsServer(t)
	c := httpapi.Client{BaseURL: srv.URL}

	got := map[string][]store.Status{}
	var missing error
	for doc, err := range c.FollowTasks(t.Context(), "/tasks/ws", "a", "b", "nope") {
		if err != nil {
			require.Equal(t, "nope", doc.ID, "only the unknown task is refused: %v", err)
			missing = err
			continue
		}
		got[doc.ID] = append(got[doc.ID], doc.Status)
		if len(got[doc.ID]) == 1 {
			require.NoError(t, runs[doc.ID].Apply(t.Context(), tracker.Succeed()))
		}
	}
	require.ErrorIs(t, missing, store.ErrNotFound)
	assert.Equal(t, map[string][]store.Status{
		"a": {store.StatusRunning, store.StatusSuccess},
		"b": {store.StatusRunning, store.StatusSuccess},
	}, got, "each task's current state, then its end")
	f.store.waitFor(t, 0)
}

// TestWebSocketAbandoned follows a leased task as an event stream does:
// no message for renewals, the document that says the task was abandoned
// when its lease ends ("7a"), the next attempt after a retry; and a
// client that resumes from "7a" is not told again.
func TestWebSocketAbandoned(t *testing.T) {
	f := newFixture(t)
	tr, run := f.leased(t, f.mem)
	srv := f.wsServer(t, httpapi.WithHeartbeat(0))
	c := wsDial(t, srv, "/tasks/t/ws")
	assert.Equal(t, false, wsStatus(t, c).Document["abandoned"])

	f.clock.waitPending(t, 1) // the end of the lease
	for range 3 * leaseTime / time.Second {
		f.clock.Advance(time.Second)
		require.NoError(t, run.Apply(t.Context(), tracker.Heartbeat()))
	}
	f.clock.waitMade(t, 2)
	require.NoError(t, run.Apply(t.Context(), tracker.SetProgress(store.Progress{Done: 1})))
	m := wsStatus(t, c)
	assert.Equal(t, map[string]any{"done": 1.0, "total": 0.0, "message": ""}, m.Document["progress"], "the change is the next message")
	v := f.version(t, "t")

	f.clock.Advance(leaseTime + time.Millisecond)
	m = wsStatus(t, c)
	assert.Equal(t, true, m.Document["abandoned"])
	assert.Equal(t, fmt.Sprintf("%da", v), m.EventID)

	resumed := wsDial(t, srv, fmt.Sprintf("/tasks/t/ws?last_event_id=%da", v))
	f.store.waitFor(t, 2)
	require.NoError(t, tr.Apply(t.Context(), "t", tracker.Retry()))
	for _, c := range []*websocket.Conn{c, resumed} {
		m = wsStatus(t, c)
		assert.Equal(t, false, m.Document["abandoned"], "the retry is the next message")
		assert.EqualValues(t, 2, m.Document["attempt"])
		require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	}
	f.store.waitFor(t, 0)
}

func TestWebSocketOrigins(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	dial := func(srv *httptest.Server, origin string) (int, error) {
		url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/tasks/t/ws"
		c, resp, err := websocket.Dial(t.Context(), url, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {origin}}}) //nolint:bodyclose // Dial closes it
		if err != nil {
			return resp.StatusCode, err
		}
		wsStatus(t, c)
		return resp.StatusCode, c.Close(websocket.StatusNormalClosure, "")
	}
	own := f.wsServer(t)
	code, err := dial(own, own.URL)
	require.NoError(t, err, "a page of the handler's own host")
	assert.Equal(t, http.StatusSwitchingProtocols, code)
	code, _ = dial(own, "https://app.example.com")
	assert.Equal(t, http.StatusForbidden, code, "another origin, by default")

	other := f.wsServer(t, httpapi.WithOrigins("*.example.com"))
	code, err = dial(other, "https://app.example.com")
	require.NoError(t, err, "an origin allowed")
	assert.Equal(t, http.StatusSwitchingProtocols, code)
	code, _ = dial(other, "https://example.org")
	assert.Equal(t, http.StatusForbidden, code, "an origin not allowed")

	_, err = httpapi.WebSocketHandler(f.store, httpapi.WithOrigins("[bad"))
	require.Error(t, err)
	f.store.waitFor(t, 0)
}
