package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// fuzzUUID is the form of a correlation id the middleware makes.
var fuzzUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// FuzzCorrelationHandler sends the middleware any X-Correlation-ID and
// X-Request-ID and checks what its doc promises: the id it echoes is
// always valid (tracker.ValidCorrelationID), is the one the request's
// context carries, is the request's X-Correlation-ID if valid, else its
// X-Request-ID if valid, else a new UUID; and the request's headers are
// left as they were.
//
// go test -run '^$' -fuzz '^FuzzCorrelationHandler$' ./httpapi searches for
// more inputs than the seed corpus.
func FuzzCorrelationHandler(f *testing.F) {
	long := strings.Repeat("a", tracker.MaxCorrelationIDLen)
	for _, seed := range []struct {
		correlation, request string
		hasCorrelation       bool
		hasRequest           bool
	}{
		{"abc-456-def", "req-1", true, true},
		{"", "req-1", false, true},
		{"", "", false, false},
		{"a b", "c d", true, true},
		{"abc\r\nX-Evil: 1", "", true, false},
		{long, "", true, false},
		{long + "a", "req-2", true, true},
		{"abç", "\x00", true, true},
		{"~!", "\x7f", true, true},
	} {
		f.Add(seed.correlation, seed.request, seed.hasCorrelation, seed.hasRequest)
	}
	f.Fuzz(func(t *testing.T, correlation, request string, hasCorrelation, hasRequest bool) {
		header := http.Header{}
		if hasCorrelation {
			header[http.CanonicalHeaderKey(httpapi.CorrelationIDHeader)] = []string{correlation}
		}
		if hasRequest {
			header[http.CanonicalHeaderKey(httpapi.RequestIDHeader)] = []string{request}
		}
		sent := header.Clone()
		var seen string
		var headerKept bool
		h := httpapi.CorrelationHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen = tracker.CorrelationID(r.Context())
			headerKept = equalHeaders(r.Header, sent)
			w.WriteHeader(http.StatusNoContent)
		}))
		req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/", nil)
		req.Header = header
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		echoed := rec.Header().Values(httpapi.CorrelationIDHeader)
		switch {
		case rec.Code != http.StatusNoContent:
			t.Fatalf("the middleware answered %d itself", rec.Code)
		case len(echoed) != 1:
			t.Fatalf("echoed %d correlation ids: %q", len(echoed), echoed)
		case !tracker.ValidCorrelationID(echoed[0]):
			t.Fatalf("echoed an invalid correlation id %q", echoed[0])
		case seen != echoed[0]:
			t.Fatalf("the context carries %q, the answer %q", seen, echoed[0])
		case !headerKept:
			t.Fatal("the request's headers were changed")
		}
		if want := wantCorrelationID(correlation, request, hasCorrelation, hasRequest); want != echoed[0] &&
			(want != "" || !fuzzUUID.MatchString(echoed[0])) {
			t.Fatalf("echoed %q, want %q (\"\" for a new UUID)", echoed[0], want)
		}
	})
}

// wantCorrelationID returns the correlation id the middleware must echo
// for a request with these headers, or "" for a new UUID.
func wantCorrelationID(correlation, request string, hasCorrelation, hasRequest bool) string {
	switch {
	case hasCorrelation && tracker.ValidCorrelationID(correlation):
		return correlation
	case hasRequest && tracker.ValidCorrelationID(request):
		return request
	}
	return ""
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w := b[k]
		if len(v) != len(w) {
			return false
		}
		for i := range v {
			if v[i] != w[i] {
				return false
			}
		}
	}
	return true
}

// FuzzStatusQuery sends the status handler, over a memstore, any task id,
// query string, If-None-Match and Last-Event-ID, as a plain GET or asking
// for an event stream, and checks the answer against the package doc:
//
//   - an invalid id, a malformed query, or an invalid wait or version
//     parameter is answered 400; an unknown id 404; never a 5xx, since
//     the store works;
//   - otherwise an event stream is answered 204 if the task has ended and
//     Last-Event-ID names its version or a later one, else 200 with
//     text/event-stream; any other request 304 if If-None-Match names the
//     task's version (RFC 9110 weak comparison, or "*"), else 200 with
//     the document of the task's current version;
//   - an error answer is a problem document of its status; every answer
//     carries Cache-Control: no-store, and no header value holds CR or LF.
//
// go test -run '^$' -fuzz '^FuzzStatusQuery$' ./httpapi searches for more
// inputs than the seed corpus.
func FuzzStatusQuery(f *testing.F) {
	h, tasks, internal := fuzzHandler(f)
	for _, seed := range []statusQuery{
		{"doc-1", "", "", "", false},
		{"doc-1", "wait=30s&version=5", "", "", false},
		{"doc-1", "wait=30&version=5", `"v5"`, "", false},
		{"doc-1", "", `W/"v5"`, "", false},
		{"doc-1", "", `"v1", "v5"`, "", false},
		{"doc-1", "", "*", "", false},
		{"doc-1", "", `"v5`, "", false},
		{"doc-1", "", `"v5a"`, "", false},
		{"doc-1", "wait=soon", "", "", false},
		{"doc-1", "wait=-1s", "", "", false},
		{"doc-1", "wait=18446744073709551616", "", "", false},
		{"doc-1", "wait=%zz", "", "", false},
		{"doc-1", "wait=1s;version=5", "", "", false},
		{"doc-1", "version=-1", "", "", false},
		{"doc-1", "version=99999999999999999999", "", "", false},
		{"doc-1", "version=+5&wait=", "", "", false},
		{"done-1", "", "", "3", true},
		{"done-1", "", "", "3a", true},
		{"done-1", "", "", "2", true},
		{"done-1", "", "", "-1", true},
		{"done-1", "", "", "99999999999999999999", true},
		{"doc-1", "", "", "abc", true},
		{"doc-1", "", "", "5a", true},
		{"nope", "", "", "", false},
		{"a{b}", "", "", "", false},
		{"..", "", "", "", false},
		{"", "", "", "", false},
		{"\xff", "", "", "", false},
	} {
		f.Add(seed.id, seed.query, seed.ifNoneMatch, seed.lastEventID, seed.stream)
	}

	f.Fuzz(func(t *testing.T, id, rawQuery, ifNoneMatch, lastEventID string, stream bool) {
		q := statusQuery{id, rawQuery, ifNoneMatch, lastEventID, stream}
		rec := q.serve(h)
		if rec.Code >= 500 || len(*internal) > 0 {
			t.Fatalf("answered %d over a working store (errors %v): %s", rec.Code, *internal, rec.Body)
		}
		checkHeaders(t, rec)
		st, known := tasks[id]
		want := q.want(st, known)
		if rec.Code != want {
			t.Fatalf("answered %d, want %d: %s", rec.Code, want, rec.Body)
		}
		q.checkBody(t, rec, st)
	})
}

// fuzzHandler returns a status handler over a memstore that holds two
// tasks, doc-1 running at version 5 and done-1 ended at version 3, with
// the tasks' states and the errors the handler reports.
func fuzzHandler(f *testing.F) (http.Handler, map[string]store.State, *[]error) {
	mem, err := memstore.New()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = mem.Close() })
	tr, err := tracker.New(mem)
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	if err := errors.Join(
		tr.Apply(ctx, "doc-1", tracker.Create("parse", "embed")),
		start(ctx, tr, "doc-1", tracker.StartStep("parse"),
			tracker.SetProgress(store.Progress{Done: 1, Total: 2, Message: "parsing"}),
			tracker.SetResult(map[string]any{"entities_extracted": 42})),
		tr.Apply(ctx, "done-1", tracker.Create("parse")),
		start(ctx, tr, "done-1", tracker.Succeed()),
		tr.Close(ctx),
	); err != nil {
		f.Fatal(err)
	}
	tasks := make(map[string]store.State)
	for _, id := range []string{"doc-1", "done-1"} {
		if tasks[id], err = mem.Get(ctx, id); err != nil {
			f.Fatal(err)
		}
	}
	internal := new([]error)
	h, err := httpapi.StatusHandler(mem,
		httpapi.WithMaxWait(5*time.Millisecond), // a long poll of doc-1 ends soon: it does not change
		httpapi.WithHeartbeat(0),
		httpapi.WithErrorHandler(func(_ context.Context, err error) { *internal = append(*internal, err) }))
	if err != nil {
		f.Fatal(err)
	}
	return h, tasks, internal
}

// start starts task id and applies changes, one write each.
func start(ctx context.Context, tr *tracker.Tracker, id string, changes ...tracker.Change) error {
	run, err := tr.Start(ctx, id)
	for _, c := range changes {
		if err != nil {
			return err
		}
		err = run.Apply(ctx, c)
	}
	return err
}

// statusQuery is a request of FuzzStatusQuery.
type statusQuery struct {
	id, query, ifNoneMatch, lastEventID string
	stream                              bool
}

// serve answers q with h.
func (q statusQuery) serve(h http.Handler) *httptest.ResponseRecorder {
	rctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := httptest.NewRequestWithContext(rctx, http.MethodGet, "/tasks/x/status", nil)
	req.URL.RawQuery = q.query
	req.SetPathValue(httpapi.DefaultPathValue, q.id)
	if q.ifNoneMatch != "" {
		req.Header["If-None-Match"] = []string{q.ifNoneMatch}
	}
	if q.lastEventID != "" {
		req.Header["Last-Event-Id"] = []string{q.lastEventID}
	}
	if q.stream {
		req.Header["Accept"] = []string{"text/event-stream"}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(hangUp{rec, cancel}, req)
	return rec
}

// checkHeaders checks what every answer carries: Cache-Control: no-store,
// and no header value that holds CR or LF.
func checkHeaders(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	for k, vs := range rec.Header() {
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") {
				t.Fatalf("header %s holds CR or LF: %q", k, v)
			}
		}
	}
	if got := rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Fatalf("answer %d has Cache-Control %q", rec.Code, got)
	}
}

// want returns the status code the package doc says q is answered with,
// st being the task's state if known.
func (q statusQuery) want(st store.State, known bool) int {
	switch {
	case store.ValidateID(q.id) != nil, !validQuery(q.query):
		return http.StatusBadRequest
	case !known:
		return http.StatusNotFound
	case q.stream && st.Status.Terminal() && st.Version <= lastEventVersion(q.lastEventID):
		return http.StatusNoContent
	case !q.stream && weakMatch(q.ifNoneMatch, `"v`+strconv.FormatInt(st.Version, 10)+`"`):
		return http.StatusNotModified
	}
	return http.StatusOK
}

// checkBody checks the body of rec, an answer of the status code q.want
// returned: a problem document of its status, an event stream, or the
// document of st's version.
func (q statusQuery) checkBody(t *testing.T, rec *httptest.ResponseRecorder, st store.State) {
	t.Helper()
	ct := rec.Header().Get("Content-Type")
	switch {
	case rec.Code >= 400:
		var p httpapi.Problem
		if ct != "application/problem+json" {
			t.Fatalf("error answer %d has Content-Type %q", rec.Code, ct)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code {
			t.Fatalf("error answer %d is not its problem document (%v): %s", rec.Code, err, rec.Body)
		}
	case rec.Code == http.StatusOK && q.stream:
		if ct != "text/event-stream" {
			t.Fatalf("an event stream has Content-Type %q", ct)
		}
	case rec.Code == http.StatusOK:
		doc := httpapi.Document{}
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || doc.Version != st.Version || doc.Abandoned {
			t.Fatalf("the document (%v) is not of version %d: %s", err, st.Version, rec.Body)
		}
		if etag := rec.Header().Get("ETag"); etag != `"v`+strconv.FormatInt(st.Version, 10)+`"` {
			t.Fatalf("ETag %q for version %d", etag, st.Version)
		}
	}
}

// hangUp is a client that goes away once it has been sent something: it
// ends the request's context at the first flush, which ends an event
// stream of a task that does not change after its first event.
type hangUp struct {
	*httptest.ResponseRecorder
	cancel context.CancelFunc
}

func (h hangUp) Flush() {
	h.ResponseRecorder.Flush()
	h.cancel()
}

// validQuery reports whether a status request's query string is valid as
// the package doc describes it: well formed, its wait (if not empty) a Go
// duration that is not negative or a whole number of seconds, and its
// version (if not empty) a whole number.
func validQuery(raw string) bool {
	if raw == "" {
		return true
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return false
	}
	if s := v.Get("wait"); s != "" && strings.Trim(s, "0123456789") != "" {
		if d, err := time.ParseDuration(s); err != nil || d < 0 {
			return false
		}
	}
	if s := v.Get("version"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err != nil || n < 0 {
			return false
		}
	}
	return true
}

// lastEventVersion returns the version a Last-Event-ID names: a whole
// number, followed by "a" for an abandoned task, or else none (0).
func lastEventVersion(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSuffix(s, "a"), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// weakMatch reports whether the If-None-Match value list names tag, with
// the weak comparison of RFC 9110: W/ is ignored, and "*" matches any.
func weakMatch(list, tag string) bool {
	for t := range strings.SplitSeq(list, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == tag {
			return true
		}
	}
	return false
}
