package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/taskstatus/taskstatus/store"
)

// handler is the http.Handler StatusHandler returns.
type handler struct {
	config
	store    store.Store
	watcher  store.Watcher // nil if the store cannot watch
	cache    renderCache
	watchers atomic.Int64 // requests waiting for changes
}

// StatusHandler returns a handler that serves the status of the task named
// by the request's path value (see [WithPathValue]) from s. If s
// implements [store.Watcher], the handler also serves long polls and event
// streams that follow the task as it changes; otherwise they are answered
// at once with the current state. The package doc describes the answers.
//
// StatusHandler returns an error if s is nil or an option refuses its
// value.
func StatusHandler(s store.Store, opts ...Option) (http.Handler, error) {
	h, err := newHandler("StatusHandler", s, opts)
	if err != nil {
		return nil, err
	}
	return h, nil
}

// newHandler returns a handler of s with opts, for the function fn that
// makes it: an error if s is nil or an option refuses its value.
func newHandler(fn string, s store.Store, opts []Option) (*handler, error) {
	if s == nil {
		return nil, fmt.Errorf("httpapi: %s: nil store", fn)
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	h := &handler{config: c, store: s}
	h.watcher, _ = s.(store.Watcher)
	h.cache.init()
	return h, nil
}

// ServeHTTP implements [http.Handler].
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeProblem(w, r, http.StatusMethodNotAllowed, "The status of a task is read with GET.")
		return
	}
	id := r.PathValue(h.pathValue)
	if store.ValidateID(id) != nil {
		writeProblem(w, r, http.StatusBadRequest, detailInvalidID)
		return
	}
	q, problem := h.parseQuery(r)
	if problem != "" {
		writeProblem(w, r, http.StatusBadRequest, problem)
		return
	}
	doc, ok := h.read(w, r, id)
	if !ok {
		return
	}
	if r.Method == http.MethodGet && acceptsEventStream(r.Header.Get("Accept")) {
		h.stream(w, r, doc)
		return
	}
	if h.waits(q, doc) {
		if doc, ok = h.longPoll(w, r, doc, q); !ok {
			return
		}
	}
	h.respond(w, r, doc, q)
}

// read reads task id and returns its document, or answers r with the
// error and reports false.
func (h *handler) read(w http.ResponseWriter, r *http.Request, id string) (Document, bool) {
	st, err := h.store.Get(r.Context(), id)
	if err != nil {
		h.fail(w, r, err)
		return Document{}, false
	}
	if !h.allowed(r, st) {
		writeProblem(w, r, http.StatusNotFound, detailNotFound)
		return Document{}, false
	}
	return h.document(st), true
}

// document returns the document of st, judged abandoned or not now.
func (h *handler) document(st store.State) Document {
	return Document{IDField: h.idField, State: st, Abandoned: st.Abandoned(h.clock.Now())}
}

// allowed reports whether the authorization hook lets r see st.
func (h *handler) allowed(r *http.Request, st store.State) bool {
	return h.authorize == nil || h.authorize(r, st) == nil
}

// respond writes doc as the answer to r: 200 with the document, or 304 if
// the client's If-None-Match names doc's ETag.
func (h *handler) respond(w http.ResponseWriter, r *http.Request, doc Document, q query) {
	out, err := h.render(doc)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	hdr := w.Header()
	noStore(hdr)
	hdr.Set("ETag", out.etag)
	if !doc.Status.Terminal() {
		hdr.Set("Retry-After", h.retryHdr)
	}
	if q.ifNoneMatch != "" && etagMatch(q.ifNoneMatch, out.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", out.length)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out.body) // an error means the client has gone
}

// noStore sets the headers every answer carries: no cache keeps it, and
// no browser reads it as another type than it says.
func noStore(hdr http.Header) {
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
}

// fail answers a request whose store call or rendering failed with err:
// 400, 404, 503 or 500, without err's text, or the code and detail of a
// [refusal]. Errors behind a 500 or 503 are reported to the error
// handler. A client that has gone gets no answer.
func (c *config) fail(w http.ResponseWriter, r *http.Request, err error) {
	c.failWith(w, r, err, writeProblem)
}

// failWith answers as fail does, the body written by write.
func (c *config) failWith(w http.ResponseWriter, r *http.Request, err error, write func(w http.ResponseWriter, r *http.Request, code int, detail string)) {
	if r.Context().Err() != nil {
		return
	}
	code, detail := c.problem(r, err)
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", c.retryHdr)
	}
	write(w, r, code, detail)
}

// problem returns the status code and the detail, for the client, of err,
// met serving r, and reports to the error handler the errors behind a 500
// or 503 but refusals.
func (c *config) problem(r *http.Request, err error) (code int, detail string) {
	var rf *refusal
	switch {
	case errors.As(err, &rf):
		return rf.code, rf.detail
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, detailNotFound
	case errors.Is(err, store.ErrInvalidID):
		return http.StatusBadRequest, detailInvalidID
	case storeDown(err):
		c.report(r, err)
		return http.StatusServiceUnavailable, detailUnavailable
	default:
		c.report(r, err)
		return http.StatusInternalServerError, detailInternal
	}
}

// refusal is a request that is not served for a reason the client is
// told: the status code of the answer and the problem's detail.
type refusal struct {
	code   int
	detail string
}

func (rf *refusal) Error() string { return rf.detail }

// storeDown reports whether err is a store that did not answer, in time
// or at all.
func storeDown(err error) bool {
	return errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}

// report tells the error handler of err, met serving r.
func (c *config) report(r *http.Request, err error) {
	c.onError(r.Context(), fmt.Errorf("httpapi: %s %s: %w", r.Method, r.URL.Path, err))
}

// unavailable answers 503 with Retry-After.
func (c *config) unavailable(w http.ResponseWriter, r *http.Request, detail string) {
	w.Header().Set("Retry-After", c.retryHdr)
	writeProblem(w, r, http.StatusServiceUnavailable, detail)
}

// shuttingDown reports whether the service shuts down (see WithShutdown).
func (h *handler) shuttingDown() bool {
	select {
	case <-h.shutdown:
		return true
	default:
		return false
	}
}

// acquire counts a request that waits for changes, or reports false if
// the limit is reached. Call release when it is done.
func (h *handler) acquire() bool {
	if n := h.watchers.Add(1); h.maxWatchers > 0 && n > h.maxWatchers {
		h.watchers.Add(-1)
		return false
	}
	return true
}

func (h *handler) release() { h.watchers.Add(-1) }
