package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"
	"unicode"

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

// Option configures the handlers made by [StatusHandler],
// [WebSocketHandler], [ListHandler], [CountsHandler], [CancelHandler],
// [RetryHandler] and [DashboardHandler]. An option given a value it does
// not accept makes them return its error; an option that does not concern
// a handler has no effect on it.
type Option func(*config) error

type config struct {
	pathValue    string
	idField      string
	render       func(Document) any // nil: the Document itself
	authorize    func(*http.Request, store.State) error
	maxWait      time.Duration
	heartbeat    time.Duration
	writeTimeout time.Duration
	maxWatchers  int64
	retryAfter   time.Duration
	onError      func(context.Context, error)
	clock        Clock
	shutdown     <-chan struct{} // nil: never
	scope        func(*http.Request, *store.Filter) error
	origins      []string // of WithOrigins

	retry    int64  // retryAfter in whole seconds
	retryHdr string // retry as a Retry-After value
}

// newConfig returns the configuration opts make, or the error of the
// first that refuses its value.
func newConfig(opts []Option) (config, error) {
	c := defaultConfig()
	for _, opt := range opts {
		if err := opt(&c); err != nil {
			return config{}, err
		}
	}
	c.retry = seconds(c.retryAfter)
	c.retryHdr = strconv.FormatInt(c.retry, 10)
	return c, nil
}

// seconds returns d in whole seconds, rounded up, and at least one: the
// form of a Retry-After header.
func seconds(d time.Duration) int64 {
	return int64(max((d+time.Second-1)/time.Second, 1))
}

func defaultConfig() config {
	return config{
		pathValue:    DefaultPathValue,
		idField:      DefaultIDField,
		maxWait:      DefaultMaxWait,
		heartbeat:    DefaultHeartbeat,
		writeTimeout: DefaultWriteTimeout,
		maxWatchers:  DefaultMaxWatchers,
		retryAfter:   DefaultRetryAfter,
		onError:      logError,
		clock:        systemClock{},
	}
}

// WithPathValue names the path wildcard that holds the task id, as in the
// pattern "GET /process/document/{document_id}/status". name must be a
// wildcard name [http.ServeMux] accepts: letters, digits and underscores,
// not starting with a digit. The default is [DefaultPathValue].
func WithPathValue(name string) Option {
	return func(c *config) error {
		if !wildcardName(name) {
			return fmt.Errorf("httpapi: WithPathValue(%q): not a wildcard name", name)
		}
		c.pathValue = name
		return nil
	}
}

// wildcardName reports whether name is a valid ServeMux wildcard name.
func wildcardName(name string) bool {
	for i, r := range name {
		if r != '_' && !unicode.IsLetter(r) && (i == 0 || !unicode.IsDigit(r)) {
			return false
		}
	}
	return name != ""
}

// WithIDField names the member of the status document that holds the task
// id; the origin service calls it "document_id". name must not be empty
// or the name of another member of the document (see [Document]). The
// default is [DefaultIDField]. It has no effect with [WithRender] but for
// the [Document] passed to its function.
func WithIDField(name string) Option {
	return func(c *config) error {
		if name == "" || documentMember(name) {
			return fmt.Errorf("httpapi: WithIDField(%q): empty or the name of another member of the document", name)
		}
		c.idField = name
		return nil
	}
}

// WithRender replaces the status document: the handler serves render(doc)
// encoded with [encoding/json] (without its HTML escaping) instead of doc.
// render must not be nil, must be safe for concurrent use and a pure
// function of doc: its output is cached for each version of a task and
// verdict on its abandonment, which the ETag names.
func WithRender(render func(doc Document) any) Option {
	return func(c *config) error {
		if render == nil {
			return errors.New("httpapi: WithRender: nil function")
		}
		c.render = render
		return nil
	}
}

// WithAuthorize sets a check run on every state before it is served. When
// authorize returns an error the handler answers 404 with the same body as
// for an unknown task, so that ids cannot be probed, and ends a stream in
// progress. The error is not reported. authorize must not be nil and must
// be safe for concurrent use. The default allows every request.
func WithAuthorize(authorize func(r *http.Request, st store.State) error) Option {
	return func(c *config) error {
		if authorize == nil {
			return errors.New("httpapi: WithAuthorize: nil function")
		}
		c.authorize = authorize
		return nil
	}
}

// WithScope sets a hook that narrows what a request to [ListHandler] or
// [CountsHandler] finds: it is given the filter the request's parameters
// make and may change it, for instance set its Label to the caller's
// tenant, or refuse the request with an error, which is answered 403
// Forbidden. A filter holds one label, so a hook that imposes one refuses
// a request that asks for another. scope must not be nil and must be safe
// for concurrent use; [StatusHandler] does not use it.
func WithScope(scope func(r *http.Request, f *store.Filter) error) Option {
	return func(c *config) error {
		if scope == nil {
			return errors.New("httpapi: WithScope: nil function")
		}
		c.scope = scope
		return nil
	}
}

// WithMaxWait caps the wait a long poll may ask for. d must not be
// negative; 0 turns long polling off, so every request is answered at
// once. The default is [DefaultMaxWait].
func WithMaxWait(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("httpapi: WithMaxWait(%v): negative", d)
		}
		c.maxWait = d
		return nil
	}
}

// WithHeartbeat sets after how long without an event an event stream sends
// a comment line, which keeps proxies from closing it. d must not be
// negative; 0 turns heartbeats off. The default is [DefaultHeartbeat].
func WithHeartbeat(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("httpapi: WithHeartbeat(%v): negative", d)
		}
		c.heartbeat = d
		return nil
	}
}

// WithWriteTimeout bounds the writing of each event of a stream, and of
// the answer to a long poll after its wait, so that a client that does not
// read cannot hold a stream open. d must not be negative; 0 sets no
// deadline. The default is [DefaultWriteTimeout].
func WithWriteTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("httpapi: WithWriteTimeout(%v): negative", d)
		}
		c.writeTimeout = d
		return nil
	}
}

// WithMaxWatchers limits the requests that wait for changes at once, event
// streams and long polls together; a request beyond the limit is answered
// 503 with Retry-After. n must not be negative; 0 sets no limit. The
// default is [DefaultMaxWatchers].
func WithMaxWatchers(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("httpapi: WithMaxWatchers(%d): negative", n)
		}
		c.maxWatchers = int64(n)
		return nil
	}
}

// WithRetryAfter sets the Retry-After sent while a task has not ended and
// with 503 answers, and the retry delay of event streams. d must be
// positive; it is sent in whole seconds, rounded up. The default is
// [DefaultRetryAfter].
func WithRetryAfter(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("httpapi: WithRetryAfter(%v): not positive", d)
		}
		c.retryAfter = d
		return nil
	}
}

// WithErrorHandler sets the function told of the errors the handler hides
// from clients behind a 500 or 503 answer, with the request's context. h
// must not be nil and must be safe for concurrent use. The default logs
// them with [slog.Default] at level Error.
func WithErrorHandler(h func(ctx context.Context, err error)) Option {
	return func(c *config) error {
		if h == nil {
			return errors.New("httpapi: WithErrorHandler: nil function")
		}
		c.onError = h
		return nil
	}
}

// WithClock sets the clock by which the handler judges whether a task was
// abandoned (see [Document]) and waits for leases to end and for
// heartbeats to be due. c must not be nil. The default is the system
// clock. The wait of a long poll and write deadlines always use real time.
func WithClock(c Clock) Option {
	return func(cfg *config) error {
		if c == nil {
			return errors.New("httpapi: WithClock: nil clock")
		}
		cfg.clock = c
		return nil
	}
}

// WithShutdown tells the handler that its service shuts down when done is
// closed: from then on, long polls are answered at once with the task's
// current state, those held as well as new ones, and event streams end
// (see the package doc). Close done before calling [http.Server.Shutdown],
// which waits for requests to end, and before closing the tracker or the
// store: a function registered with [http.Server.RegisterOnShutdown] runs
// in a goroutine of its own, and may run after them. done must not be nil.
func WithShutdown(done <-chan struct{}) Option {
	return func(c *config) error {
		if done == nil {
			return errors.New("httpapi: WithShutdown: nil channel")
		}
		c.shutdown = done
		return nil
	}
}

func logError(ctx context.Context, err error) {
	attrs := []any{slog.Any("err", err)}
	if id := tracker.CorrelationID(ctx); id != "" {
		attrs = append(attrs, slog.String("correlation_id", id))
	}
	slog.Default().ErrorContext(ctx, "taskstatus: status request failed", attrs...)
}

// Clock is what a status handler reads the time from and waits on (see
// [WithClock]). Its methods must be safe for concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel on which the time is sent once d has
	// passed, at once if d is not positive, and a function that stops
	// the wait and frees what it holds.
	After(d time.Duration) (<-chan time.Time, func())
}

// systemClock is the Clock of the time package.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) After(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}
