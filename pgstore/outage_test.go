package pgstore_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/internal/pgtest"
	"github.com/taskstatus/taskstatus/pgstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// TestOutageMidRuns stops PostgreSQL, a cluster of the test's own, while
// runs are writing their steps, and lets the runs go on and finish while
// it is away: reads then answer ErrUnavailable, and the status endpoint
// 503, never 404; once it is back, every task converges to what its run
// did.
func TestOutageMidRuns(t *testing.T) {
	pgtest.URL(t) // a test against real servers: it runs when they are named
	srv := startServer(t)
	pool := pgtest.Pool(t, srv.url())
	s, err := pgstore.New(pool, pgstore.WithTimeout(500*time.Millisecond), pgstore.WithSchema("outage"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.NoError(t, s.Migrate(t.Context()))
	tr, err := tracker.New(s, tracker.WithErrorHandler(func(context.Context, error) {}))
	require.NoError(t, err)

	const runs = 16
	steps := []string{"parse", "embed", "index", "store", "notify"}
	ids := make([]string, runs)
	for i := range ids {
		ids[i] = fmt.Sprintf("outage-%02d", i)
		require.NoError(t, tr.Apply(t.Context(), ids[i], tracker.Create(steps...)))
	}

	halfway := make(chan struct{}, runs) // a run has recorded its first two steps
	stopping := make(chan struct{})      // closed just before the server is stopped
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			ctx := context.Background()
			run, err := tr.Start(ctx, id)
			if err != nil {
				t.Errorf("start %s: %v", id, err)
				return
			}
			for i, step := range steps {
				if i == 2 {
					halfway <- struct{}{}
					<-stopping
				}
				// Errors are the outage's: the run keeps the changes and goes on.
				_ = run.Apply(ctx, tracker.StartStep(step))
				_ = run.Apply(ctx, tracker.SucceedStep(step))
			}
			_ = run.Apply(ctx, tracker.Succeed())
		})
	}
	for range runs {
		<-halfway
	}
	close(stopping) // the runs' next writes race the stop
	srv.stop()
	wg.Wait() // every run ended while the server was away

	status, err := httpapi.StatusHandler(s, httpapi.WithErrorHandler(func(context.Context, error) {}))
	require.NoError(t, err)
	for _, id := range ids {
		_, err := s.Get(t.Context(), id)
		require.ErrorIs(t, err, store.ErrUnavailable, "Get of %s while the server is away", id)
		rec := httptest.NewRecorder()
		req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/tasks/"+id+"/status", nil)
		req.SetPathValue("id", id)
		status.ServeHTTP(rec, req)
		require.Equal(t, http.StatusServiceUnavailable, rec.Code, "status of %s while the server is away: %s", id, rec.Body)
	}

	srv.start()
	require.NoError(t, tr.Close(ctxTimeout(t, time.Minute)), "once the server is back, every kept change is written")
	for _, id := range ids {
		st, err := s.Get(t.Context(), id)
		require.NoError(t, err)
		require.Equal(t, store.StatusSuccess, st.Status, "task %s converged to its run's end", id)
		require.Len(t, st.Steps, len(steps))
		for _, step := range st.Steps {
			require.Equal(t, store.StepSuccess, step.Status, "task %s step %s", id, step.Name)
		}
	}
}
