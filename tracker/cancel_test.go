package tracker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

func TestRequestCancel(t *testing.T) {
	f := newFixture(t, tracker.WithLease(time.Minute))
	ctx := t.Context()

	// A pending task has no work to stop: it is canceled at once, and
	// never starts.
	f.create(t, "pending", "a")
	f.clock.Advance(time.Second)
	require.NoError(t, f.tr.Apply(ctx, "pending", tracker.RequestCancel("superseded")))
	st := f.get(t, "pending")
	assert.Equal(t, store.StatusCanceled, st.Status)
	assert.Equal(t, "superseded", st.ErrorMessage)
	assert.Equal(t, "superseded", st.CancelReason)
	assert.Equal(t, t0.Add(time.Second), st.CancelRequestedAt)
	assert.Equal(t, store.StepSkipped, st.Steps[0].Status)
	_, err := f.tr.Start(ctx, "pending")
	require.ErrorIs(t, err, store.ErrTerminal)

	// A running task records the request, and its work goes on until it
	// learns of it.
	run := f.start(t, "running")
	require.NoError(t, run.Apply(ctx, tracker.StartStep("a")))
	require.NoError(t, f.tr.Apply(ctx, "running", tracker.RequestCancel("")))
	st = f.get(t, "running")
	assert.Equal(t, store.StatusRunning, st.Status)
	assert.False(t, st.CancelRequestedAt.IsZero())

	// Asking again is the same as asking once: no write.
	for _, id := range []string{"pending", "running"} {
		before := f.get(t, id)
		puts := f.store.puts.Load()
		require.NoError(t, f.tr.Apply(ctx, id, tracker.RequestCancel("again")), id)
		assert.Equal(t, puts, f.store.puts.Load(), "%s: nothing written", id)
		assert.True(t, before.Equal(f.get(t, id)), id)
	}

	// The work stops and records the task canceled.
	require.NoError(t, run.Apply(ctx, tracker.Cancel(errors.New("canceled on request"))))
	require.NoError(t, f.tr.Apply(ctx, "running", tracker.RequestCancel("")), "a task canceled on request")

	// A task that ended otherwise cannot be canceled.
	done := f.start(t, "done")
	require.NoError(t, done.Apply(ctx, tracker.Succeed()))
	require.ErrorIs(t, f.tr.Apply(ctx, "done", tracker.RequestCancel("")), store.ErrTerminal)
	require.ErrorIs(t, f.tr.Apply(ctx, "unknown", tracker.RequestCancel("")), store.ErrNotFound)

	// An abandoned task's work is dead: it is canceled at once.
	dead := f.start(t, "dead")
	require.NoError(t, dead.Apply(ctx, tracker.StartStep("a")))
	f.clock.Advance(time.Minute + time.Second)
	require.NoError(t, f.tr.Apply(ctx, "dead", tracker.RequestCancel("stuck")))
	assert.Equal(t, store.StatusCanceled, f.get(t, "dead").Status)

	// Alone, and by id.
	require.ErrorIs(t, f.tr.Apply(ctx, "x", tracker.Create(), tracker.RequestCancel("")), store.ErrInvalidInput)
	require.ErrorIs(t, run.Apply(ctx, tracker.RequestCancel("")), store.ErrInvalidInput)
}

// TestWatchCancel: the work of a Run learns of a cancel request made by
// another Tracker (another process), through the store's watch, and of a
// retry that made its attempt stale.
func TestWatchCancel(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	other := f.tracker(t, f.store)

	run := f.start(t, "doc")
	work, stop := run.WatchCancel(ctx)
	defer stop()
	require.NoError(t, run.Apply(ctx, tracker.StartStep("a")))
	select {
	case <-work.Done():
		t.Fatal("canceled before any request")
	default:
	}
	require.NoError(t, other.Apply(ctx, "doc", tracker.RequestCancel("operator: wrong file")))
	<-work.Done()
	require.ErrorIs(t, context.Cause(work), tracker.ErrCancelRequested)
	require.EqualError(t, context.Cause(work), "cancellation requested: operator: wrong file")

	// The work records what it did, and the task ends canceled.
	require.NoError(t, run.Apply(ctx, tracker.SucceedStep("a"), tracker.Cancel(context.Cause(work))))
	st := f.get(t, "doc")
	assert.Equal(t, store.StatusCanceled, st.Status)
	assert.Equal(t, store.StepSuccess, st.Steps[0].Status)
	assert.Equal(t, store.StepSkipped, st.Steps[1].Status)

	// A Run whose attempt was retried by another process is told so.
	dead := f.start(t, "stale")
	work, stop2 := dead.WatchCancel(ctx)
	defer stop2()
	require.NoError(t, other.Apply(ctx, "stale", tracker.Cancel(errors.New("by hand")), tracker.Retry()))
	<-work.Done()
	require.ErrorIs(t, context.Cause(work), store.ErrStale)

	// Stopping the watch cancels the work's context and frees the watch.
	live := f.start(t, "live")
	work, stop3 := live.WatchCancel(ctx)
	stop3()
	<-work.Done()
	require.ErrorIs(t, context.Cause(work), context.Canceled)
}

// getOnly hides the Watcher of the store it wraps, and signals a Get on
// got to a receiver that waits.
type getOnly struct {
	store.Store
	got chan struct{}
}

func (s getOnly) Get(ctx context.Context, id string) (store.State, error) {
	st, err := s.Store.Get(ctx, id)
	select {
	case s.got <- struct{}{}:
	default: // nobody waits
	}
	return st, err
}

// TestWatchCancelPolls: with a store that cannot watch, a Run reads its
// task every poll interval.
func TestWatchCancelPolls(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	s := getOnly{Store: f.mem, got: make(chan struct{})}
	tr := f.tracker(t, s, tracker.WithPollInterval(time.Millisecond))
	require.NoError(t, tr.Apply(ctx, "doc", tracker.Create("a")))
	run, err := tr.Start(ctx, "doc")
	require.NoError(t, err)
	work, stop := run.WatchCancel(ctx)
	defer stop()
	<-s.got // the first read, and
	<-s.got // another: the Run polls
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.RequestCancel("")))
	<-work.Done()
	require.ErrorIs(t, context.Cause(work), tracker.ErrCancelRequested)
	require.EqualError(t, context.Cause(work), "cancellation requested")
}

func TestPollIntervalOption(t *testing.T) {
	f := newFixture(t)
	_, err := tracker.New(f.mem, tracker.WithPollInterval(0))
	require.ErrorContains(t, err, "WithPollInterval")
	_, err = tracker.New(f.mem, tracker.WithOnEnd(nil))
	require.ErrorContains(t, err, "WithOnEnd")
}

// TestOnEnd: the hook hears of each task a Tracker's write ended, once,
// whichever way it ended: through a Run, by id, or by a rescue.
func TestOnEnd(t *testing.T) {
	var mu sync.Mutex
	var ended []string
	hook := tracker.WithOnEnd(func(_ context.Context, st store.State) {
		mu.Lock()
		defer mu.Unlock()
		ended = append(ended, fmt.Sprintf("%s %s %d", st.ID, st.Status, st.Attempt))
	})
	f := newFixture(t, hook)
	ctx := t.Context()

	run := f.start(t, "run")
	require.NoError(t, run.Apply(ctx, tracker.StartStep("a")))
	require.NoError(t, run.Apply(ctx, tracker.SucceedStep("a"), tracker.Succeed()))
	require.ErrorIs(t, run.Apply(ctx, tracker.Succeed()), store.ErrTerminal)
	f.create(t, "byid")
	require.NoError(t, f.tr.Apply(ctx, "byid", tracker.RequestCancel("no")))
	require.NoError(t, f.tr.Apply(ctx, "byid", tracker.RequestCancel("no")))
	require.NoError(t, f.tr.Apply(ctx, "byid", tracker.Retry()))
	require.NoError(t, f.tr.Apply(ctx, "byid", tracker.Fail(errors.New("boom"), nil)))

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"run success 1", "byid canceled 1", "byid failed 2"}, ended)
}

// TestPreviousAttempts: a retry keeps the outcome of the attempt it ends,
// the latest store.MaxPreviousAttempts of them.
func TestPreviousAttempts(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	run := f.start(t, "doc")
	f.clock.Advance(time.Second)
	require.NoError(t, run.Apply(ctx, tracker.Fail(errors.New("timeout"), map[string]any{"exception_type": "TimeoutError"})))
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Retry()))
	st := f.get(t, "doc")
	require.Len(t, st.PreviousAttempts, 1)
	assert.Equal(t, store.Attempt{
		Attempt: 1, Status: store.StatusFailed, StartedAt: t0, CompletedAt: t0.Add(time.Second),
		ErrorMessage: "timeout", ErrorDetails: map[string]json.RawMessage{"exception_type": json.RawMessage(`"TimeoutError"`)},
	}, st.PreviousAttempts[0])

	for range store.MaxPreviousAttempts + 2 {
		require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Cancel(nil)))
		require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Retry()))
	}
	st = f.get(t, "doc")
	require.Len(t, st.PreviousAttempts, store.MaxPreviousAttempts)
	assert.Equal(t, st.Attempt-1, st.PreviousAttempts[store.MaxPreviousAttempts-1].Attempt, "the latest kept")
	assert.Equal(t, store.StatusCanceled, st.PreviousAttempts[0].Status)
}
