package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
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
// A Client reads the default status document ([Document]), not one
// replaced with [WithRender].
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

// ErrAbandoned is returned by [Client.Wait] when the server says that the
// task was abandoned: its lease ended before the task did, so the process
// doing its work most likely died (see [Document.Abandoned]).
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

// Get returns the current document of the task whose status is served at
// statusURL. An error answer is returned as a [*ResponseError].
func (c *Client) Get(ctx context.Context, statusURL string) (Document, error) {
	u, err := c.resolve(statusURL)
	if err != nil {
		return Document{}, err
	}
	a, err := c.poll(ctx, u, 0, Document{})
	if err != nil {
		return Document{}, err
	}
	return a.doc, nil
}

// Wait waits for the task whose status is served at statusURL to end and
// returns its final document. It long-polls, so it learns of the end as
// soon as the server does; against a server that answers at once it polls
// every Retry-After. It waits out 503 answers for their Retry-After, and
// returns any other error answer (such as 404 for an unknown task) as a
// [*ResponseError]. If the server says that the task was abandoned, Wait
// returns its document with [ErrAbandoned]. When ctx ends first, Wait
// returns the last document it read with ctx's error.
func (c *Client) Wait(ctx context.Context, statusURL string) (Document, error) {
	u, err := c.resolve(statusURL)
	if err != nil {
		return Document{}, err
	}
	last := Document{IDField: c.IDField}
	for {
		wait := c.pollWait(ctx)
		start := time.Now()
		a, err := c.poll(ctx, u, wait, last)
		switch {
		case err != nil && !errors.Is(err, store.ErrUnavailable):
			return last, err
		case err != nil:
			// 503: ask again after Retry-After.
		case a.changed:
			last = a.doc
			if last.Status.Terminal() {
				return last, nil
			}
			if last.Abandoned {
				return last, fmt.Errorf("httpapi: wait for %s: %w", u, ErrAbandoned)
			}
			continue
		case time.Since(start) >= wait:
			continue // a long poll that timed out: ask again
		}
		// No news before the wait ended (the server does not long-poll),
		// or 503.
		if err := sleep(ctx, a.pause); err != nil {
			return last, fmt.Errorf("httpapi: wait for %s: %w", u, err)
		}
	}
}

// pollWait returns the wait a long poll of Wait asks for: PollWait, within
// ctx's deadline.
func (c *Client) pollWait(ctx context.Context) time.Duration {
	wait := c.PollWait
	if wait <= 0 {
		wait = defaultPollWait
	}
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d))
	}
	return max(wait, time.Millisecond)
}

// sleep waits for d, or returns ctx's cause if it ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
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

// answer is what a poll learnt.
type answer struct {
	doc     Document      // the document served, if any
	changed bool          // a document other than the one the poll named was served
	pause   time.Duration // the answer's Retry-After, or defaultPause if it has none
}

// poll reads the status at u once. With wait > 0 it is a long poll from
// last, the document the client has (none if its version is 0).
func (c *Client) poll(ctx context.Context, u *url.URL, wait time.Duration, last Document) (answer, error) {
	if wait > 0 {
		v := u.Query()
		v.Set("wait", wait.String())
		lp := *u
		lp.RawQuery = v.Encode()
		u = &lp
	}
	var tag string
	if last.Version > 0 {
		tag = etag(last.Version, last.Abandoned)
	}
	resp, err := c.do(ctx, u, tag)
	if err != nil {
		return answer{}, err
	}
	a := answer{doc: Document{IDField: c.IDField}, pause: defaultPause}
	if pause, ok := retryAfter(resp.header.Get("Retry-After")); ok {
		a.pause = pause
	}
	switch resp.code {
	case http.StatusOK:
		if err := json.Unmarshal(resp.body, &a.doc); err != nil {
			return answer{}, fmt.Errorf("httpapi: decode status from %s: %w", u, err)
		}
		a.changed = a.doc.Version != last.Version || a.doc.Abandoned != last.Abandoned
		return a, nil
	case http.StatusNotModified:
		return a, nil
	}
	return a, resp.err()
}

// List returns an iterator over the tasks that the list handler
// ([ListHandler]) at listURL finds with f, newest first, reading pages of
// pageSize tasks (0 leaves it to the handler) as the loop goes on. It
// stops at the first error, which it yields with a zero Document: an
// error answer, such as 400 for an invalid filter, is a
// [*ResponseError]. A page larger than 8 MB is an error too: ask for
// smaller pages.
func (c *Client) List(ctx context.Context, listURL string, f store.Filter, pageSize int) iter.Seq2[Document, error] {
	return func(yield func(Document, error) bool) {
		u, err := c.resolve(listURL)
		if err != nil {
			yield(Document{}, err)
			return
		}
		v := filterQuery(u.Query(), f)
		if pageSize != 0 {
			v.Set("page_size", strconv.Itoa(pageSize))
		}
		for {
			page := struct {
				Tasks         []json.RawMessage `json:"tasks"`
				NextPageToken string            `json:"next_page_token"`
			}{}
			if err := c.getJSON(ctx, u, v, &page); err != nil {
				yield(Document{}, err)
				return
			}
			for _, raw := range page.Tasks {
				doc := Document{IDField: c.IDField}
				if err := json.Unmarshal(raw, &doc); err != nil {
					yield(Document{}, fmt.Errorf("httpapi: decode a task listed at %s: %w", u, err))
					return
				}
				if !yield(doc, nil) {
					return
				}
			}
			if page.NextPageToken == "" {
				return
			}
			v.Set("page_token", page.NextPageToken)
		}
	}
}

// Counts returns the counts of tasks by status that the counts handler
// ([CountsHandler]) at countsURL serves for f, every status present. f
// may set Kind and Label only; the handler refuses other fields.
func (c *Client) Counts(ctx context.Context, countsURL string, f store.Filter) (map[store.Status]int64, error) {
	u, err := c.resolve(countsURL)
	if err != nil {
		return nil, err
	}
	var answer struct {
		Counts map[store.Status]int64 `json:"counts"`
	}
	if err := c.getJSON(ctx, u, filterQuery(u.Query(), f), &answer); err != nil {
		return nil, err
	}
	return answer.Counts, nil
}

// Cancel asks the cancel handler ([CancelHandler]) at cancelURL for the
// cancellation of its task, for reason (which may be empty), and returns
// the task's status URL, resolved. An error answer is returned as a
// [*ResponseError]: 409 if the task has ended, 404 if it is unknown.
func (c *Client) Cancel(ctx context.Context, cancelURL, reason string) (string, error) {
	var body []byte
	if reason != "" {
		body, _ = json.Marshal(map[string]string{"reason": reason}) // a string cannot fail
	}
	return c.post(ctx, cancelURL, body)
}

// Retry asks the retry handler ([RetryHandler]) at retryURL for a new
// attempt of its task, and returns the task's status URL, resolved. An
// error answer is returned as a [*ResponseError]: 409 if the task has not
// ended, 404 if it is unknown.
func (c *Client) Retry(ctx context.Context, retryURL string) (string, error) {
	return c.post(ctx, retryURL, nil)
}

// post POSTs body, JSON if it is not empty, to rawURL and returns the
// Location of a 202 answer, resolved against rawURL.
func (c *Client) post(ctx context.Context, rawURL string, body []byte) (string, error) {
	u, err := c.resolve(rawURL)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("httpapi: post %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	if len(body) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return "", err
	}
	if resp.code != http.StatusAccepted {
		return "", resp.err()
	}
	loc, err := u.Parse(resp.header.Get("Location"))
	if err != nil {
		return "", fmt.Errorf("httpapi: the Location of the answer of %s: %w", u, err)
	}
	return loc.String(), nil
}

// filterQuery adds the query parameters of f to v and returns it.
func filterQuery(v url.Values, f store.Filter) url.Values {
	for _, s := range f.Statuses {
		v.Add("status", string(s))
	}
	if f.Kind != "" {
		v.Set("kind", f.Kind)
	}
	if f.Label != (store.Label{}) {
		v.Set("label", f.Label.Key+":"+f.Label.Value)
	}
	for name, t := range map[string]time.Time{
		"created_after":      f.CreatedAfter,
		"created_before":     f.CreatedBefore,
		"lease_ended_before": f.LeaseEndedBefore,
	} {
		if !t.IsZero() {
			v.Set(name, t.UTC().Format(time.RFC3339Nano))
		}
	}
	return v
}

// getJSON GETs u with the query v and decodes its answer, a JSON
// document, into out.
func (c *Client) getJSON(ctx context.Context, u *url.URL, v url.Values, out any) error {
	q := *u
	q.RawQuery = v.Encode()
	resp, err := c.do(ctx, &q, "")
	if err != nil {
		return err
	}
	if resp.code != http.StatusOK {
		return resp.err()
	}
	if err := json.Unmarshal(resp.body, out); err != nil {
		return fmt.Errorf("httpapi: decode the answer of %s: %w", &q, err)
	}
	return nil
}

// reply is the answer to a request, read whole.
type reply struct {
	code   int
	header http.Header
	body   []byte
}

// err returns the error of an answer that is not 200 or 304: a
// *ResponseError.
func (r reply) err() error {
	rerr := &ResponseError{StatusCode: r.code}
	rerr.RetryAfter, _ = retryAfter(r.header.Get("Retry-After"))
	_ = json.Unmarshal(r.body, &rerr.Problem) // a body that is not a problem leaves it zero
	return rerr
}

// do GETs u, with If-None-Match: ifNoneMatch unless it is "", and returns
// its answer, read.
func (c *Client) do(ctx context.Context, u *url.URL, ifNoneMatch string) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return reply{}, fmt.Errorf("httpapi: get %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	if ifNoneMatch != "" {
		req.Header.Set("If-None-Match", ifNoneMatch)
	}
	return c.send(req)
}

// send sends req, with the correlation id of its context, and returns its
// answer, read.
func (c *Client) send(req *http.Request) (reply, error) {
	u := req.URL
	if id := tracker.CorrelationID(req.Context()); id != "" {
		req.Header.Set(CorrelationIDHeader, id)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("httpapi: %s %s: %w", req.Method, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentSize+1))
	if err == nil && len(body) > maxDocumentSize {
		err = fmt.Errorf("document larger than %d bytes", maxDocumentSize)
	}
	if err != nil {
		return reply{}, fmt.Errorf("httpapi: read the answer of %s: %w", u, err)
	}
	return reply{code: resp.StatusCode, header: resp.Header, body: body}, nil
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
