package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// finder is what the list and counts handlers share: their configuration
// and store.
type finder struct {
	config
	lister store.Lister
}

// newFinder returns the finder of the handler named name, or the error of
// its arguments.
func newFinder(name string, l store.Lister, opts []Option) (finder, error) {
	if l == nil {
		return finder{}, fmt.Errorf("httpapi: %s: nil store", name)
	}
	c, err := newConfig(opts)
	if err != nil {
		return finder{}, err
	}
	return finder{config: c, lister: l}, nil
}

// ListHandler returns a handler that lists the tasks of l that the
// request's query finds, newest first, a page at a time: its answer is
// {"tasks": [documents], "next_page_token": "..."}, the token absent on
// the last page. The package doc describes the query and the answers.
//
// It takes the options of [StatusHandler], and [WithScope]; those about
// the path, long polls and event streams have no effect. A task that the
// authorization hook ([WithAuthorize]) refuses is left out of its page,
// which may then be shorter than asked, even empty, with a token for the
// next one. ListHandler returns an error if l is nil or an option refuses
// its value.
func ListHandler(l store.Lister, opts ...Option) (http.Handler, error) {
	f, err := newFinder("ListHandler", l, opts)
	if err != nil {
		return nil, err
	}
	return &listHandler{f}, nil
}

// CountsHandler returns a handler that counts the tasks of l by status,
// optionally those of one kind or with one label (the kind and label
// parameters of [ListHandler]): its answer is {"counts": {"pending": 3,
// "running": 1, "success": 120, "failed": 12, "canceled": 0}, "total":
// 136}, every status present.
//
// It takes the options of [ListHandler]. Counts are not checked task by
// task, so an authorization hook cannot hide tasks from them: CountsHandler
// returns an error if [WithAuthorize] is given without [WithScope], which
// must then narrow the counts to what the caller may see. It returns an
// error too if l is nil or an option refuses its value.
func CountsHandler(l store.Lister, opts ...Option) (http.Handler, error) {
	f, err := newFinder("CountsHandler", l, opts)
	if err != nil {
		return nil, err
	}
	if f.authorize != nil && f.scope == nil {
		return nil, errors.New("httpapi: CountsHandler: WithAuthorize without WithScope: counts would include the tasks it refuses")
	}
	return &countsHandler{f}, nil
}

type listHandler struct{ finder }

// ServeHTTP implements [http.Handler].
func (h *listHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	q, err := h.query(r, listParams)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	page, err := h.lister.List(r.Context(), q.filter, q.pageSize, q.pageToken)
	if errors.Is(err, store.ErrInvalidInput) && q.pageToken != "" {
		// Every other parameter was checked: the store refused the token.
		writeProblem(w, r, http.StatusBadRequest, "The page_token parameter is not one this listing gave, for these parameters.")
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	tasks := make([]any, 0, len(page.Tasks))
	for _, st := range page.Tasks {
		if h.authorize != nil && h.authorize(r, st) != nil {
			continue
		}
		doc := Document{IDField: h.idField, State: st, Abandoned: st.Abandoned(h.clock.Now())}
		if h.render != nil {
			tasks = append(tasks, h.render(doc))
		} else {
			tasks = append(tasks, doc)
		}
	}
	body, err := marshal(struct {
		Tasks         []any  `json:"tasks"`
		NextPageToken string `json:"next_page_token,omitempty"`
	}{tasks, page.NextPageToken})
	if err != nil {
		h.fail(w, r, fmt.Errorf("render a page of tasks: %w: %w", store.ErrCorrupt, err))
		return
	}
	writeJSON(w, body)
}

type countsHandler struct{ finder }

// ServeHTTP implements [http.Handler].
func (h *countsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	q, err := h.query(r, countsParams)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	counts, err := h.lister.Count(r.Context(), q.filter)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	statuses := store.Statuses() // in the order a counts answer lists them
	o := make(object, len(statuses))
	var total int64
	for i, s := range statuses {
		o[i] = member{string(s), counts[s]}
		total += counts[s]
	}
	body, err := marshal(object{{"counts", o}, {"total", total}})
	if err != nil {
		h.fail(w, r, err) // cannot happen: numbers
		return
	}
	writeJSON(w, body)
}

// writeJSON answers 200 with body, a JSON document.
func writeJSON(w http.ResponseWriter, body []byte) {
	hdr := w.Header()
	noStore(hdr)
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body) // an error means the client has gone
}

// listQuery is what a list or counts request asks for.
type listQuery struct {
	filter    store.Filter
	pageSize  int
	pageToken string
}

// The query parameters of the list handler, and those of the counts
// handler among them.
var (
	listParams = []string{"status", "kind", "label", "created_after", "created_before",
		"lease_ended_before", "page_size", "page_token"}
	countsParams = listParams[1:3]
)

// query reads the query of r, a GET or HEAD that may have the parameters
// named in params, and narrows its filter with the scope hook. The error
// is a [refusal] if the request cannot be served, or the scope hook's
// invalid filter.
func (f *finder) query(r *http.Request, params []string) (listQuery, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return listQuery{}, &refusal{http.StatusBadRequest, "The query string is malformed."}
	}
	return f.scoped(r, v, params)
}

// scoped reads the parameters of v, as query does.
func (f *finder) scoped(r *http.Request, v url.Values, params []string) (listQuery, error) {
	q, problem := parseListQuery(v, params)
	if problem != "" {
		return listQuery{}, &refusal{http.StatusBadRequest, problem}
	}
	if f.scope != nil {
		if f.scope(r, &q.filter) != nil {
			return listQuery{}, &refusal{http.StatusForbidden, "The caller may not find these tasks."}
		}
		if err := q.filter.Validate(); err != nil {
			return listQuery{}, fmt.Errorf("the scope hook made an invalid filter: %w", err)
		}
	}
	return q, nil
}

// allowGet answers r 405 and reports false if its method is not GET or
// HEAD.
func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeProblem(w, r, http.StatusMethodNotAllowed, "Tasks are found with GET.")
		return false
	}
	return true
}

// parseListQuery reads the parameters of v that params names. A parameter
// of the list handler that params does not name, one that is given twice
// (but status) or has an invalid value is refused with the detail of the
// problem, for the client. Other parameters are ignored.
func parseListQuery(v url.Values, params []string) (q listQuery, problem string) {
	for _, name := range listParams {
		switch vals := v[name]; {
		case len(vals) == 0:
		case !slices.Contains(params, name):
			return q, fmt.Sprintf("The %s parameter is not taken here: %s.", name, strings.Join(params, " and "))
		case len(vals) > 1 && name != "status":
			return q, fmt.Sprintf("The %s parameter must be given once.", name)
		}
	}
	for _, parse := range []func(url.Values, *listQuery) string{parseWhat, parseWhen, parsePage} {
		if problem := parse(v, &q); problem != "" {
			return q, problem
		}
	}
	return q, ""
}

// parseWhat reads the status, kind and label parameters of v into q.
func parseWhat(v url.Values, q *listQuery) (problem string) {
	for _, s := range v["status"] {
		if !store.Status(s).Valid() {
			return fmt.Sprintf("The status parameter %q is not a task status: %s.", s, statusList())
		}
		q.filter.Statuses = append(q.filter.Statuses, store.Status(s))
	}
	if s := v.Get("kind"); s != "" {
		if store.ValidateKind(s) != nil {
			return fmt.Sprintf("The kind parameter must be 1 to %d letters, digits, '_', '-' or '.'.", store.MaxKindLen)
		}
		q.filter.Kind = s
	}
	if s := v.Get("label"); s != "" {
		key, value, ok := strings.Cut(s, ":")
		if !ok || store.ValidateLabel(key, value) != nil {
			return fmt.Sprintf("The label parameter must be key:value, the key 1 to %d letters, digits, '_', '-' or '.', the value a valid task id.", store.MaxKindLen)
		}
		q.filter.Label = store.Label{Key: key, Value: value}
	}
	return ""
}

// parseWhen reads the time parameters of v into q.
func parseWhen(v url.Values, q *listQuery) (problem string) {
	for _, t := range []struct {
		name string
		to   *time.Time
	}{
		{"created_after", &q.filter.CreatedAfter},
		{"created_before", &q.filter.CreatedBefore},
		{"lease_ended_before", &q.filter.LeaseEndedBefore},
	} {
		if s := v.Get(t.name); s != "" {
			var err error
			if *t.to, err = time.Parse(time.RFC3339Nano, s); err != nil {
				return fmt.Sprintf(`The %s parameter must be an RFC 3339 time, such as "2025-11-12T10:00:00Z".`, t.name)
			}
		}
	}
	if q.filter.Validate() != nil { // only the time range is left to refuse
		return "The created_after parameter must be before created_before."
	}
	return ""
}

// parsePage reads the page_size and page_token parameters of v into q.
func parsePage(v url.Values, q *listQuery) (problem string) {
	if s := v.Get("page_size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxPageSize {
			return fmt.Sprintf("The page_size parameter must be a whole number from 1 to %d.", store.MaxPageSize)
		}
		q.pageSize = n
	}
	q.pageToken = v.Get("page_token")
	return ""
}

// statusList returns the task statuses, for a problem's detail.
func statusList() string {
	statuses := store.Statuses()
	s := make([]string, len(statuses))
	for i, st := range statuses {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}
