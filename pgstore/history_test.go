package pgstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/internal/pgtest"
	"github.com/taskstatus/taskstatus/pgstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// announced is a store that records the states of the announced writes
// it acknowledged, in order: what History must return.
type announced struct {
	store.Store
	states []store.State
}

func (a *announced) Put(ctx context.Context, w store.Write) error {
	if err := a.Store.Put(ctx, w); err != nil {
		return err
	}
	if !w.Quiet {
		a.states = append(a.states, w.State.Clone())
	}
	return nil
}

// TestHistoryOfFiveSteps runs a task of five steps, with lease renewals
// between them, and checks that History returns exactly its transitions
// in order (the renewals, quiet writes, leave none), and that the history
// outlives the task.
func TestHistoryOfFiveSteps(t *testing.T) {
	s := newStore(t, pgtest.Pool(t, pgtest.URL(t)))
	ctx := t.Context()
	rec := &announced{Store: s}
	tr, err := tracker.New(rec, tracker.WithLease(time.Minute))
	require.NoError(t, err)

	steps := []string{"parse", "embed", "index", "store", "notify"}
	const id = "doc-5"
	require.NoError(t, tr.Apply(ctx, id, tracker.Create(steps...)))
	run, err := tr.Start(ctx, id)
	require.NoError(t, err)
	for _, step := range steps {
		require.NoError(t, run.Apply(ctx, tracker.StartStep(step)))
		require.NoError(t, run.Apply(ctx, tracker.Heartbeat()))
		require.NoError(t, run.Apply(ctx, tracker.SucceedStep(step)))
	}
	require.NoError(t, run.Apply(ctx, tracker.Succeed()))

	want := rec.states
	require.Len(t, want, 2+2*len(steps)+1, "create, start, each step's start and end, success")
	got, err := s.History(ctx, id)
	require.NoError(t, err)
	requireStates(t, want, got, "History must return the announced writes, in order")

	wantStatuses := []store.Status{store.StatusPending}
	for range 1 + 2*len(steps) {
		wantStatuses = append(wantStatuses, store.StatusRunning)
	}
	wantStatuses = append(wantStatuses, store.StatusSuccess)
	var statuses []store.Status
	for _, st := range got {
		statuses = append(statuses, st.Status)
	}
	assert.Equal(t, wantStatuses, statuses)

	require.NoError(t, s.Delete(ctx, id))
	got, err = s.History(ctx, id)
	require.NoError(t, err)
	requireStates(t, want, got, "the history must outlive the task")

	none, err := s.History(ctx, "never-created")
	require.NoError(t, err)
	assert.Empty(t, none, "a task never written has no history")
}

// requireStates fails unless got holds the states of want, in order.
func requireStates(t *testing.T, want, got []store.State, msg string) {
	t.Helper()
	require.Len(t, got, len(want), msg)
	for i := range want {
		require.True(t, want[i].Equal(got[i]), "%s: state %d is\n%+v\nwant\n%+v", msg, i, got[i], want[i])
	}
}

// TestReaperKeepsBound writes a steady stream of tasks, a few writes each,
// with times to live shorter than the history's retention, while the
// clock runs, and reaps now and then: after each reap, the tasks table
// holds exactly the tasks that have not expired and the history table
// exactly the rows within the retention, whatever the batch size.
func TestReaperKeepsBound(t *testing.T) {
	const (
		retention = time.Hour
		ttl       = 20 * time.Minute
		batch     = 7 // less than what each reap removes, so that it takes several batches
	)
	s := newStore(t, pgtest.Pool(t, pgtest.URL(t)), pgstore.WithHistoryRetention(retention), pgstore.WithReapInterval(0), pgstore.WithReapBatch(batch))
	ctx := t.Context()

	type written struct {
		at      time.Time
		task    string
		expires time.Time
	}
	var rows []written // a history row each
	for minute := range 150 {
		now := s.clock.Now()
		id := fmt.Sprintf("task-%03d", minute)
		st := store.State{ID: id, Incarnation: "i", Status: store.StatusPending, CreatedAt: now, UpdatedAt: now, Attempt: 1, Version: 1}
		for v := range int64(3) {
			st.Version = v + 1
			require.NoError(t, s.Put(ctx, store.Write{State: st, Prev: v, TTL: ttl}))
			rows = append(rows, written{at: now, task: id, expires: now.Add(ttl)})
		}
		s.clock.Advance(time.Minute)
		if minute%10 != 9 {
			continue
		}
		_, err := s.Reap(ctx)
		require.NoError(t, err)

		now = s.clock.Now()
		wantHistory, live := 0, map[string]bool{}
		for _, r := range rows {
			if !r.at.Before(now.Add(-retention)) {
				wantHistory++
			}
			if r.expires.After(now) {
				live[r.task] = true
			}
		}
		assert.Equal(t, wantHistory, s.rows(t, "history"), "minute %d: history rows within the retention", minute)
		assert.Equal(t, len(live), s.rows(t, "tasks"), "minute %d: tasks that have not expired", minute)
	}
}
