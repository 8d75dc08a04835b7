package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"sync"

	"github.com/coder/websocket"

	"github.com/taskstatus/taskstatus/store"
)

// Close codes of the WebSocket handler beyond the standard ones: 4000 plus
// the HTTP status code a status request would be answered with. The
// connection of a task named by the path is closed with them; a
// connection that follows several tasks sends an error message instead.
const (
	closeInvalid     websocket.StatusCode = 4400 // an invalid id or message
	closeNotFound    websocket.StatusCode = 4404 // an unknown task, or one the authorization hook refused
	closeUnavailable websocket.StatusCode = 4503 // the store is down, or too many watchers
)

// maxCommand bounds the messages a client of the WebSocket handler sends.
const maxCommand = 4 << 10

// WebSocketHandler returns a handler that pushes the documents of tasks
// of s to WebSocket clients, with the guarantees of the event stream of
// [StatusHandler]: the current document first, then one per change in
// version order, resumption from an event id, the authorization hook, the
// watcher limit, shutdown. If the handler's pattern holds the path value
// (see [WithPathValue]), a connection follows that task and closes after
// its terminal state; otherwise the client subscribes to tasks by id. The
// package doc describes the protocol.
//
// WebSocketHandler returns an error if s is nil or cannot watch (is not a
// [store.Watcher]), or an option refuses its value.
func WebSocketHandler(s store.Store, opts ...Option) (http.Handler, error) {
	h, err := newHandler("WebSocketHandler", s, opts)
	if err != nil {
		return nil, err
	}
	if h.watcher == nil {
		return nil, errors.New("httpapi: WebSocketHandler: the store cannot watch: it is not a store.Watcher")
	}
	return wsHandler{h}, nil
}

// WithOrigins lets pages of other origins than the WebSocket handler's
// own host open WebSockets to it: those whose host matches one of
// patterns, each a [path.Match] pattern matched without regard to case,
// such as "app.example.com" or "*.example.com"; a pattern with "://"
// is matched against the origin's scheme and host. A browser sends such
// a page's cookies with the handshake, so allow only the origins whose
// pages may act for the user (see [WithAuthorize]). Each pattern must be
// valid. By default only pages of the request's host may, and clients
// that send no Origin, such as [Client]. Other handlers ignore it.
func WithOrigins(patterns ...string) Option {
	return func(c *config) error {
		for _, p := range patterns {
			if _, err := path.Match(p, ""); err != nil {
				return fmt.Errorf("httpapi: WithOrigins(%q): %w", p, err)
			}
		}
		c.origins = slices.Clone(patterns)
		return nil
	}
}

// wsHandler is the http.Handler WebSocketHandler returns.
type wsHandler struct{ h *handler }

// ServeHTTP implements [http.Handler].
func (ws wsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeProblem(w, r, http.StatusMethodNotAllowed, "A WebSocket is opened with GET.")
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: ws.h.origins})
	if err != nil {
		return // Accept has answered
	}
	c.SetReadLimit(maxCommand)
	// The request's context ends when ServeHTTP returns: the connection
	// outlives it until it is closed below.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	conn := &wsConn{h: ws.h, r: r, c: c, ctx: ctx, cancel: cancel, ended: make(chan wsEnd, 1), subs: make(map[string]*wsSub)}
	code, reason := conn.serve(r.PathValue(ws.h.pathValue), r.URL.Query().Get("last_event_id"))
	_ = c.Close(code, reason) // an error means the client has gone
	conn.wait()
}

// wsConn is one WebSocket connection, and the tasks it follows.
type wsConn struct {
	h      *handler
	r      *http.Request
	c      *websocket.Conn
	ctx    context.Context // ends with the connection
	cancel context.CancelFunc
	ended  chan wsEnd // why to close a connection that follows one task

	mu    sync.Mutex
	subs  map[string]*wsSub // the tasks followed, by id
	group sync.WaitGroup    // the reader and the subscriptions
}

// wsSub is a task a connection follows.
type wsSub struct {
	cancel context.CancelFunc
}

// wsEnd is why a subscription ended: code 0 after the task's terminal
// state (or when the connection ends), else the close code that says why,
// and its detail.
type wsEnd struct {
	code   websocket.StatusCode
	detail string
}

// serve follows task id, named by the request's path, from the document
// named by lastID, or if id is empty the tasks the client subscribes to,
// until the connection is to be closed, and returns its close code and
// reason.
func (c *wsConn) serve(id, lastID string) (websocket.StatusCode, string) {
	if id != "" {
		c.subscribe(id, parseLastEvent(lastID), true)
	}
	c.group.Go(func() { c.read(id != "") })
	for {
		tick, stopTick := c.h.heartbeatTimer()
		select {
		case end := <-c.ended:
			stopTick()
			if end.code == 0 {
				return c.normalClose()
			}
			return end.code, end.detail
		case <-tick:
			if c.ping() != nil {
				// A peer that does not answer pings would not answer a
				// close either: close without waiting for it.
				_ = c.c.CloseNow()
				return websocket.StatusPolicyViolation, "no pong"
			}
		case <-c.h.shutdown:
			stopTick()
			return websocket.StatusGoingAway, shutdownReason
		case <-c.ctx.Done():
			stopTick()
			return c.normalClose()
		}
	}
}

// shutdownReason is the reason of the close that tells a client the
// service is shutting down.
const shutdownReason = "The service is shutting down. Reconnect later."

// normalClose returns the close code and reason of a connection whose
// subscriptions ended, or whose context did: going away if the service is
// shutting down, which ends its watches too, so that a client told to
// reconnect is told so whichever of the two it heard of first; else a
// normal closure.
func (c *wsConn) normalClose() (websocket.StatusCode, string) {
	select {
	case <-c.h.shutdown:
		return websocket.StatusGoingAway, shutdownReason
	default:
		return websocket.StatusNormalClosure, ""
	}
}

// wait ends what the connection's goroutines wait for, once it is
// closed, and waits for them to end.
func (c *wsConn) wait() {
	c.cancel()
	c.group.Wait()
}

// ping pings the client and waits for its pong within the write timeout.
func (c *wsConn) ping() error {
	ctx, cancel := c.writeContext()
	defer cancel()
	return c.c.Ping(ctx)
}

// writeContext returns the context of a write: the connection's, bounded
// by the write timeout. A write whose context ends closes the connection.
func (c *wsConn) writeContext() (context.Context, context.CancelFunc) {
	if c.h.writeTimeout > 0 {
		return context.WithTimeout(c.ctx, c.h.writeTimeout)
	}
	return context.WithCancel(c.ctx)
}

// wsCommand is a message from the client.
type wsCommand struct {
	Type        string `json:"type"` // "subscribe" or "unsubscribe"
	ID          string `json:"id"`
	LastEventID string `json:"last_event_id,omitempty"` // of subscribe: the document the client has
}

// read reads the client's messages until the connection ends, and acts on
// them; a connection that follows the task named by its path takes none.
// It ends the connection when reading fails: the client has gone or
// closed it, or sent a message too large.
func (c *wsConn) read(single bool) {
	defer c.cancel()
	for {
		typ, msg, err := c.c.Read(c.ctx)
		if err != nil {
			return
		}
		var cmd wsCommand
		switch {
		case single:
			c.end(wsEnd{closeInvalid, "This connection follows the task of its URL and takes no messages."})
		case typ != websocket.MessageText || json.Unmarshal(msg, &cmd) != nil:
			c.tell("", wsEnd{closeInvalid, "A message is a JSON object: {\"type\":\"subscribe\",\"id\":...}."})
		case store.ValidateID(cmd.ID) != nil:
			c.tell(cmd.ID, wsEnd{closeInvalid, detailInvalidID})
		case cmd.Type == "subscribe":
			if !c.subscribe(cmd.ID, parseLastEvent(cmd.LastEventID), false) {
				c.tell(cmd.ID, wsEnd{closeInvalid, "The task is followed already."})
			}
		case cmd.Type == "unsubscribe":
			c.unsubscribe(cmd.ID)
		default:
			c.tell(cmd.ID, wsEnd{closeInvalid, `The type of a message is "subscribe" or "unsubscribe".`})
		}
	}
}

// subscribe starts following task id from the document last names, and
// reports false if it is followed already. When the subscription ends, it
// ends the connection if single is true, else tells the client if it
// ended early.
func (c *wsConn) subscribe(id string, last lastEvent, single bool) bool {
	ctx, cancel := context.WithCancel(c.ctx)
	sub := &wsSub{cancel: cancel}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		cancel()
		return true // the connection ends: nothing to follow, or to tell
	}
	if _, ok := c.subs[id]; ok {
		cancel()
		return false
	}
	c.subs[id] = sub
	c.group.Go(func() {
		defer cancel()
		end := c.follow(ctx, id, last)
		c.mu.Lock()
		if c.subs[id] == sub {
			delete(c.subs, id)
		}
		c.mu.Unlock()
		switch {
		case single:
			c.end(end)
		case end.code != 0 && ctx.Err() == nil:
			c.tell(id, end)
		}
	})
	return true
}

// end closes the connection for the reason given, unless it is being
// closed for another already.
func (c *wsConn) end(why wsEnd) {
	select {
	case c.ended <- why:
	default:
	}
}

// unsubscribe stops following task id, if it is followed.
func (c *wsConn) unsubscribe(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sub, ok := c.subs[id]; ok {
		delete(c.subs, id)
		sub.cancel()
	}
}

// follow sends the client the documents of task id newer than last, as an
// event stream does, until the task ends, ctx ends, the service shuts
// down, or following cannot go on, and returns why it ended.
//
// When the store ends the watch early, the task is read again: the
// client is told that it is gone or that the store is down, or else it is
// followed again from the document the client has.
func (c *wsConn) follow(ctx context.Context, id string, last lastEvent) wsEnd {
	h := c.h
	if !h.acquire() {
		return wsEnd{closeUnavailable, detailBusy}
	}
	defer h.release()
	for {
		st, err := h.store.Get(ctx, id)
		if err != nil {
			return c.failed(ctx, err)
		}
		if !h.allowed(c.r, st) {
			return wsEnd{closeNotFound, detailNotFound}
		}
		doc := h.document(st)
		var states <-chan store.State
		if !doc.Status.Terminal() {
			if states, err = h.watcher.Watch(ctx, id); err != nil {
				return c.failed(ctx, err)
			}
		}
		if last.olderThan(doc) {
			if err := c.send(doc); err != nil {
				return c.failed(ctx, err)
			}
		}
		if states == nil {
			return wsEnd{}
		}
		f := h.follow(states, doc)
		end, again := c.relay(ctx, f)
		if !again {
			return end
		}
		last = lastEvent{f.sent.Version, f.sent.Abandoned}
	}
}

// relay sends the client each document f finds until the task ends, and
// returns why it ended; again reports that the watch ended early, and the
// task is to be read again.
func (c *wsConn) relay(ctx context.Context, f *follower) (end wsEnd, again bool) {
	defer f.stop()
	for {
		why, err := f.next(ctx, nil)
		switch why {
		case wakeNews:
			if !c.h.allowed(c.r, f.sent.State) {
				return wsEnd{closeNotFound, detailNotFound}, false
			}
			if err := c.send(f.sent); err != nil {
				return c.failed(ctx, err), false
			}
			if f.sent.Status.Terminal() {
				return wsEnd{}, false
			}
		case wakeEnded:
			return wsEnd{}, ctx.Err() == nil
		case wakeFailed:
			return c.failed(ctx, err), false
		default: // the connection ends, or the service shuts down
			return wsEnd{}, false
		}
	}
}

// failed returns the end of a subscription whose store call, rendering or
// write failed with err: nothing if ctx or the connection has ended, else
// the close code of the answer a status request would get. Errors behind
// a 500 or 503 are reported to the error handler.
func (c *wsConn) failed(ctx context.Context, err error) wsEnd {
	if ctx.Err() != nil || c.ctx.Err() != nil {
		return wsEnd{}
	}
	code, detail := c.h.problem(c.r, err)
	return wsEnd{websocket.StatusCode(4000 + code), detail}
}

// send writes doc to the client as a status message:
//
//	{"type":"status","id":"doc-123","event_id":"7","document":{...}}
//
// A write that fails ends the connection.
func (c *wsConn) send(doc Document) error {
	out, err := c.h.render(doc)
	if err != nil {
		return err
	}
	id, err := marshal(doc.ID)
	if err != nil {
		return err
	}
	msg := make([]byte, 0, len(out.body)+len(id)+64)
	msg = append(append(append(msg, `{"type":"status","id":`...), id...), `,"event_id":"`...)
	msg = append(appendEventID(msg, doc), `","document":`...)
	msg = append(append(msg, out.body...), '}')
	return c.write(msg)
}

// wsError is the message that tells the client why the subscription to a
// task ended early.
type wsError struct {
	Type   string `json:"type"` // "error"
	ID     string `json:"id,omitempty"`
	Code   int    `json:"code"` // a close code: 4000 plus an HTTP status code
	Detail string `json:"detail"`
}

// tell sends the client an error message about task id (none if empty)
// that says why its subscription ended, or its message was refused.
func (c *wsConn) tell(id string, end wsEnd) {
	msg, _ := marshal(wsError{"error", id, int(end.code), end.detail}) // cannot fail: strings and an int
	_ = c.write(msg)                                                   // a failed write ends the connection
}

// write sends msg to the client within the write timeout, and ends the
// connection if it fails.
func (c *wsConn) write(msg []byte) error {
	ctx, cancel := c.writeContext()
	defer cancel()
	err := c.c.Write(ctx, websocket.MessageText, msg)
	if err != nil {
		c.cancel()
	}
	return err
}
