package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// listFixture is a fixture whose store holds tasks of two projects, some
// failed, served by a list and a counts handler.
type listFixture struct {
	*fixture
	srv    *httptest.Server
	client *httpapi.Client
	failed []string // the failed tasks of project p1, newest first
}

// newListFixture makes twelve tasks, one a second: every third failed,
// the others pending, the even ones of project p1, the odd ones of p2,
// all of kind "document" but the last, of kind "mail". The handlers get
// opts.
func newListFixture(t *testing.T, opts ...httpapi.Option) *listFixture {
	t.Helper()
	f := &listFixture{fixture: newFixture(t)}
	for i := range 12 {
		id := fmt.Sprintf("doc-%02d", i)
		kind := "document"
		if i == 11 {
			kind = "mail"
		}
		f.apply(t, id, tracker.Create("parse"), tracker.Kind(kind), tracker.Label("project_id", fmt.Sprintf("p%d", 1+i%2)))
		if i%3 == 0 {
			f.apply(t, id, tracker.Fail(errors.New("boom"), nil))
			if i%2 == 0 {
				f.failed = append([]string{id}, f.failed...)
			}
		}
		f.clock.Advance(time.Second)
	}
	mux := http.NewServeMux()
	opts = append([]httpapi.Option{httpapi.WithClock(f.clock)}, opts...)
	list, err := httpapi.ListHandler(f.mem, opts...)
	require.NoError(t, err)
	mux.Handle("GET /tasks", list)
	counts, err := httpapi.CountsHandler(f.mem, opts...)
	require.NoError(t, err)
	mux.Handle("GET /tasks/counts", counts)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	f.client = &httpapi.Client{HTTPClient: f.srv.Client(), BaseURL: f.srv.URL}
	return f
}

// page is a list answer.
type page struct {
	Tasks         []map[string]any `json:"tasks"`
	NextPageToken *string          `json:"next_page_token"`
}

// getPage GETs target from f's list handler and decodes its page.
func (f *listFixture) getPage(t *testing.T, target string) page {
	t.Helper()
	rec := serve(f.srv.Config.Handler, target)
	require.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	var p page
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p), "body: %s", rec.Body)
	return p
}

// TestListPages follows the pages of a listing to its end, as the issue's
// curl does: each task once, newest first, two at a time, the token
// absent on the last page.
func TestListPages(t *testing.T) {
	f := newListFixture(t)
	var got []string
	target := "/tasks?status=failed&label=project_id:p1&page_size=2"
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10, "the pages do not end")
		p := f.getPage(t, target)
		assert.LessOrEqual(t, len(p.Tasks), 2)
		for _, doc := range p.Tasks {
			got = append(got, doc["task_id"].(string))
			assert.Equal(t, "failed", doc["status"])
			assert.Equal(t, map[string]any{"project_id": "p1"}, doc["labels"])
		}
		if p.NextPageToken == nil {
			break
		}
		require.NotEmpty(t, *p.NextPageToken)
		target = "/tasks?status=failed&label=project_id:p1&page_size=2&page_token=" + url.QueryEscape(*p.NextPageToken)
	}
	assert.Equal(t, f.failed, got)

	// The documents are the status handler's.
	p := f.getPage(t, "/tasks?kind=mail")
	require.Len(t, p.Tasks, 1)
	assert.Equal(t, "doc-11", p.Tasks[0]["task_id"])
	assert.Equal(t, "mail", p.Tasks[0]["kind"])
	assert.Equal(t, false, p.Tasks[0]["abandoned"])
	assert.Nil(t, p.NextPageToken)

	// Several statuses, a time range, and a page with none.
	p = f.getPage(t, "/tasks?status=failed&status=pending&created_after=2025-11-12T10:00:03Z&created_before=2025-11-12T10:00:05Z")
	assert.Equal(t, []any{"doc-04", "doc-03"}, ids(p))
	p = f.getPage(t, "/tasks?status=success")
	assert.NotNil(t, p.Tasks, "an empty page lists no tasks, not null")
	assert.Empty(t, p.Tasks)
}

func ids(p page) []any {
	var ids []any
	for _, doc := range p.Tasks {
		ids = append(ids, doc["task_id"])
	}
	return ids
}

func TestCounts(t *testing.T) {
	f := newListFixture(t)
	rec := serve(f.srv.Config.Handler, "/tasks/counts?label=project_id:p1")
	require.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body)
	assert.JSONEq(t, `{"counts":{"pending":4,"running":0,"success":0,"failed":2,"canceled":0},"total":6}`, rec.Body.String())
	assert.True(t, strings.HasPrefix(rec.Body.String(), `{"counts":{"pending":4,"running":0,`), "statuses in their order")

	counts, err := f.client.Counts(t.Context(), "/tasks/counts", store.Filter{Kind: "document"})
	require.NoError(t, err)
	assert.Equal(t, map[store.Status]int64{"pending": 7, "running": 0, "success": 0, "failed": 4, "canceled": 0}, counts)
}

// TestClientList reads every page through the Client's iterator, and
// stops reading when the loop breaks.
func TestClientList(t *testing.T) {
	f := newListFixture(t)
	ctx := t.Context()
	var got []string
	for doc, err := range f.client.List(ctx, "/tasks", store.Filter{Statuses: []store.Status{store.StatusFailed}, Label: store.Label{Key: "project_id", Value: "p1"}}, 1) {
		require.NoError(t, err)
		assert.Equal(t, store.StatusFailed, doc.Status)
		assert.Equal(t, "document", doc.Kind)
		got = append(got, doc.ID)
	}
	assert.Equal(t, f.failed, got)

	n := 0
	for _, err := range f.client.List(ctx, "/tasks", store.Filter{CreatedAfter: t0.Add(time.Second)}, 2) {
		require.NoError(t, err)
		if n++; n == 3 {
			break
		}
	}
	assert.Equal(t, 3, n)

	for _, err := range f.client.List(ctx, "/tasks", store.Filter{Kind: "no such kind!"}, 0) {
		var rerr *httpapi.ResponseError
		require.ErrorAs(t, err, &rerr)
		assert.Equal(t, http.StatusBadRequest, rerr.StatusCode)
		assert.Contains(t, rerr.Problem.Detail, "kind")
	}
}

// TestListBadParameters: each bad parameter is answered 400 with a
// problem that names it.
func TestListBadParameters(t *testing.T) {
	f := newListFixture(t)
	other := f.getPage(t, "/tasks?status=failed&page_size=1")
	require.NotNil(t, other.NextPageToken)
	for _, tc := range []struct{ target, param string }{
		{"/tasks?status=done", "status"},
		{"/tasks?status=", "status"},
		{"/tasks?kind=a%20b", "kind"},
		{"/tasks?kind=a&kind=b", "kind"},
		{"/tasks?label=project_id", "label"},
		{"/tasks?label=:p1", "label"},
		{"/tasks?label=project_id:", "label"},
		{"/tasks?created_after=yesterday", "created_after"},
		{"/tasks?created_before=2025-11-12", "created_before"},
		{"/tasks?lease_ended_before=1", "lease_ended_before"},
		{"/tasks?created_after=2025-11-12T10:00:05Z&created_before=2025-11-12T10:00:05Z", "created_after"},
		{"/tasks?page_size=0", "page_size"},
		{"/tasks?page_size=1001", "page_size"},
		{"/tasks?page_size=ten", "page_size"},
		{"/tasks?page_token=garbage", "page_token"},
		{"/tasks?status=pending&page_token=" + url.QueryEscape(*other.NextPageToken), "page_token"},
		{"/tasks/counts?status=failed", "status"},
		{"/tasks/counts?page_size=2", "page_size"},
		{"/tasks?%zz", "query"},
	} {
		rec := serve(f.srv.Config.Handler, tc.target)
		require.Equal(t, http.StatusBadRequest, rec.Code, "%s: body: %s", tc.target, rec.Body)
		assert.Contains(t, problem(t, rec).Detail, tc.param, tc.target)
	}
	for _, target := range []string{"/tasks", "/tasks/counts"} {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, target, nil)
		rec := httptest.NewRecorder()
		f.srv.Config.Handler.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusMethodNotAllowed, rec.Code, target)
	}
}

// downLister is a Lister whose store is down.
type downLister struct{ *memstore.Store }

func (downLister) List(context.Context, store.Filter, int, string) (store.Page, error) {
	return store.Page{}, fmt.Errorf("list: %w", store.ErrUnavailable)
}

func (downLister) Count(context.Context, store.Filter) (map[store.Status]int64, error) {
	return nil, fmt.Errorf("count: %w", context.DeadlineExceeded)
}

func TestListStoreDown(t *testing.T) {
	var reported []error
	opts := []httpapi.Option{httpapi.WithErrorHandler(func(_ context.Context, err error) { reported = append(reported, err) })}
	list, err := httpapi.ListHandler(downLister{}, opts...)
	require.NoError(t, err)
	counts, err := httpapi.CountsHandler(downLister{}, opts...)
	require.NoError(t, err)
	for _, h := range []http.Handler{list, counts} {
		rec := serve(h, "/tasks?kind=document")
		require.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, "1", rec.Header().Get("Retry-After"))
		assert.Equal(t, "The status store is unavailable. Retry later.", problem(t, rec).Detail)
	}
	require.Len(t, reported, 2)
	require.ErrorIs(t, reported[0], store.ErrUnavailable)
	assert.ErrorIs(t, reported[1], context.DeadlineExceeded)
}

// TestListScope: a scope hook imposes a tenant's label on every listing
// and refuses another label; the authorization hook hides tasks from a
// page; a token made for one tenant is refused for another.
func TestListScope(t *testing.T) {
	scope := func(r *http.Request, f *store.Filter) error {
		tenant, _ := r.Context().Value(tenantKey{}).(string)
		if tenant == "" || f.Label != (store.Label{}) && f.Label.Value != tenant {
			return errors.New("not yours")
		}
		f.Label = store.Label{Key: "project_id", Value: tenant}
		return nil
	}
	authorize := func(r *http.Request, st store.State) error {
		if st.ID == "doc-06" {
			return errors.New("hidden")
		}
		return nil
	}
	f := newListFixture(t, httpapi.WithScope(scope), httpapi.WithAuthorize(authorize))
	as := func(tenant, target string) *httptest.ResponseRecorder {
		req := httptest.NewRequestWithContext(context.WithValue(t.Context(), tenantKey{}, tenant), http.MethodGet, target, nil)
		rec := httptest.NewRecorder()
		f.srv.Config.Handler.ServeHTTP(rec, req)
		return rec
	}

	rec := as("p1", "/tasks?status=failed&page_size=1")
	require.Equal(t, http.StatusOK, rec.Code)
	var p page
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
	assert.Empty(t, p.Tasks, "doc-06 is hidden by the authorization hook")
	require.NotNil(t, p.NextPageToken, "a page the hook emptied still leads to the next")
	token := url.QueryEscape(*p.NextPageToken)
	rec = as("p1", "/tasks?status=failed&page_size=1&page_token="+token)
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
	assert.Equal(t, []any{"doc-00"}, ids(p))

	rec = as("p2", "/tasks?status=failed&page_size=1&page_token="+token)
	assert.Equal(t, http.StatusBadRequest, rec.Code, "p1's token for p2")

	rec = as("p2", "/tasks/counts")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Contains(t, rec.Body.String(), `"total":6`)

	for _, target := range []string{"/tasks?label=project_id:p1", "/tasks/counts?label=project_id:p1"} {
		rec = as("p2", target)
		assert.Equal(t, http.StatusForbidden, rec.Code, target)
		assert.Equal(t, "The caller may not find these tasks.", problem(t, rec).Detail)
	}
	assert.Equal(t, http.StatusForbidden, as("", "/tasks").Code)
}

func TestListHandlerRefuses(t *testing.T) {
	mem, err := memstore.New()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, mem.Close()) })
	allow := func(*http.Request, store.State) error { return nil }

	_, err = httpapi.ListHandler(nil)
	require.ErrorContains(t, err, "nil store")
	_, err = httpapi.CountsHandler(nil)
	require.ErrorContains(t, err, "nil store")
	_, err = httpapi.ListHandler(mem, httpapi.WithScope(nil))
	require.ErrorContains(t, err, "WithScope")
	_, err = httpapi.CountsHandler(mem, httpapi.WithAuthorize(allow))
	require.ErrorContains(t, err, "WithAuthorize without WithScope")
	_, err = httpapi.ListHandler(mem, httpapi.WithAuthorize(allow))
	assert.NoError(t, err, "a list checks each task")
}

// TestListScopeInvalidFilter: a scope hook that makes a filter the store
// cannot use is the service's fault: 500, reported.
func TestListScopeInvalidFilter(t *testing.T) {
	var reported []error
	f := newListFixture(t,
		httpapi.WithScope(func(_ *http.Request, f *store.Filter) error {
			f.Kind = "bad kind"
			return nil
		}),
		httpapi.WithErrorHandler(func(_ context.Context, err error) { reported = append(reported, err) }))
	rec := serve(f.srv.Config.Handler, "/tasks")
	assert.Equal(t, http.StatusInternalServerError, rec.Code)
	require.Len(t, reported, 1)
	assert.Contains(t, reported[0].Error(), "scope")
	assert.ErrorIs(t, reported[0], store.ErrInvalidInput)
}
