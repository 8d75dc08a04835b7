package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// dashFixture serves a dashboard at /dashboard/ over a fixture's tracker
// and memstore.
type dashFixture struct {
	*fixture
	mux     *http.ServeMux
	started []store.State // what the retry button started, in order
}

func newDashFixture(t *testing.T, opts ...httpapi.Option) *dashFixture {
	t.Helper()
	f := &dashFixture{fixture: newFixture(t), mux: http.NewServeMux()}
	status, err := httpapi.ParseStatusPath(pattern)
	require.NoError(t, err)
	dash, err := httpapi.DashboardHandler(f.tr, f.mem, status, func(_ context.Context, ended store.State) error {
		f.started = append(f.started, ended)
		return nil
	}, append([]httpapi.Option{httpapi.WithClock(f.clock)}, opts...)...)
	require.NoError(t, err)
	f.mux.Handle("/dashboard/", http.StripPrefix("/dashboard", dash))
	return f
}

// do serves a request of method to target, with headers given as name,
// value pairs.
func (f *dashFixture) do(method, target, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(context.Background(), method, target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	return rec
}

// page GETs target and requires a 200 HTML page, which it returns.
func (f *dashFixture) page(t *testing.T, target string, header ...string) string {
	t.Helper()
	rec := f.do(http.MethodGet, target, "", header...)
	require.Equal(t, http.StatusOK, rec.Code, "GET %s: %s", target, rec.Body)
	assert.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
	assert.Contains(t, rec.Header().Get("Content-Security-Policy"), "script-src 'self'")
	return rec.Body.String()
}

// failed creates task id of kind and label tenant:tenant, runs its first
// step and fails it with msg.
func (f *dashFixture) failed(t *testing.T, id, tenant, msg string) {
	t.Helper()
	f.apply(t, id, tracker.Create(seedSteps...), tracker.Kind("document"), tracker.Label("tenant", tenant))
	run, err := f.tr.Start(t.Context(), id)
	require.NoError(t, err)
	cause := errors.New(msg)
	require.NoError(t, run.Apply(t.Context(), tracker.StartStep(seedSteps[0])))
	f.clock.Advance(1500 * time.Millisecond)
	require.NoError(t, run.Apply(t.Context(), tracker.FailStep(seedSteps[0], cause),
		tracker.Fail(cause, map[string]any{"exception_type": "ConnectionError"})))
}

// pending creates task id of kind and label tenant:tenant.
func (f *dashFixture) pending(t *testing.T, id, tenant string) {
	t.Helper()
	f.apply(t, id, tracker.Create(seedSteps...), tracker.Kind("document"), tracker.Label("tenant", tenant))
}

// taskLinks returns the ids of the tasks a list page links to, in order.
func taskLinks(t *testing.T, body string) []string {
	t.Helper()
	var ids []string
	for _, m := range regexp.MustCompile(`href="tasks/([^"]+)"`).FindAllStringSubmatch(body, -1) {
		id, err := url.PathUnescape(m[1])
		require.NoError(t, err)
		ids = append(ids, id)
	}
	return ids
}

func TestDashboardList(t *testing.T) {
	f := newDashFixture(t)
	f.failed(t, "doc-1", "a", "Vectorization failed: Connection refused")
	f.clock.Advance(time.Second)
	f.pending(t, "doc-2", "a")
	f.clock.Advance(time.Second)
	f.failed(t, "doc-3", "b", "Graph storage failed")

	body := f.page(t, "/dashboard/")
	assert.Equal(t, []string{"doc-3", "doc-2", "doc-1"}, taskLinks(t, body), "newest first")
	assert.Regexp(t, `href="\?status=failed">.*failed.*<span class="n">2</span>`, body, "the failed count links to its tasks")
	assert.Regexp(t, `href="\?status=pending">.*pending.*<span class="n">1</span>`, body)
	assert.Contains(t, body, `total <span class="n">3</span>`)
	assert.Contains(t, body, "Vectorization failed: Connection refused", "a failed task's error is listed")

	body = f.page(t, "/dashboard/?status=failed")
	assert.Equal(t, []string{"doc-3", "doc-1"}, taskLinks(t, body))
	assert.Contains(t, body, `<option value="failed" selected>`, "the form shows the filter")

	// A form sends its blank fields, and times as datetime-local values.
	body = f.page(t, "/dashboard/?status=&kind=document&label=tenant%3Aa&created_after=&created_before="+
		url.QueryEscape(t0.Add(1500*time.Millisecond).Format("2006-01-02T15:04:05")))
	assert.Equal(t, []string{"doc-1"}, taskLinks(t, body), "tenant a, created before doc-2")

	// Pages: one task each, the next linked until the last.
	body = f.page(t, "/dashboard/?page_size=1")
	assert.Equal(t, []string{"doc-3"}, taskLinks(t, body))
	next := regexp.MustCompile(`href="(\?[^"]*page_token[^"]*)" rel="next"`).FindStringSubmatch(body)
	require.NotNil(t, next, "a link to the next page")
	body = f.page(t, "/dashboard/"+strings.ReplaceAll(next[1], "&amp;", "&"))
	assert.Equal(t, []string{"doc-2"}, taskLinks(t, body))
	assert.Contains(t, body, `>First page</a>`)

	rec := f.do(http.MethodGet, "/dashboard/?status=lost", "")
	assert.Equal(t, http.StatusBadRequest, rec.Code)
	assert.Contains(t, rec.Body.String(), "is not a task status")
	assert.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
}

func TestDashboardTaskPage(t *testing.T) {
	f := newDashFixture(t)
	f.failed(t, "doc-1", "a", "Vectorization failed: Connection refused")
	body := f.page(t, "/dashboard/tasks/doc-1")

	assert.Contains(t, body, `data-status-url="/tasks/doc-1/status"`, "the script follows the task's stream")
	assert.Contains(t, body, `data-ended`, "an ended task has no stream to follow")
	assert.Contains(t, body, `<p class="message">Vectorization failed: Connection refused</p>`)
	assert.Contains(t, body, `<dt>exception_type</dt><dd><code>&#34;ConnectionError&#34;</code></dd>`)
	// The timeline: the failed step's bar spans the task's time, 1.5 s;
	// the steps that never ran have none.
	assert.Regexp(t, `<th scope="row">file_node_creation</th><td><span class="status st-failed">failed</span></td><td class="tl"><svg[^>]*><rect class="st-failed" x="0.00%" y="1" width="100.00%"`, body)
	assert.Contains(t, body, `<td>1.5s</td>`, "the step's duration")
	assert.Regexp(t, `<th scope="row">memgraph_storage</th><td><span class="status st-skipped">skipped</span></td><td class="tl"></td>`, body)
	assert.Contains(t, body, `action="./doc-1/retry"`, "an ended task can be retried")
	assert.NotContains(t, body, `/cancel"`, "an ended task cannot be canceled")

	// An id with a slash is one path segment, escaped.
	f.pending(t, "a/b", "a")
	body = f.page(t, "/dashboard/tasks/a%2Fb")
	assert.Contains(t, body, `<span class="id">a/b</span>`)
	assert.Contains(t, body, `href="../assets/dashboard.css"`)
	assert.Contains(t, body, `action="./a%2Fb/cancel"`)
	rec := f.do(http.MethodPost, "/dashboard/tasks/a%2Fb/cancel", "")
	assert.Equal(t, http.StatusSeeOther, rec.Code)
	assert.Equal(t, "../a%2Fb", rec.Header().Get("Location"))

	rec = f.do(http.MethodGet, "/dashboard/tasks/doc-2", "")
	assert.Equal(t, http.StatusNotFound, rec.Code)
	assert.Contains(t, rec.Body.String(), "No task has this id.")
	assert.Contains(t, rec.Body.String(), `href="../"`, "a way back to the list")
}

func TestDashboardAssets(t *testing.T) {
	f := newDashFixture(t)
	for path, typ := range map[string]string{
		"/dashboard/assets/dashboard.css": "text/css", "/dashboard/assets/dashboard.js": "text/javascript", "/dashboard/assets/icon.svg": "image/svg+xml",
	} {
		rec := f.do(http.MethodGet, path, "")
		require.Equal(t, http.StatusOK, rec.Code, path)
		assert.Contains(t, rec.Header().Get("Content-Type"), typ, path)
	}
}

// TestDashboardEscapes: every value that comes from a task is shown as
// text, in the list and on the task's page, and no id becomes a link of
// another scheme.
func TestDashboardEscapes(t *testing.T) {
	f := newDashFixture(t)
	const id = `<img src=x onerror=alert(1)>`
	const script = `<script>alert("x")</script>`
	f.apply(t, id, tracker.Create(script), tracker.Kind("document"))
	run, err := f.tr.Start(t.Context(), id)
	require.NoError(t, err)
	require.NoError(t, run.Apply(t.Context(), tracker.StartStep(script),
		tracker.SetResult(map[string]any{script: script}),
		tracker.SetProgress(store.Progress{Done: 1, Total: 2, Message: script})))
	cause := errors.New(script)
	require.NoError(t, run.Apply(t.Context(), tracker.FailStep(script, cause), tracker.Fail(cause, map[string]any{script: script})))
	const jsID = "javascript:alert(1)"
	f.pending(t, jsID, "a")

	list := f.page(t, "/dashboard/")
	page := f.page(t, "/dashboard/tasks/"+url.PathEscape(id))
	for name, body := range map[string]string{"list": list, "page": page} {
		assert.NotContains(t, body, "<script>alert", name)
		assert.NotContains(t, body, "<img", name)
		assert.Contains(t, body, "&lt;img src=x onerror=alert(1)&gt;", name)
	}
	assert.Contains(t, page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;")
	assert.Equal(t, 6, strings.Count(page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"),
		"the step's name, its error and the task's, the progress message, the result's and the detail's names")
	assert.Contains(t, page, "&#34;\\u003cscript\\u003ealert(\\&#34;x\\&#34;)\\u003c/script\\u003e&#34;", "the result and detail, as JSON")

	page = f.page(t, "/dashboard/tasks/"+jsID)
	assert.Contains(t, page, `action="./javascript:alert%281%29/cancel"`, "a relative URL, not a scheme")
	assert.NotContains(t, page, "ZgotmplZ")
}

func TestDashboardCancel(t *testing.T) {
	f := newDashFixture(t)
	f.running(t, "t1")
	body := f.page(t, "/dashboard/tasks/t1")
	assert.Contains(t, body, `action="./t1/cancel"`)
	assert.NotContains(t, body, `/retry"`, "a running task cannot be retried")
	assert.NotContains(t, body, "data-ended")

	rec := f.do(http.MethodPost, "/dashboard/tasks/t1/cancel", "reason=wrong+file", "Sec-Fetch-Site", "same-origin")
	require.Equal(t, http.StatusSeeOther, rec.Code, "body: %s", rec.Body)
	assert.Equal(t, "../t1", rec.Header().Get("Location"), "back to the task's page")
	st, err := f.tr.Get(t.Context(), "t1")
	require.NoError(t, err)
	assert.Equal(t, "wrong file", st.CancelReason)
	assert.Contains(t, f.page(t, "/dashboard/tasks/t1"), "wrong file")

	f.failed(t, "t2", "a", "boom")
	rec = f.do(http.MethodPost, "/dashboard/tasks/t2/cancel", "", "Sec-Fetch-Site", "same-origin")
	assert.Equal(t, http.StatusConflict, rec.Code)
	assert.Contains(t, rec.Body.String(), "The task has ended: it cannot be canceled.")

	f.running(t, "t3")
	rec = f.do(http.MethodPost, "/dashboard/tasks/t3/cancel", "reason="+strings.Repeat("x", 1025))
	assert.Equal(t, http.StatusBadRequest, rec.Code)
	assert.Contains(t, rec.Body.String(), "The reason is longer than 1024 bytes.")
	st, err = f.tr.Get(t.Context(), "t3")
	require.NoError(t, err)
	assert.True(t, st.CancelRequestedAt.IsZero(), "a refused reason cancels nothing")
}

func TestDashboardRetry(t *testing.T) {
	f := newDashFixture(t)
	f.failed(t, "t1", "a", "boom")
	rec := f.do(http.MethodPost, "/dashboard/tasks/t1/retry", "", "Origin", "http://example.com", "Sec-Fetch-Site", "same-origin")
	require.Equal(t, http.StatusSeeOther, rec.Code, "body: %s", rec.Body)
	require.Len(t, f.started, 1)
	assert.Equal(t, "t1", f.started[0].ID)
	st, err := f.tr.Get(t.Context(), "t1")
	require.NoError(t, err)
	assert.Equal(t, 2, st.Attempt)
	body := f.page(t, "/dashboard/tasks/t1")
	assert.Contains(t, body, "Earlier attempts")
	assert.Regexp(t, `<tr><td>1</td><td><span class="status st-failed">failed</span></td>.*boom`, body)

	rec = f.do(http.MethodPost, "/dashboard/tasks/t1/retry", "")
	assert.Equal(t, http.StatusConflict, rec.Code, "a pending task is not retried")
	assert.Len(t, f.started, 1)
}

// TestDashboardCSRF: a button pressed from a page of another site is
// refused, and nothing changes.
func TestDashboardCSRF(t *testing.T) {
	f := newDashFixture(t)
	f.running(t, "t1")
	f.failed(t, "t2", "a", "boom")
	for _, tc := range []struct {
		name   string
		header []string
	}{
		{"Sec-Fetch-Site cross-site", []string{"Sec-Fetch-Site", "cross-site"}},
		{"Sec-Fetch-Site same-site", []string{"Sec-Fetch-Site", "same-site"}},
		{"Origin of another host", []string{"Origin", "https://evil.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, target := range []string{"/dashboard/tasks/t1/cancel", "/dashboard/tasks/t2/retry"} {
				rec := f.do(http.MethodPost, target, "reason=x", tc.header...)
				assert.Equal(t, http.StatusForbidden, rec.Code, target)
				assert.Contains(t, rec.Body.String(), "came from another site", target)
			}
			st, err := f.tr.Get(t.Context(), "t1")
			require.NoError(t, err)
			assert.True(t, st.CancelRequestedAt.IsZero(), "no cancel recorded")
			assert.Empty(t, f.started, "no retry started")
		})
	}
	rec := f.do(http.MethodGet, "/dashboard/tasks/t1/cancel", "")
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code, "no action with GET")
}

// TestDashboardTenant: with the authorization hooks of the endpoints, a
// tenant sees, counts and acts on its own tasks only.
func TestDashboardTenant(t *testing.T) {
	tenant := func(r *http.Request) string { return r.Header.Get("X-Tenant") }
	f := newDashFixture(t,
		httpapi.WithAuthorize(func(r *http.Request, st store.State) error {
			if st.Labels["tenant"] != tenant(r) {
				return errors.New("another tenant's task")
			}
			return nil
		}),
		httpapi.WithScope(func(r *http.Request, flt *store.Filter) error {
			if flt.Label != (store.Label{}) && flt.Label != (store.Label{Key: "tenant", Value: tenant(r)}) {
				return errors.New("another tenant's label")
			}
			flt.Label = store.Label{Key: "tenant", Value: tenant(r)}
			return nil
		}))
	f.failed(t, "a-1", "a", "boom")
	f.pending(t, "a-2", "a")
	f.failed(t, "b-1", "b", "secret of b")
	f.pending(t, "b-2", "b")

	body := f.page(t, "/dashboard/", "X-Tenant", "a")
	assert.Equal(t, []string{"a-2", "a-1"}, taskLinks(t, body))
	assert.Contains(t, body, `total <span class="n">2</span>`, "counts of a's tasks only")
	assert.NotContains(t, body, "secret of b")
	body = f.page(t, "/dashboard/?status=failed", "X-Tenant", "b")
	assert.Equal(t, []string{"b-1"}, taskLinks(t, body))

	assert.Equal(t, http.StatusForbidden, f.do(http.MethodGet, "/dashboard/?label=tenant:b", "", "X-Tenant", "a").Code)
	rec := f.do(http.MethodGet, "/dashboard/tasks/b-1", "", "X-Tenant", "a")
	assert.Equal(t, http.StatusNotFound, rec.Code)
	assert.NotContains(t, rec.Body.String(), "secret of b")
	assert.Equal(t, http.StatusNotFound, f.do(http.MethodPost, "/dashboard/tasks/b-2/cancel", "", "X-Tenant", "a").Code)
	assert.Equal(t, http.StatusNotFound, f.do(http.MethodPost, "/dashboard/tasks/b-1/retry", "", "X-Tenant", "a").Code)
	st, err := f.tr.Get(t.Context(), "b-2")
	require.NoError(t, err)
	assert.True(t, st.CancelRequestedAt.IsZero(), "a cannot cancel b's task")
	assert.Empty(t, f.started, "a cannot retry b's task")
	f.page(t, "/dashboard/tasks/b-1", "X-Tenant", "b")
}

func TestDashboardHandlerErrors(t *testing.T) {
	f := newFixture(t)
	status, err := httpapi.ParseStatusPath(pattern)
	require.NoError(t, err)
	start := func(context.Context, store.State) error { return nil }
	allow := httpapi.WithAuthorize(func(*http.Request, store.State) error { return nil })
	for name, call := range map[string]func() (http.Handler, error){
		"nil tracker": func() (http.Handler, error) { return httpapi.DashboardHandler(nil, f.mem, status, start) },
		"nil store":   func() (http.Handler, error) { return httpapi.DashboardHandler(f.tr, nil, status, start) },
		"nil start":   func() (http.Handler, error) { return httpapi.DashboardHandler(f.tr, f.mem, status, nil) },
		"zero status path": func() (http.Handler, error) {
			return httpapi.DashboardHandler(f.tr, f.mem, httpapi.StatusPath{}, start)
		},
		"authorize without scope": func() (http.Handler, error) {
			return httpapi.DashboardHandler(f.tr, f.mem, status, start, allow)
		},
	} {
		h, err := call()
		require.Error(t, err, name)
		assert.Nil(t, h, name)
	}
}

// TestDashboardPageSize: the list page of 50 tasks is at most 100 KB.
// BenchmarkDashboardPage measures its rendering.
func TestDashboardPageSize(t *testing.T) {
	f := newFixture(t)
	dashboardTasks(t, f)
	assert.LessOrEqual(t, serveDashboardPage(t, f).Body.Len(), 100<<10, "bytes of the page")
}

// TestDashboardStoreDown: a store that does not answer is said so, 503
// with Retry-After, and its error goes to the error handler.
func TestDashboardStoreDown(t *testing.T) {
	f := newFixture(t)
	status, err := httpapi.ParseStatusPath(pattern)
	require.NoError(t, err)
	var reported []error
	dash, err := httpapi.DashboardHandler(f.tr, downLister{}, status, func(context.Context, store.State) error { return nil },
		httpapi.WithErrorHandler(func(_ context.Context, err error) { reported = append(reported, err) }))
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	dash.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	assert.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
	assert.Contains(t, rec.Body.String(), "The status store is unavailable. Retry later.")
	require.Len(t, reported, 1)
	assert.ErrorIs(t, reported[0], context.DeadlineExceeded, "the count's error")
}

// TestDashboardSubSteps: a step's progress and its sub-steps are shown
// under it, each sub-step with its bar in the timeline.
func TestDashboardSubSteps(t *testing.T) {
	f := newDashFixture(t)
	run := f.running(t, "t1")
	step := seedSteps[0]
	require.NoError(t, run.Apply(t.Context(), tracker.StartStep(step), tracker.StartSubStep(step, "page-1")))
	f.clock.Advance(time.Second)
	require.NoError(t, run.Apply(t.Context(), tracker.SucceedSubStep(step, "page-1"), tracker.StartSubStep(step, "page-2"),
		tracker.StepProgress(step, store.Progress{Done: 1, Total: 2, Message: "pages"})))
	f.clock.Advance(time.Second)

	body := f.page(t, "/dashboard/tasks/t1")
	assert.Contains(t, body, `<progress max="2" value="1" aria-label="Progress">1/2</progress> 1/2 pages`, "the step's progress")
	assert.Regexp(t, `<tr class="sub"><th scope="row"><span class="sr-only">sub-step </span>page-1</th><td><span class="status st-success">success</span></td><td class="tl"><svg[^>]*><rect class="st-success" x="0.00%" y="1" width="50.00%"`, body)
	assert.Regexp(t, `<tr class="sub"><th scope="row"><span class="sr-only">sub-step </span>page-2</th><td><span class="status st-running">running</span></td><td class="tl"><svg[^>]*><rect class="st-running" x="50.00%" y="1" width="50.00%"`, body,
		"a running sub-step's bar reaches the present")
}
