package redisstore_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

// statusEndpointProbe returns a probe that asks httpapi.StatusHandler, over the store, for the
// status of every task in the ways clients do: a plain GET, a conditional
// GET naming the version they had (If-None-Match), a long poll naming it
// (?wait=&version=) and an event stream resumed from it (Last-Event-ID).
// Before the outage each is answered with the task's state; during it
// each is answered 503 with Retry-After and a problem document, within the
// store's timeout: never 404, never 200 or 304, which could only be stale;
// after it the final state is served.
func statusEndpointProbe() outageProbe {
	known := make(map[string]store.State) // the states clients read before the outage
	return func(t *testing.T, phase string, s *redisstore.Store, ids []string) {
		t.Helper()
		probeStatusEndpoint(t, phase, s, ids, known)
	}
}

func probeStatusEndpoint(t *testing.T, phase string, s *redisstore.Store, ids []string, known map[string]store.State) {
	t.Helper()
	var errs errorLog
	mux := http.NewServeMux()
	status, err := httpapi.StatusHandler(s, httpapi.WithErrorHandler(errs.add))
	require.NoError(t, err)
	mux.Handle("GET /tasks/{id}/status", status)

	type request struct {
		name   string
		target string
		header http.Header
	}
	requests := func(st store.State) []request {
		base := "/tasks/" + st.ID + "/status"
		v := strconv.FormatInt(st.Version, 10)
		return []request{
			{"GET", base, nil},
			{"conditional GET", base, http.Header{"If-None-Match": {`"v` + v + `"`}}},
			{"long poll", base + "?wait=1s&version=" + v, nil},
			{"event stream", base, http.Header{"Accept": {"text/event-stream"}, "Last-Event-ID": {v}}},
		}
	}
	serve := func(ctx context.Context, r request) (*httptest.ResponseRecorder, time.Duration) {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, r.target, nil)
		for k, v := range r.header {
			req.Header[k] = v
		}
		rec := httptest.NewRecorder()
		start := time.Now()
		mux.ServeHTTP(rec, req)
		return rec, time.Since(start)
	}

	ctx := t.Context()
	states := known
	if phase != "during" {
		for _, id := range ids {
			st, err := s.Get(ctx, id)
			require.NoError(t, err)
			states[id] = st
		}
	}

	switch phase {
	case "before", "after":
		for _, id := range ids {
			rec, _ := serve(ctx, requests(states[id])[0])
			require.Equal(t, http.StatusOK, rec.Code, "%s %s: %s", phase, id, rec.Body)
			var doc struct {
				Status  store.Status `json:"status"`
				Version int64        `json:"version"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &doc))
			require.Equal(t, states[id].Version, doc.Version, "%s %s: the stored version is served", phase, id)
			require.Equal(t, states[id].Status, doc.Status)
		}
	case "during":
		type answer struct {
			r    request
			rec  *httptest.ResponseRecorder
			took time.Duration
		}
		answers := make([]answer, 0, 4*len(ids))
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, id := range ids {
			for _, r := range requests(states[id]) {
				wg.Go(func() {
					rec, took := serve(ctx, r)
					mu.Lock()
					defer mu.Unlock()
					answers = append(answers, answer{r, rec, took})
				})
			}
		}
		wg.Wait()
		for _, a := range answers {
			require.Equal(t, http.StatusServiceUnavailable, a.rec.Code, "%s %s while Redis is away: %s", a.r.name, a.r.target, a.rec.Body)
			assert.NotEmpty(t, a.rec.Header().Get("Retry-After"), a.r.name)
			assert.Equal(t, "application/problem+json", a.rec.Header().Get("Content-Type"), a.r.name)
			assert.Less(t, a.took, faultStoreLimit+faultSlack, "%s %s: answered within the store's timeout", a.r.name, a.r.target)
		}
		reported := errs.all()
		require.Len(t, reported, len(answers), "each 503 is reported to the handler's error handler")
		for _, err := range reported {
			require.ErrorIs(t, err, store.ErrUnavailable)
		}
	}
}
