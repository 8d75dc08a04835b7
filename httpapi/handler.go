package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// Defaults of the options of [StatusHandler].
const (
	DefaultPathValue    = "id"
	DefaultIDField      = "task_id"
	DefaultMaxWait      = 60 * time.Second
	DefaultHeartbeat    = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultMaxWatchers  = 1000
	DefaultRetryAfter   = time.Second
)

// Option configures the handler made by [StatusHandler].
type Option func(*config)

type config struct {
	pathValue    string
	idField      string
	document     func(store.State) any
	authorize    func(*http.Request, store.State) error
	maxWait      time.Duration
	heartbeat    time.Duration
	writeTimeout time.Duration
	maxWatchers  int64
	retryAfter   time.Duration
	onError      func(context.Context, error)
	newTicker    func(time.Duration) (<-chan time.Time, func())
}

// WithPathValue names the path wildcard that holds the task id, as in the
// pattern "GET /process/document/{document_id}/status". The default is
// [DefaultPathValue]; "" keeps it.
func WithPathValue(name string) Option {
	return func(c *config) {
		if name != "" {
			c.pathValue = name
		}
	}
}

// WithIDField names the field of the status document that holds the task
// id; the origin service calls it "document_id". The default is
// [DefaultIDField]; "" keeps it. It has no effect with [WithRender].
func WithIDField(name string) Option {
	return func(c *config) {
		if name != "" {
			c.idField = name
		}
	}
}

// WithRender replaces the status document: the handler serves render(st)
// encoded with [encoding/json] instead. render must be a pure function of
// the state, safe for concurrent use: its output is cached per task
// version, which the ETag names. nil restores the default document.
func WithRender(render func(st store.State) any) Option {
	return func(c *config) { c.document = render }
}

// WithAuthorize sets a check run on every state before it is served. When
// authorize returns an error the handler answers 404 with the same body as
// for an unknown task, so that ids cannot be probed, and ends a stream in
// progress. The error is not reported. The default allows every request.
func WithAuthorize(authorize func(r *http.Request, st store.State) error) Option {
	return func(c *config) { c.authorize = authorize }
}

// WithMaxWait caps the wait a long poll may ask for. The default is
// [DefaultMaxWait]; d <= 0 turns long polling off, so every request is
// answered at once.
func WithMaxWait(d time.Duration) Option {
	return func(c *config) { c.maxWait = max(d, 0) }
}

// WithHeartbeat sets how often an event stream with nothing to send sends
// a comment line, which keeps proxies from closing it. The default is
// [DefaultHeartbeat]; d <= 0 turns heartbeats off.
func WithHeartbeat(d time.Duration) Option {
	return func(c *config) { c.heartbeat = max(d, 0) }
}

// WithWriteTimeout bounds the writing of each event of a stream, and of
// the answer to a long poll after its wait, so that a client that does not
// read cannot hold a stream open. The default is [DefaultWriteTimeout];
// d <= 0 sets no deadline.
func WithWriteTimeout(d time.Duration) Option {
	return func(c *config) { c.writeTimeout = max(d, 0) }
}

// WithMaxWatchers limits the requests that wait for changes at once, event
// streams and long polls together; a request beyond the limit is answered
// 503 with Retry-After. The default is [DefaultMaxWatchers]; n <= 0 sets
// no limit.
func WithMaxWatchers(n int) Option {
	return func(c *config) { c.maxWatchers = int64(max(n, 0)) }
}

// WithRetryAfter sets the Retry-After sent while a task has not ended, with
// 503 answers, and as the retry delay of event streams. It is rounded up to
// whole seconds, at least one. The default is [DefaultRetryAfter].
func WithRetryAfter(d time.Duration) Option {
	return func(c *config) { c.retryAfter = d }
}

// WithErrorHandler sets the function told of the errors the handler hides
// from clients behind a 500 or 503 answer, with the request's context. It
// must be safe for concurrent use. The default logs them with
// [slog.Default] at level Error; nil restores it.
func WithErrorHandler(h func(ctx context.Context, err error)) Option {
	return func(c *config) {
		if h == nil {
			h = logError
		}
		c.onError = h
	}
}

func logError(ctx context.Context, err error) {
	attrs := []any{slog.Any("err", err)}
	if id := tracker.CorrelationID(ctx); id != "" {
		attrs = append(attrs, slog.String("correlation_id", id))
	}
	slog.Default().ErrorContext(ctx, "taskstatus: status request failed", attrs...)
}

func newTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// handler is the http.Handler StatusHandler returns.
type handler struct {
	config
	store    store.Store
	watcher  store.Watcher // nil if the store cannot watch
	retry    int64         // config.retryAfter in whole seconds, at least 1
	retryHdr string        // retry as a Retry-After value
	cache    renderCache
	watchers atomic.Int64 // requests waiting for changes
}

// StatusHandler returns a handler that serves the status of the task named
// by the request's path value (see [WithPathValue]) from s, which must not
// be nil. If s implements [store.Watcher], the handler also serves long
// polls and event streams that follow the task as it changes; otherwise
// they are answered at once with the current state. The package doc
// describes the answers.
func StatusHandler(s store.Store, opts ...Option) http.Handler {
	h := &handler{
		config: config{
			pathValue:    DefaultPathValue,
			idField:      DefaultIDField,
			maxWait:      DefaultMaxWait,
			heartbeat:    DefaultHeartbeat,
			writeTimeout: DefaultWriteTimeout,
			maxWatchers:  DefaultMaxWatchers,
			retryAfter:   DefaultRetryAfter,
			onError:      logError,
			newTicker:    newTicker,
		},
		store: s,
	}
	h.watcher, _ = s.(store.Watcher)
	for _, opt := range opts {
		opt(&h.config)
	}
	h.retry = int64(max((h.retryAfter+time.Second-1)/time.Second, 1))
	h.retryHdr = strconv.FormatInt(h.retry, 10)
	h.cache.init()
	return h
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
	st, err := h.store.Get(r.Context(), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !h.allowedOrNotFound(w, r, st) {
		return
	}
	if r.Method == http.MethodGet && acceptsEventStream(header(r, "Accept")) {
		h.stream(w, r, st)
		return
	}
	if q.wait > 0 && !st.Status.Terminal() && q.known(st) {
		var ok bool
		if st, ok = h.longPoll(w, r, st, q); !ok {
			return
		}
	}
	h.respond(w, r, st, q)
}

// allowed reports whether the authorization hook lets r see st.
func (h *handler) allowed(r *http.Request, st store.State) bool {
	return h.authorize == nil || h.authorize(r, st) == nil
}

// respond writes st as the answer to r: 200 with the document, or 304 if
// the client's If-None-Match names st's version.
func (h *handler) respond(w http.ResponseWriter, r *http.Request, st store.State, q query) {
	doc, err := h.render(st)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	// Set the headers with one allocation: this is the hot path. The
	// values are in one array, each header's slice capped at its own.
	vals := [...]string{"no-store", "nosniff", doc.etag, h.retryHdr, "application/json", doc.length}
	v := vals[:]
	hdr := w.Header()
	hdr["Cache-Control"] = v[0:1:1]
	hdr["X-Content-Type-Options"] = v[1:2:2]
	hdr["Etag"] = v[2:3:3]
	if !st.Status.Terminal() {
		hdr["Retry-After"] = v[3:4:4]
	}
	if q.ifNoneMatch != "" && etagMatch(q.ifNoneMatch, doc.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr["Content-Type"] = v[4:5:5]
	hdr["Content-Length"] = v[5:6:6]
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(doc.body) // an error means the client has gone
}

// fail answers a request whose store call or rendering failed with err:
// 400, 404, 503 or 500, without err's text. Errors behind a 500 or 503 are
// reported to the error handler. A client that has gone gets no answer.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeProblem(w, r, http.StatusNotFound, detailNotFound)
	case errors.Is(err, store.ErrInvalidID):
		writeProblem(w, r, http.StatusBadRequest, detailInvalidID)
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		h.onError(r.Context(), fmt.Errorf("httpapi: %s %s: %w", r.Method, r.URL.Path, err))
		h.unavailable(w, r, detailUnavailable)
	default:
		h.onError(r.Context(), fmt.Errorf("httpapi: %s %s: %w", r.Method, r.URL.Path, err))
		writeProblem(w, r, http.StatusInternalServerError, detailInternal)
	}
}

// unavailable answers 503 with Retry-After.
func (h *handler) unavailable(w http.ResponseWriter, r *http.Request, detail string) {
	w.Header().Set("Retry-After", h.retryHdr)
	writeProblem(w, r, http.StatusServiceUnavailable, detail)
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
