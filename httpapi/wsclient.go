package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"

	"github.com/coder/websocket"
)

// Follow returns an iterator over the documents of the task that the
// WebSocket handler ([WebSocketHandler]) at wsURL follows: its current
// document, then one per change, in version order, until the task ends;
// the last document is its terminal one. wsURL is a ws: or wss: URL, or
// an http: or https: one that is taken to mean the same, resolved against
// BaseURL if it is relative.
//
// When the server goes away (close code 1001, at its shutdown), its
// store is down (4503), or, once a document has come, the connection is
// lost or cannot be made again (the network failed, or the server died),
// Follow connects again after a pause, resuming after the last document
// it yielded, until ctx ends. It stops at the first other error, which it
// yields with a zero Document: a close for an unknown task, or a refused
// handshake, is a [*ResponseError], which wraps [store.ErrNotFound] for
// 404. When ctx ends it yields ctx's error.
func (c *Client) Follow(ctx context.Context, wsURL string) iter.Seq2[Document, error] {
	return func(yield func(Document, error) bool) {
		u, err := c.resolveWS(wsURL)
		if err != nil {
			yield(Document{}, err)
			return
		}
		var last Document
		for {
			done, err := c.followOnce(ctx, u, &last, yield)
			if done {
				return
			}
			if ctx.Err() != nil {
				yield(Document{}, context.Cause(ctx))
				return
			}
			if !reconnects(err, last.Version > 0) {
				yield(Document{}, err)
				return
			}
			if err := sleep(ctx, defaultPause); err != nil {
				yield(Document{}, err)
				return
			}
		}
	}
}

// resolveWS returns wsURL resolved against BaseURL, with an http: or
// https: scheme turned into ws: or wss:.
func (c *Client) resolveWS(wsURL string) (*url.URL, error) {
	u, err := c.resolve(wsURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	return u, nil
}

// errConnLost marks the errors of a connection that could not be made, or
// that ended without a close message.
var errConnLost = errors.New("connection lost")

// reconnects reports whether Follow and FollowTasks connect again after
// err: the server went away, its store is down, or, once a document has
// come (seen), the connection was lost.
func reconnects(err error, seen bool) bool {
	var re *ResponseError
	return websocket.CloseStatus(err) == websocket.StatusGoingAway ||
		(errors.As(err, &re) && re.StatusCode == http.StatusServiceUnavailable) ||
		(seen && errors.Is(err, errConnLost))
}

// connError returns err, met on the connection to u, marked with
// errConnLost unless the server closed the connection.
func connError(u *url.URL, err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Errorf("httpapi: follow %s: %w", u, err)
	}
	return fmt.Errorf("httpapi: follow %s: %w: %w", u, errConnLost, err)
}

// followOnce connects to u, resuming after last, and yields the documents
// it is sent, each kept in last, until the connection ends. It reports
// done when the task has ended or yield asked to stop; else why the
// connection ended.
func (c *Client) followOnce(ctx context.Context, u *url.URL, last *Document, yield func(Document, error) bool) (done bool, err error) {
	if last.Version > 0 {
		q := u.Query()
		q.Set("last_event_id", string(appendEventID(nil, *last)))
		resumed := *u
		resumed.RawQuery = q.Encode()
		u = &resumed
	}
	conn, err := c.dial(ctx, u)
	if err != nil {
		return false, err
	}
	defer func() { _ = conn.CloseNow() }() // closed already if the server closed it
	for {
		_, msg, err := conn.Read(ctx)
		if err != nil {
			return websocketEnd(u, err)
		}
		var m struct {
			Type     string          `json:"type"`
			Document json.RawMessage `json:"document"`
		}
		if err := json.Unmarshal(msg, &m); err != nil || m.Type != "status" {
			return false, fmt.Errorf("httpapi: follow %s: not a status message: %.100s", u, msg)
		}
		doc := Document{IDField: c.IDField}
		if err := json.Unmarshal(m.Document, &doc); err != nil {
			return false, fmt.Errorf("httpapi: decode status from %s: %w", u, err)
		}
		*last = doc
		if !yield(doc, nil) {
			return true, nil
		}
	}
}

// dial opens a WebSocket to u. A refused handshake is a [*ResponseError].
func (c *Client) dial(ctx context.Context, u *url.URL) (*websocket.Conn, error) {
	conn, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPClient: c.HTTPClient})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			_ = resp.Body.Close() // Dial has read the body
			return nil, &ResponseError{StatusCode: resp.StatusCode}
		}
		return nil, connError(u, err)
	}
	conn.SetReadLimit(maxDocumentSize)
	return conn, nil
}

// websocketEnd returns what the end of the connection to u with err says:
// done if the server closed it normally, after the task's end; a
// [*ResponseError] for the close codes of an HTTP status; else err.
func websocketEnd(u *url.URL, err error) (done bool, _ error) {
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		return false, connError(u, err)
	}
	if ce.Code == websocket.StatusNormalClosure {
		return true, nil
	}
	if status := int(ce.Code) - 4000; status >= 400 && status < 600 {
		return false, &ResponseError{StatusCode: status, Problem: Problem{Status: status, Detail: ce.Reason}}
	}
	return false, fmt.Errorf("httpapi: follow %s: %w", u, err)
}

// FollowTasks returns an iterator over the documents of the tasks ids,
// followed on one connection to the WebSocket handler
// ([WebSocketHandler]) at wsURL, mounted on a pattern without the task
// id: each task's current document, then one per change, in version
// order for each task, until every task has ended. wsURL is resolved as
// [Client.Follow] resolves it.
//
// When the server refuses a task (it is unknown, or the store is down),
// FollowTasks yields a [*ResponseError] with a Document whose ID names
// the task, and follows the others. When the server goes away, its store
// is down or the connection is lost, as [Client.Follow] tells, it
// connects again after a pause and subscribes again, each task from the
// last document it yielded. It stops at the first other error of the
// connection, which it yields with a zero Document, and when ctx ends,
// yielding ctx's error.
func (c *Client) FollowTasks(ctx context.Context, wsURL string, ids ...string) iter.Seq2[Document, error] {
	return func(yield func(Document, error) bool) {
		u, err := c.resolveWS(wsURL)
		if err != nil {
			yield(Document{}, err)
			return
		}
		last := make(map[string]Document, len(ids)) // the tasks followed, and the document each has
		for _, id := range ids {
			last[id] = Document{}
		}
		seen := false // whether a document has come
		for len(last) > 0 {
			done, err := c.followTasksOnce(ctx, u, last, func(doc Document, err error) bool {
				seen = seen || err == nil
				return yield(doc, err)
			})
			if done {
				return
			}
			switch {
			case ctx.Err() != nil:
				yield(Document{}, context.Cause(ctx))
				return
			case !reconnects(err, seen):
				yield(Document{}, err)
				return
			}
			if err := sleep(ctx, defaultPause); err != nil {
				yield(Document{}, err)
				return
			}
		}
	}
}

// wsMessage is a message of the WebSocket handler: a status or an error.
type wsMessage struct {
	Type     string          `json:"type"`
	ID       string          `json:"id"`
	Document json.RawMessage `json:"document"`
	Code     int             `json:"code"`
	Detail   string          `json:"detail"`
}

// followTasksOnce connects to u, subscribes to the tasks of last, each
// from its document, and yields what it is sent, keeping each task's
// latest document in last and dropping a task from last once it has
// ended or been refused. It reports done when no task is left or yield
// asked to stop; else why the connection ended.
func (c *Client) followTasksOnce(ctx context.Context, u *url.URL, last map[string]Document, yield func(Document, error) bool) (done bool, err error) {
	conn, err := c.dial(ctx, u)
	if err != nil {
		return false, err
	}
	defer func() { _ = conn.Close(websocket.StatusNormalClosure, "") }() // an error: closed already
	for id, doc := range last {
		cmd := wsCommand{Type: "subscribe", ID: id}
		if doc.Version > 0 {
			cmd.LastEventID = string(appendEventID(nil, doc))
		}
		msg, _ := json.Marshal(cmd) // cannot fail: strings
		if err := conn.Write(ctx, websocket.MessageText, msg); err != nil {
			return false, connError(u, err)
		}
	}
	for len(last) > 0 {
		_, msg, err := conn.Read(ctx)
		if err != nil {
			return false, connError(u, err)
		}
		var m wsMessage
		if err := json.Unmarshal(msg, &m); err != nil {
			return false, fmt.Errorf("httpapi: follow %s: not a message: %.100s", u, msg)
		}
		if _, ok := last[m.ID]; !ok {
			continue // a task no longer followed
		}
		doc, err := c.taskMessage(u, m)
		if err != nil || doc.Status.Terminal() {
			delete(last, m.ID)
		} else {
			last[m.ID] = doc
		}
		if !yield(doc, err) {
			return true, nil
		}
	}
	return true, nil
}

// taskMessage returns the document of m, a message about a task: its
// status, or the error that ended its subscription, with a Document that
// names the task.
func (c *Client) taskMessage(u *url.URL, m wsMessage) (Document, error) {
	doc := Document{IDField: c.IDField}
	if m.Type == "status" {
		if err := json.Unmarshal(m.Document, &doc); err != nil {
			doc.ID = m.ID
			return doc, fmt.Errorf("httpapi: decode status from %s: %w", u, err)
		}
		return doc, nil
	}
	doc.ID = m.ID
	status := m.Code - 4000
	return doc, &ResponseError{StatusCode: status, Problem: Problem{Status: status, Detail: m.Detail}}
}
