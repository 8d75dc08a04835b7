package httpapi

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// dashboardFiles are the dashboard's templates and assets: no build step,
// nothing loaded from another host.
//
//go:embed dashboard
var dashboardFiles embed.FS

// dashboardCSP is the Content-Security-Policy of the dashboard's pages:
// scripts, styles and connections (the status stream) of the page's own
// origin only, forms posted to it only, and no framing.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// dashboard is the http.Handler DashboardHandler returns.
type dashboard struct {
	action
	lister store.Lister
	start  func(context.Context, store.State) error
	pages  *template.Template
	mux    *http.ServeMux
}

// DashboardHandler returns a handler that serves a dashboard of the tasks
// of tr's store l: web pages to find tasks, watch them and cancel and
// retry them. Mount it under a prefix with [http.StripPrefix]:
//
//	mux.Handle("/dashboard/", http.StripPrefix("/dashboard", dash))
//
// It serves, below the prefix:
//
//   - / the counts of tasks by status and a list of tasks, newest first,
//     50 a page, filtered by the parameters of [ListHandler] (a time may
//     also be given as a form's datetime-local value, in UTC);
//   - /tasks/{id} a task's page: its status, times, progress, steps as a
//     timeline, error and details, results and earlier attempts, with a
//     button that cancels it while it runs and one that retries it once
//     it has ended or was abandoned;
//   - POST /tasks/{id}/cancel and POST /tasks/{id}/retry, which the
//     buttons send, and which answer 303 See Other back to the task's page;
//   - /assets/ its style sheet and script.
//
// The pages are rendered on the server and work with JavaScript off. With
// it on, a task's page follows the task through its event stream, at the
// URL status makes: mount [StatusHandler] there, with the same
// authorization options. Each event that names a version the page does
// not show makes the page fetch itself again and put the new rendering in
// place, without a reload: one renderer, on the server.
//
// Cancel and retry work as [CancelHandler] and [RetryHandler] do, start
// included. They refuse cross-origin requests from browsers (403), with
// [http.CrossOriginProtection]: a page of another site cannot press the
// buttons for the operator, and no token needs to be kept. Every page
// carries a Content-Security-Policy that allows only the dashboard's own
// script and style, and every value that comes from a task is escaped by
// [html/template].
//
// It takes the options of [ListHandler] and [CancelHandler]: WithIDField,
// WithAuthorize and WithScope, WithRetryAfter, WithErrorHandler and
// WithClock concern it. A task the authorization hook refuses is left out
// of lists and answered 404. As with [CountsHandler], WithAuthorize needs
// WithScope, which narrows the counts. DashboardHandler returns an error
// if tr, l or start is nil, status is zero, or an option refuses its
// value.
func DashboardHandler(tr *tracker.Tracker, l store.Lister, status StatusPath, start func(ctx context.Context, ended store.State) error, opts ...Option) (http.Handler, error) {
	if l == nil {
		return nil, errors.New("httpapi: DashboardHandler: nil store")
	}
	if start == nil {
		return nil, errors.New("httpapi: DashboardHandler: nil start function")
	}
	a, err := newAction("DashboardHandler", tr, status, opts)
	if err != nil {
		return nil, err
	}
	if a.authorize != nil && a.scope == nil {
		return nil, errors.New("httpapi: DashboardHandler: WithAuthorize without WithScope: counts would include the tasks it refuses")
	}
	pages, err := template.New("").Funcs(template.FuncMap{"statusClass": statusClass}).
		ParseFS(dashboardFiles, "dashboard/*.html")
	if err != nil {
		return nil, fmt.Errorf("httpapi: DashboardHandler: %w", err) // cannot happen: the templates are embedded
	}
	assets, _ := fs.Sub(dashboardFiles, "dashboard/assets") // cannot fail: a valid path
	d := &dashboard{action: a, lister: l, start: start, pages: pages, mux: http.NewServeMux()}
	d.mux.HandleFunc("GET /{$}", d.index)
	d.mux.HandleFunc("GET /tasks/{id}", d.task)
	d.mux.HandleFunc("POST /tasks/{id}/cancel", d.cancelTask)
	d.mux.HandleFunc("POST /tasks/{id}/retry", d.retryTask)
	d.mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(assets)))
	return d, nil
}

// ServeHTTP implements [http.Handler].
func (d *dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mux.ServeHTTP(w, r)
}

// dashboardParams are the query parameters of the list page.
var dashboardParams = slices.DeleteFunc(slices.Clone(listParams), func(p string) bool { return p == "lease_ended_before" })

// index serves the counts and the list of tasks.
func (d *dashboard) index(w http.ResponseWriter, r *http.Request) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		d.failPage(w, r, &refusal{http.StatusBadRequest, "The query string is malformed."})
		return
	}
	v = formValues(v)
	f := finder{config: d.config, lister: d.lister}
	q, err := f.scoped(r, v, dashboardParams)
	if err != nil {
		d.failPage(w, r, err)
		return
	}
	counts, err := d.lister.Count(r.Context(), store.Filter{Kind: q.filter.Kind, Label: q.filter.Label})
	if err != nil {
		d.failPage(w, r, err)
		return
	}
	page, err := d.lister.List(r.Context(), q.filter, q.pageSize, q.pageToken)
	if errors.Is(err, store.ErrInvalidInput) && q.pageToken != "" {
		d.failPage(w, r, &refusal{http.StatusBadRequest, "The page_token parameter is not one this listing gave, for these parameters."})
		return
	}
	if err != nil {
		d.failPage(w, r, err)
		return
	}
	d.render(w, r, http.StatusOK, "index.html", d.indexView(r, v, counts, page))
}

// formValues returns the values of v without the empty ones that a form
// sends for fields left blank, and with the times of datetime-local
// fields (in UTC) written in RFC 3339.
func formValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for name, vals := range v {
		for _, s := range vals {
			if s == "" {
				continue
			}
			if name == "created_after" || name == "created_before" {
				s = rfc3339(s)
			}
			out[name] = append(out[name], s)
		}
	}
	return out
}

// rfc3339 returns s, a datetime-local value such as "2025-11-12T10:00"
// taken as UTC, in RFC 3339; any other s as it is.
func rfc3339(s string) string {
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Format(time.RFC3339)
		}
	}
	return s
}

// task serves the page of a task.
func (d *dashboard) task(w http.ResponseWriter, r *http.Request) {
	st, err := d.get(r, r.PathValue("id"))
	if err != nil {
		d.failPage(w, r, err)
		return
	}
	d.render(w, r, http.StatusOK, "task.html", d.taskView(st))
}

// cancelTask asks for the cancellation of a task, with the form's reason.
func (d *dashboard) cancelTask(w http.ResponseWriter, r *http.Request) {
	d.act(w, r, func(st store.State) error {
		reason := r.PostFormValue("reason")
		if len(reason) > maxReasonBytes {
			return &refusal{http.StatusBadRequest, fmt.Sprintf("The reason is longer than %d bytes.", maxReasonBytes)}
		}
		return d.cancel(r, st.ID, reason)
	})
}

// retryTask starts a new attempt of a task.
func (d *dashboard) retryTask(w http.ResponseWriter, r *http.Request) {
	d.act(w, r, func(st store.State) error { return d.retry(r, st, d.start) })
}

// act does what a button asks for, with do, and sends the browser back to
// the task's page; or it answers with an error page.
func (d *dashboard) act(w http.ResponseWriter, r *http.Request, do func(store.State) error) {
	if err := d.csrf.Check(r); err != nil {
		d.failPage(w, r, &refusal{http.StatusForbidden, "The request came from another site: the dashboard only takes its own forms."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxActionBody)
	if err := r.ParseForm(); err != nil {
		d.failPage(w, r, &refusal{http.StatusBadRequest, "The form could not be read."})
		return
	}
	id := r.PathValue("id")
	st, err := d.get(r, id)
	if err == nil {
		err = do(st)
	}
	if err != nil {
		d.failPage(w, r, err)
		return
	}
	// Relative to /tasks/{id}/cancel: the task's page.
	w.Header().Set("Location", "../"+url.PathEscape(id))
	w.WriteHeader(http.StatusSeeOther)
}

// failPage answers r with a page that says what err means to the client
// (see [config.problem]).
func (d *dashboard) failPage(w http.ResponseWriter, r *http.Request, err error) {
	d.failWith(w, r, err, d.errorPage)
}

// errorPage answers r with the status code and a page with detail.
func (d *dashboard) errorPage(w http.ResponseWriter, r *http.Request, code int, detail string) {
	d.render(w, r, code, "error.html", errorView{Root: root(r), Title: http.StatusText(code), Code: code, Detail: detail})
}

// render answers r with the page that the template name makes of view.
// The page is rendered first, so that a failure is answered 500 rather
// than half a page.
func (d *dashboard) render(w http.ResponseWriter, r *http.Request, code int, name string, view any) {
	var b bytes.Buffer
	if err := d.pages.ExecuteTemplate(&b, name, view); err != nil {
		d.report(r, fmt.Errorf("render %s: %w", name, err))
		code = http.StatusInternalServerError
		b.Reset()
		b.WriteString("The page could not be rendered.\n")
	}
	hdr := w.Header()
	noStore(hdr)
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Security-Policy", dashboardCSP)
	hdr.Set("Referrer-Policy", "same-origin")
	hdr.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes()) // an error means the client has gone
}

// root returns the path of the dashboard's root relative to r's page:
// "./" for the list, "../" for a task's page and its actions.
func root(r *http.Request) string {
	if p := r.URL.EscapedPath(); strings.HasPrefix(p, "/tasks/") {
		return strings.Repeat("../", strings.Count(p[1:], "/"))
	}
	return "./"
}

// errorView is what error.html shows.
type errorView struct {
	Root   string
	Title  string
	Code   int
	Detail string
}

// statusClass returns the CSS class of a task or step status.
func statusClass(status string) string {
	return "st-" + status
}

// indexView is what index.html shows.
type indexView struct {
	Root, Title string
	Counts      []countView
	Total       int64
	Filter      filterView
	Statuses    []string
	Tasks       []rowView
	NextPage    string // the next page's URL, relative; "" on the last page
	FirstPage   string // the first page's URL, relative; "" on the first page
	Filtered    bool
}

// countView is one status's count, linking to the list of its tasks.
type countView struct {
	Status string
	N      int64
	Href   string
}

// filterView is the list's filter form, as the request filled it.
type filterView struct {
	Status, Kind, Label, CreatedAfter, CreatedBefore string
}

// rowView is one task of the list.
type rowView struct {
	ID, Href, Status, Kind, Error string
	Attempt                       int
	Abandoned                     bool
	Created, Updated              timeView
	Progress                      string
}

// timeView is a time: its machine form (RFC 3339) and its text.
type timeView struct {
	Attr, Text string
}

func newTimeView(t time.Time) timeView {
	if t.IsZero() {
		return timeView{}
	}
	t = t.UTC()
	return timeView{t.Format(time.RFC3339Nano), t.Format("2006-01-02 15:04:05.000")}
}

func (d *dashboard) indexView(r *http.Request, v url.Values, counts map[store.Status]int64, page store.Page) indexView {
	view := indexView{
		Root: "./", Title: "Tasks",
		Filter: filterView{
			Status: v.Get("status"), Kind: v.Get("kind"), Label: v.Get("label"),
			CreatedAfter: formTime(v.Get("created_after")), CreatedBefore: formTime(v.Get("created_before")),
		},
		Filtered: len(v) > 0,
	}
	for _, s := range store.Statuses() {
		view.Statuses = append(view.Statuses, string(s))
		link := url.Values{"status": {string(s)}}
		for _, name := range []string{"kind", "label"} {
			if v.Has(name) {
				link[name] = v[name]
			}
		}
		view.Counts = append(view.Counts, countView{string(s), counts[s], "?" + link.Encode()})
		view.Total += counts[s]
	}
	now := d.clock.Now()
	for _, st := range page.Tasks {
		if d.authorize != nil && d.authorize(r, st) != nil {
			continue
		}
		row := rowView{
			ID: st.ID, Href: "tasks/" + url.PathEscape(st.ID), Status: string(st.Status), Kind: st.Kind,
			Error: st.ErrorMessage, Attempt: st.Attempt, Abandoned: st.Abandoned(now),
			Created: newTimeView(st.CreatedAt), Updated: newTimeView(st.UpdatedAt),
		}
		if p := st.Progress; p.Total > 0 {
			row.Progress = fmt.Sprintf("%d/%d", p.Done, p.Total)
		}
		view.Tasks = append(view.Tasks, row)
	}
	if v.Has("page_token") {
		first := maps.Clone(v)
		first.Del("page_token")
		view.FirstPage = "?" + first.Encode()
	}
	if page.NextPageToken != "" {
		next := maps.Clone(v)
		next.Set("page_token", page.NextPageToken)
		view.NextPage = "?" + next.Encode()
	}
	return view
}

// formTime returns an RFC 3339 time s as a datetime-local value in UTC,
// or s as it is if it is not one.
func formTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("2006-01-02T15:04:05")
}

// taskView is what task.html shows.
type taskView struct {
	Root, Title, ID, StatusURL, Status, Kind, CorrelationID string
	// Path is the task page's URL relative to itself: "./" and the
	// escaped id, so that no id reads as a URL scheme.
	Path string
	// Version names the rendered document as the status stream's event
	// ids do: "7", or "7a" if the task was judged abandoned.
	Version                                        string
	Ended, Abandoned                               bool
	Attempt                                        int
	Labels                                         []fieldView
	Created, Started, Updated, Completed, LeaseEnd timeView
	Duration                                       string
	Progress                                       *progressView
	Steps                                          []stepView
	ErrorMessage                                   string
	ErrorDetails, Results                          []fieldView
	CancelRequested                                timeView
	CancelReason                                   string
	Previous                                       []attemptView
	CanCancel, CanRetry                            bool
}

// fieldView is a named value: a label, an error detail or a result, whose
// value is JSON text.
type fieldView struct{ Name, Value string }

// progressView is a task's progress.
type progressView struct {
	Done, Total int64
	Message     string
}

// newProgressView returns the view of p, or nil if p is zero.
func newProgressView(p store.Progress) *progressView {
	if p == (store.Progress{}) {
		return nil
	}
	return &progressView{p.Done, p.Total, p.Message}
}

// stepView is one step or sub-step of a task, with its bar in the
// timeline: X and W are its start and length in percent of the task's
// time.
type stepView struct {
	Name, Status, Error string
	Attempt             int
	Started, Completed  timeView
	Duration            string
	X, W                string
	Bar                 bool
	Progress            *progressView
	SubSteps            []stepView
	Sub                 bool // a sub-step
}

// attemptView is an earlier attempt of a task.
type attemptView struct {
	Attempt              int
	Status, ErrorMessage string
	Started, Completed   timeView
}

func (d *dashboard) taskView(st store.State) taskView {
	now := d.clock.Now()
	abandoned := st.Abandoned(now)
	view := taskView{
		Root: "../", Title: "Task " + st.ID, ID: st.ID, Path: "./" + url.PathEscape(st.ID), StatusURL: d.status.URL(st.ID), Status: string(st.Status),
		Kind: st.Kind, CorrelationID: st.CorrelationID, Version: eventID(st.Version, abandoned),
		Ended: st.Status.Terminal(), Abandoned: abandoned, Attempt: st.Attempt,
		Created: newTimeView(st.CreatedAt), Started: newTimeView(st.StartedAt), Updated: newTimeView(st.UpdatedAt),
		Completed: newTimeView(st.CompletedAt), LeaseEnd: newTimeView(st.LeaseUntil),
		ErrorMessage: st.ErrorMessage, CancelRequested: newTimeView(st.CancelRequestedAt), CancelReason: st.CancelReason,
		CanCancel: !st.Status.Terminal() && st.CancelRequestedAt.IsZero(),
		CanRetry:  st.Status.Terminal() || abandoned,
	}
	for _, k := range slices.Sorted(maps.Keys(st.Labels)) {
		view.Labels = append(view.Labels, fieldView{k, st.Labels[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(st.ErrorDetails)) {
		view.ErrorDetails = append(view.ErrorDetails, fieldView{k, string(st.ErrorDetails[k])})
	}
	for _, k := range slices.Sorted(maps.Keys(st.Result)) {
		view.Results = append(view.Results, fieldView{k, string(st.Result[k])})
	}
	view.Progress = newProgressView(st.Progress)
	begin := st.StartedAt
	if begin.IsZero() {
		begin = st.CreatedAt
	}
	end := st.CompletedAt
	if end.IsZero() {
		end = now
	}
	if !st.StartedAt.IsZero() {
		view.Duration = duration(end.Sub(begin))
	}
	for _, s := range st.Steps {
		view.Steps = append(view.Steps, newStepView(s, begin, end))
	}
	for _, a := range st.PreviousAttempts {
		view.Previous = append(view.Previous, attemptView{a.Attempt, string(a.Status), a.ErrorMessage,
			newTimeView(a.StartedAt), newTimeView(a.CompletedAt)})
	}
	return view
}

// newStepView returns the view of step s of a task whose time runs from
// begin to end.
func newStepView(s store.Step, begin, end time.Time) stepView {
	v := stepView{
		Name: s.Name, Status: string(s.Status), Error: s.Error, Attempt: s.Attempt,
		Started: newTimeView(s.StartedAt), Completed: newTimeView(s.CompletedAt),
		Progress: newProgressView(s.Progress),
	}
	for _, sub := range s.SubSteps {
		sv := newStepView(store.Step{Name: sub.Name, Status: sub.Status, StartedAt: sub.StartedAt,
			CompletedAt: sub.CompletedAt, Error: sub.Error}, begin, end)
		sv.Sub = true
		v.SubSteps = append(v.SubSteps, sv)
	}
	if s.StartedAt.IsZero() {
		return v
	}
	stop := s.CompletedAt
	if stop.IsZero() {
		stop = end
	}
	v.Duration = duration(stop.Sub(s.StartedAt))
	span := end.Sub(begin)
	if span <= 0 {
		span = 1
	}
	x := min(max(float64(s.StartedAt.Sub(begin))/float64(span), 0), 1)
	w := min(max(float64(stop.Sub(s.StartedAt))/float64(span), 0.005), 1-x)
	v.X = strconv.FormatFloat(100*x, 'f', 2, 64) + "%"
	v.W = strconv.FormatFloat(100*w, 'f', 2, 64) + "%"
	v.Bar = true
	return v
}

// duration returns d for people, to the millisecond.
func duration(d time.Duration) string {
	return max(d, 0).Round(time.Millisecond).String()
}
