package tracker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// TestChangesKeptDuringAnOutageAreWritten: the store fails mid-run; the
// run goes on, its changes are kept, and once the store answers they are
// all written, in order: what the work did is what is recorded.
func TestChangesKeptDuringAnOutageAreWritten(t *testing.T) {
	f := newFixture(t)
	fs := &faultyStore{Store: f.store}
	tr := f.tracker(t, fs)
	ctx := t.Context()
	require.NoError(t, tr.Apply(ctx, "doc", tracker.Create("a", "b", "c")))
	run, err := tr.Start(ctx, "doc", tracker.StartStep("a"))
	require.NoError(t, err)

	fs.set(always(down))
	err = run.Apply(ctx, tracker.SucceedStep("a"), tracker.StartStep("b"))
	require.ErrorIs(t, err, store.ErrUnavailable, "the caller learns the change is not written yet")
	require.Len(t, f.reported(), 1, "the error handler is told")
	start := time.Now()
	require.ErrorIs(t, run.Apply(ctx, tracker.SucceedStep("b"), tracker.StartStep("c")), store.ErrUnavailable)
	require.ErrorIs(t, run.Apply(ctx, tracker.SetResult(map[string]any{"vector_indexed": true})), store.ErrUnavailable)
	assert.Less(t, time.Since(start), time.Second, "while changes wait, later calls do not wait for the store")
	assert.Len(t, f.reported(), 1, "a wait is reported once, not per change")

	fs.set(nil)
	// Until the Tracker has written the changes that wait, later ones
	// wait behind them.
	if err := run.Apply(ctx, tracker.SucceedStep("c"), tracker.Succeed()); err != nil {
		require.ErrorIs(t, err, store.ErrUnavailable)
	}
	require.NoError(t, tr.Close(ctx))
	st := f.get(t, "doc")
	assert.Equal(t, store.StatusSuccess, st.Status)
	for _, s := range st.Steps {
		assert.Equal(t, store.StepSuccess, s.Status, "step %s ran and succeeded: never skipped", s.Name)
	}
	assert.JSONEq(t, `true`, string(st.Result["vector_indexed"]))
	assert.Len(t, f.reported(), 1)
}

// TestLostRepliesDuringAnOutage: the store applies writes whose replies
// are lost; nothing is applied twice and nothing is missing.
func TestLostRepliesDuringAnOutage(t *testing.T) {
	f := newFixture(t)
	fs := &faultyStore{Store: f.store}
	tr := f.tracker(t, fs)
	ctx := t.Context()
	require.NoError(t, tr.Apply(ctx, "doc", tracker.Create("a")))
	run, err := tr.Start(ctx, "doc", tracker.StartStep("a"))
	require.NoError(t, err)
	fs.set(always(lose))
	for i := range 3 {
		_ = run.Apply(ctx, tracker.RetryStep("a", fmt.Errorf("attempt %d", i+1)))
	}
	fs.set(nil)
	require.NoError(t, tr.Close(ctx))
	s, _ := f.get(t, "doc").Step("a")
	assert.Equal(t, 4, s.Attempt, "each retry applied once")
	assert.Equal(t, "attempt 3", s.Error)
}

// TestTaskLostDuringAnOutage: the store comes back without the task (a
// restart without persistence). The run's changes write it again; a run
// of a task created anew meanwhile is stale, and its changes are dropped.
func TestTaskLostDuringAnOutage(t *testing.T) {
	f := newFixture(t)
	fs := &faultyStore{Store: f.store}
	tr := f.tracker(t, fs)
	ctx := t.Context()
	for _, id := range []string{"kept", "renewed"} {
		require.NoError(t, tr.Apply(ctx, id, tracker.Create("a")))
	}
	kept, err := tr.Start(ctx, "kept", tracker.StartStep("a"))
	require.NoError(t, err)
	renewed, err := tr.Start(ctx, "renewed", tracker.StartStep("a"))
	require.NoError(t, err)
	lastSeen := f.get(t, "kept").Version

	fs.set(always(down))
	require.ErrorIs(t, kept.Apply(ctx, tracker.SucceedStep("a")), store.ErrUnavailable)
	require.ErrorIs(t, renewed.Apply(ctx, tracker.SucceedStep("a")), store.ErrUnavailable)
	for _, id := range []string{"kept", "renewed"} {
		require.NoError(t, f.mem.Delete(ctx, id)) // the store restarts empty
	}
	f.create(t, "renewed", "z") // a new task of the same id, from another process
	renewedState := f.get(t, "renewed")

	fs.set(nil)
	require.NoError(t, tr.Close(ctx))
	st := f.get(t, "kept")
	assert.Greater(t, st.Version, lastSeen, "versions go on for those who watched it")
	a, _ := st.Step("a")
	assert.Equal(t, store.StepSuccess, a.Status, "the task is written again, with the change that waited")
	assert.True(t, renewedState.Equal(f.get(t, "renewed")), "the task created anew is left alone")
	require.ErrorIs(t, f.reported()[len(f.reported())-1], store.ErrStale, "the stale run's dropped changes are reported")
	require.ErrorIs(t, renewed.Apply(ctx, tracker.Succeed()), store.ErrStale)
}

// TestCloseDropsWhatItCannotWrite: Close gives up at its deadline, drops
// the changes still waiting, reports them, and keeps nothing from then on.
func TestCloseDropsWhatItCannotWrite(t *testing.T) {
	f := newFixture(t)
	fs := &faultyStore{Store: f.store}
	tr, err := tracker.New(fs, tracker.WithErrorHandler(func(context.Context, error) {}))
	require.NoError(t, err)
	var dropped atomic.Int64
	tr2, err := tracker.New(fs, tracker.WithErrorHandler(func(_ context.Context, err error) {
		if errors.Is(err, context.DeadlineExceeded) {
			dropped.Add(1)
		}
	}))
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, tr.Apply(ctx, "doc", tracker.Create("a")))
	run, err := tr2.Start(ctx, "doc")
	require.NoError(t, err)

	fs.set(always(down))
	require.ErrorIs(t, run.Apply(ctx, tracker.StartStep("a")), store.ErrUnavailable)
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, tr2.Close(cctx), context.DeadlineExceeded)
	assert.Equal(t, int64(1), dropped.Load(), "the dropped change is reported with why")

	err = run.Apply(ctx, tracker.SucceedStep("a"))
	require.ErrorIs(t, err, store.ErrUnavailable)
	fs.set(nil)
	require.NoError(t, tr.Close(ctx))
	st := f.get(t, "doc")
	assert.Equal(t, store.StatusRunning, st.Status)
	a, _ := st.Step("a")
	assert.Equal(t, store.StepPending, a.Status, "nothing is kept after Close")
}

// TestWaitingIsBounded: at most 10,000 runs keep changes for the store;
// beyond, the changes of the run that waited longest are dropped and
// reported. The store stays down until they are, so that the background
// writer cannot write them first, whenever it runs.
func TestWaitingIsBounded(t *testing.T) {
	f := newFixture(t)
	fs := &faultyStore{Store: f.store}
	var failures atomic.Int64      // of task-0, reported
	dropped := make(chan error, 1) // task-0's changes, dropped
	tr, err := tracker.New(fs, tracker.WithClock(f.clock.Now), tracker.WithErrorHandler(func(_ context.Context, err error) {
		var te *tracker.Error
		if !errors.Is(err, store.ErrUnavailable) || !errors.As(err, &te) || te.ID != "task-0" {
			return
		}
		if strings.Contains(err.Error(), "dropped") {
			select {
			case dropped <- err:
			default: // never hold up the tracker
			}
			return
		}
		failures.Add(1)
	}))
	require.NoError(t, err)
	ctx := t.Context()
	const n = 10_001
	runs := make([]*tracker.Run, n)
	for i := range runs {
		id := fmt.Sprint("task-", i)
		require.NoError(t, tr.Apply(ctx, id, tracker.Create("a")))
		runs[i], err = tr.Start(ctx, id)
		require.NoError(t, err)
	}
	fs.set(always(down))
	for _, run := range runs {
		require.ErrorIs(t, run.Apply(ctx, tracker.StartStep("a")), store.ErrUnavailable)
	}
	closed := make(chan error, 1)
	go func() { closed <- tr.Close(ctx) }() // which wakes the writer
	assert.Contains(t, (<-dropped).Error(), "more than 10000 tasks wait", "task-0, which waited longest, was dropped")
	fs.set(nil)
	require.NoError(t, <-closed, "once the store is back, the other changes are written")
	assert.Equal(t, int64(1), failures.Load(), "the first failure of task-0 is reported")
	a, _ := f.get(t, "task-0").Step("a")
	assert.Equal(t, store.StepPending, a.Status)
	a, _ = f.get(t, "task-1").Step("a")
	assert.Equal(t, store.StepRunning, a.Status)
}

// TestWaitingEndsAtTheTTL: changes that wait longer than the tasks' time
// to live are dropped: the task would have expired anyway.
func TestWaitingEndsAtTheTTL(t *testing.T) {
	f := newFixture(t)
	fs := &faultyStore{Store: f.store}
	droppedCh := make(chan error, 1)
	tr, err := tracker.New(fs, tracker.WithTTL(100*time.Millisecond), tracker.WithErrorHandler(func(_ context.Context, err error) {
		if strings.Contains(err.Error(), "dropped") {
			select {
			case droppedCh <- err:
			default:
			}
		}
	}))
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, tr.Apply(ctx, "doc", tracker.Create("a")))
	run, err := tr.Start(ctx, "doc")
	require.NoError(t, err)
	fs.set(always(down))
	require.ErrorIs(t, run.Apply(ctx, tracker.StartStep("a")), store.ErrUnavailable)
	err = <-droppedCh
	assert.Contains(t, err.Error(), "time to live")
	require.NoError(t, tr.Close(ctx), "nothing is left waiting")
}
