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
// When the server goes away (close code 1001, at its shutdown) or its
// store is down (4503), Follow connects again after a pause, resuming
// after the last document it yielded, until ctx ends. It stops at the
// first other error, which it yields with a zero Document: a close for an
// unknown task, or a refused handshake, is a [*ResponseError], which
// wraps [store.ErrNotFound] for 404. When ctx ends it yields ctx's error.
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
			if !reconnects(err) {
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

// reconnects reports whether Follow connects again after err: the server
// went away, or its store is down.
func reconnects(err error) bool {
	var re *ResponseError
	return websocket.CloseStatus(err) == websocket.StatusGoingAway ||
		(errors.As(err, &re) && re.StatusCode == http.StatusServiceUnavailable)
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
	conn, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPClient: c.HTTPClient})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			_ = resp.Body.Close() // Dial has read the body
			return false, &ResponseError{StatusCode: resp.StatusCode}
		}
		return false, fmt.Errorf("httpapi: follow %s: %w", u, err)
	}
	defer func() { _ = conn.CloseNow() }() // closed already if the server closed it
	conn.SetReadLimit(maxDocumentSize)
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

// websocketEnd returns what the end of the connection to u with err says:
// done if the server closed it normally, after the task's end; a
// [*ResponseError] for the close codes of an HTTP status; else err.
func websocketEnd(u *url.URL, err error) (done bool, _ error) {
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		return false, fmt.Errorf("httpapi: follow %s: %w", u, err)
	}
	if ce.Code == websocket.StatusNormalClosure {
		return true, nil
	}
	if status := int(ce.Code) - 4000; status >= 400 && status < 600 {
		return false, &ResponseError{StatusCode: status, Problem: Problem{Status: status, Detail: ce.Reason}}
	}
	return false, fmt.Errorf("httpapi: follow %s: %w", u, err)
}
