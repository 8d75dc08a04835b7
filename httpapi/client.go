package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// Client reads task statuses from a status handler: the Go counterpart of
// the origin service's polling client. The zero Client is ready to use;
// its methods are safe for concurrent use.
//
// A Client reads the default status document (see the package doc), not
// one replaced with [WithRender].
type Client struct {
	// HTTPClient makes the requests. nil means http.DefaultClient.
	HTTPClient *http.Client

	// BaseURL resolves relative status URLs, such as the origin's
	// "/process/document/doc-123/status". Absolute ones do not need it.
	BaseURL string

	// IDField names the document's id field, as [WithIDField] does for
	// the handler. "" means [DefaultIDField].
	IDField string

	// PollWait is the wait each long poll of Wait asks for; the server
	// caps it. 0 means 30 seconds.
	PollWait time.Duration
}

// maxDocumentSize bounds the status documents a Client reads.
const maxDocumentSize = 8 << 20

// defaultPollWait is the wait a long poll asks for when Client.PollWait is 0.
const defaultPollWait = 30 * time.Second

// defaultPause is how long Wait waits before polling again when a server
// that does not long-poll gives no Retry-After.
const defaultPause = time.Second

// ErrAbandoned is returned by [Client.Wait] when the task's lease ended
// before the task did: the process doing its work stopped, most likely
// because it died (see [store.State.Stale]).
var ErrAbandoned = errors.New("httpapi: task abandoned: its lease ended")

// ResponseError is the error a [Client] returns when the status handler
// answers with an error. It wraps [store.ErrNotFound] for 404 and
// [store.ErrUnavailable] for 503, so errors.Is tells them apart.
type ResponseError struct {
	StatusCode int           // the HTTP status code
	Problem    Problem       // the problem document, if the body was one
	RetryAfter time.Duration // the Retry-After, if any
}

// Error returns the status code and the problem's detail.
func (e *ResponseError) Error() string {
	msg := "httpapi: " + strconv.Itoa(e.StatusCode) + " " + http.StatusText(e.StatusCode)
	if e.Problem.Detail != "" {
		msg += ": " + e.Problem.Detail
	}
	return msg
}

// Unwrap returns the store error the status code stands for, or nil.
func (e *ResponseError) Unwrap() error {
	switch e.StatusCode {
	case http.StatusNotFound:
		return store.ErrNotFound
	case http.StatusServiceUnavailable:
		return store.ErrUnavailable
	}
	return nil
}

// Get returns the current state of the task whose status is served at
// statusURL. An error answer is returned as a [*ResponseError].
func (c *Client) Get(ctx context.Context, statusURL string) (store.State, error) {
	u, err := c.resolve(statusURL)
	if err != nil {
		return store.State{}, err
	}
	st, _, _, err := c.poll(ctx, u, 0, 0)
	return st, err
}

// Wait waits for the task whose status is served at statusURL to end and
// returns its final state. It long-polls, so it learns of the end as soon
// as the server does; against a server that answers at once it polls every
// Retry-After. It waits out 503 answers for their Retry-After, and returns
// any other error answer (such as 404 for an unknown task) as a
// [*ResponseError]. If the task's lease ends before the task does, Wait
// returns its last state with [ErrAbandoned], judged by the local clock.
// When ctx ends first, Wait returns the last state it read with ctx's
// error.
func (c *Client) Wait(ctx context.Context, statusURL string) (store.State, error) {
	u, err := c.resolve(statusURL)
	if err != nil {
		return store.State{}, err
	}
	var last store.State
	for {
		wait := c.PollWait
		if wait <= 0 {
			wait = defaultPollWait
		}
		if d, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(d))
		}
		if !last.LeaseUntil.IsZero() {
			wait = min(wait, time.Until(last.LeaseUntil)) // a renewal is a change
		}
		wait = max(wait, time.Millisecond)
		start := time.Now()
		st, changed, pause, err := c.poll(ctx, u, wait, last.Version)
		if err == nil && changed {
			last = st
		}
		switch {
		case err == nil && last.Status.Terminal():
			return last, nil
		case err == nil && last.Stale(time.Now()):
			return last, fmt.Errorf("httpapi: wait for %s: %w", u, ErrAbandoned)
		case err == nil && (changed || time.Since(start) >= wait):
			continue // news, or a long poll that timed out: ask again
		case err == nil, errors.Is(err, store.ErrUnavailable):
			// No news before the wait ended (the server does not
			// long-poll), or 503: ask again after Retry-After.
		default:
			return last, err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return last, fmt.Errorf("httpapi: wait for %s: %w", u, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// resolve returns statusURL resolved against BaseURL.
func (c *Client) resolve(statusURL string) (*url.URL, error) {
	u, err := url.Parse(statusURL)
	if err == nil && c.BaseURL != "" {
		var base *url.URL
		if base, err = url.Parse(c.BaseURL); err == nil {
			u = base.ResolveReference(u)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("httpapi: status URL %q: %w", statusURL, err)
	}
	if !u.IsAbs() {
		return nil, fmt.Errorf("httpapi: status URL %q is relative and the Client has no BaseURL", statusURL)
	}
	return u, nil
}

// poll reads the status at u once. With wait > 0 it is a long poll from
// version known (0: none): changed reports whether the answer is a state
// other than that version. pause is the answer's Retry-After, or
// defaultPause if it has none.
func (c *Client) poll(ctx context.Context, u *url.URL, wait time.Duration, known int64) (st store.State, changed bool, pause time.Duration, err error) {
	if wait > 0 {
		v := u.Query()
		v.Set("wait", wait.String())
		lp := *u
		lp.RawQuery = v.Encode()
		u = &lp
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return st, false, 0, fmt.Errorf("httpapi: get %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	if known > 0 {
		req.Header.Set("If-None-Match", etag(known))
	}
	if id := tracker.CorrelationID(ctx); id != "" {
		req.Header.Set(CorrelationIDHeader, id)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return st, false, 0, fmt.Errorf("httpapi: get status: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentSize+1))
	if err == nil && len(body) > maxDocumentSize {
		err = fmt.Errorf("document larger than %d bytes", maxDocumentSize)
	}
	if err != nil {
		return st, false, 0, fmt.Errorf("httpapi: read status from %s: %w", u, err)
	}
	pause, ok := retryAfter(resp.Header.Get("Retry-After"))
	if !ok {
		pause = defaultPause
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if st, err = decodeState(body, c.IDField); err != nil {
			return st, false, 0, fmt.Errorf("httpapi: decode status from %s: %w", u, err)
		}
		return st, st.Version != known, pause, nil
	case http.StatusNotModified:
		return st, false, pause, nil
	}
	rerr := &ResponseError{StatusCode: resp.StatusCode}
	if ok {
		rerr.RetryAfter = pause
	}
	_ = json.Unmarshal(body, &rerr.Problem) // a body that is not a problem leaves it zero
	return st, false, pause, rerr
}

// retryAfter parses a Retry-After value, seconds or an HTTP date, and
// reports whether it is one.
func retryAfter(v string) (time.Duration, bool) {
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// decodeState decodes a default status document whose id field is named
// idField: the fields the document defines go to the State's fields (but
// pipeline_steps, which Steps holds too), every other field to Result.
func decodeState(body []byte, idField string) (store.State, error) {
	if idField == "" {
		idField = DefaultIDField
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return store.State{}, err
	}
	var st store.State
	delete(fields, "pipeline_steps")
	for _, f := range []struct {
		name string
		dst  any
	}{
		{idField, &st.ID},
		{"correlation_id", &st.CorrelationID},
		{"status", &st.Status},
		{"started_at", &st.StartedAt},
		{"completed_at", &st.CompletedAt},
		{"error_message", &st.ErrorMessage},
		{"error_details", &st.ErrorDetails},
		{"steps", &st.Steps},
		{"progress", &st.Progress},
		{"attempt", &st.Attempt},
		{"version", &st.Version},
		{"created_at", &st.CreatedAt},
		{"updated_at", &st.UpdatedAt},
		{"lease_until", &st.LeaseUntil},
	} {
		raw, ok := fields[f.name]
		if !ok {
			continue
		}
		delete(fields, f.name)
		if err := json.Unmarshal(raw, f.dst); err != nil { // null leaves the zero value
			return store.State{}, fmt.Errorf("field %q: %w", f.name, err)
		}
	}
	if !st.Status.Valid() {
		return store.State{}, fmt.Errorf("status %q is not a task status", st.Status)
	}
	if len(fields) > 0 {
		st.Result = fields
	}
	return st, nil
}
