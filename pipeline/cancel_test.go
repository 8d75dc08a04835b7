package pipeline_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

func TestCanceledBetweenSteps(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	p := newPipeline(t,
		pipeline.Step("a", func(context.Context, *pipeline.Task) error {
			cancel()
			return nil // a finished its work: it succeeded
		}),
		pipeline.Step("b", notRun(t)),
		pipeline.Step("c", notRun(t)),
	)
	f.create(t, p, "doc")

	err := p.Run(ctx, f.tr, "doc")
	require.ErrorIs(t, err, context.Canceled)
	st := f.get(t, "doc")
	assert.Equal(t, store.StatusCanceled, st.Status)
	assert.Equal(t, "context canceled", st.ErrorMessage)
	assert.Equal(t, map[string]store.StepStatus{
		"a": store.StepSuccess, "b": store.StepSkipped, "c": store.StepSkipped,
	}, statuses(st))
	assert.Empty(t, f.reported(), "recording the end does not use the canceled context")
}

func TestCanceledMidStep(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	gone := errors.New("client went away")
	started := make(chan struct{})
	go func() {
		<-started
		cancel(gone)
	}()
	p := newPipeline(t,
		pipeline.Step("a", ok),
		pipeline.Step("b", func(ctx context.Context, _ *pipeline.Task) error {
			close(started)
			<-ctx.Done() // the running step sees the cancellation
			return ctx.Err()
		}, pipeline.Retry(3, 0, 0)),
		pipeline.Step("c", notRun(t)),
	)
	f.create(t, p, "doc")

	err := p.Run(ctx, f.tr, "doc")
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, gone, "the run's error carries the cause")
	st := f.get(t, "doc")
	assert.Equal(t, store.StatusCanceled, st.Status, "a step that fails because the run was canceled cancels the task")
	assert.Equal(t, "client went away", st.ErrorMessage)
	assert.Empty(t, st.ErrorDetails)
	b := step(t, st, "b")
	assert.Equal(t, store.StepFailed, b.Status)
	assert.Equal(t, "context canceled", b.Error)
	assert.Equal(t, 1, b.Attempt, "a canceled attempt is not retried")
	assert.Equal(t, map[string]store.StepStatus{
		"a": store.StepSuccess, "b": store.StepFailed, "c": store.StepSkipped,
	}, statuses(st))
}

func TestCanceledBeforeTheRun(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p := newPipeline(t, pipeline.Step("a", notRun(t)), pipeline.Step("b", notRun(t)))
	f.create(t, p, "doc")

	require.ErrorIs(t, p.Run(ctx, f.tr, "doc"), context.Canceled)
	st := f.get(t, "doc")
	assert.Equal(t, store.StatusCanceled, st.Status, "the task is recorded, not left pending")
	assert.Equal(t, map[string]store.StepStatus{"a": store.StepSkipped, "b": store.StepSkipped}, statuses(st))
}

func TestDeadlineFailsTheTask(t *testing.T) {
	t.Run("BetweenSteps", func(t *testing.T) {
		f := newFixture(t)
		ctx, cancel := context.WithDeadline(t.Context(), time.Unix(0, 0))
		defer cancel()
		p := newPipeline(t, pipeline.Step("a", notRun(t)))
		f.create(t, p, "doc")

		require.ErrorIs(t, p.Run(ctx, f.tr, "doc"), context.DeadlineExceeded)
		st := f.get(t, "doc")
		assert.Equal(t, store.StatusFailed, st.Status, "work out of time has failed")
		assert.Equal(t, "context deadline exceeded", st.ErrorMessage)
		assert.Equal(t, store.StepSkipped, step(t, st, "a").Status)
	})
	t.Run("MidStep", func(t *testing.T) {
		f := newFixture(t)
		late := errors.New("document took too long")
		// Long enough for step a to start first on a loaded machine:
		// a deadline before it would skip it (see BetweenSteps).
		ctx, cancel := context.WithTimeoutCause(t.Context(), 200*time.Millisecond, late)
		defer cancel()
		started := false
		p := newPipeline(t,
			pipeline.Step("a", func(ctx context.Context, _ *pipeline.Task) error {
				started = ctx.Err() == nil
				<-ctx.Done()
				return ctx.Err()
			}, pipeline.Timeout(time.Hour)),
			pipeline.Step("b", notRun(t)),
		)
		f.create(t, p, "doc")

		err := p.Run(ctx, f.tr, "doc")
		require.True(t, started, "step a started before the deadline")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, err, late)
		st := f.get(t, "doc")
		assert.Equal(t, store.StatusFailed, st.Status)
		assert.Equal(t, "document took too long", st.ErrorMessage)
		assert.Equal(t, "context deadline exceeded", step(t, st, "a").Error, "the run's deadline is not the step's timeout")
		assert.Equal(t, store.StepSkipped, step(t, st, "b").Status)
	})
}

// TestCancelRequested: another process asks for the task's cancellation
// while a step runs. The step's context is canceled, no later step runs,
// what was done stays recorded and the task ends canceled.
func TestCancelRequested(t *testing.T) {
	f := newFixture(t)
	other, err := tracker.New(f.store)
	require.NoError(t, err)
	defer other.Close(context.Background())
	started := make(chan struct{})
	p := newPipeline(t,
		pipeline.Step("a", ok),
		pipeline.Step("b", func(ctx context.Context, _ *pipeline.Task) error {
			close(started)
			<-ctx.Done()
			return context.Cause(ctx)
		}, pipeline.Retry(3, 0, 0)),
		pipeline.Step("c", notRun(t)),
	)
	f.create(t, p, "doc")
	go func() {
		<-started
		assert.NoError(t, other.Apply(context.Background(), "doc", tracker.RequestCancel("wrong file")))
	}()

	err = p.Run(t.Context(), f.tr, "doc")
	require.ErrorIs(t, err, tracker.ErrCancelRequested)
	require.ErrorIs(t, err, context.Canceled)
	st := f.get(t, "doc")
	assert.Equal(t, store.StatusCanceled, st.Status)
	assert.Equal(t, "cancellation requested: wrong file", st.ErrorMessage)
	assert.Equal(t, "wrong file", st.CancelReason)
	assert.Equal(t, map[string]store.StepStatus{
		"a": store.StepSuccess, "b": store.StepFailed, "c": store.StepSkipped,
	}, statuses(st))
	assert.Equal(t, "cancellation requested: wrong file", step(t, st, "b").Error)
	assert.Equal(t, 1, step(t, st, "b").Attempt, "a canceled step is not retried")
	assert.Empty(t, f.reported())
}

// TestCancelRequestedStepFinishes: a step that does not watch its context
// finishes its work, which is recorded; the next step does not run.
func TestCancelRequestedStepFinishes(t *testing.T) {
	f := newFixture(t)
	requested := make(chan struct{})
	p := newPipeline(t,
		pipeline.Step("a", func(ctx context.Context, _ *pipeline.Task) error {
			require.NoError(t, f.tr.Apply(context.Background(), "doc", tracker.RequestCancel("")))
			<-ctx.Done() // the run learns of it
			close(requested)
			return nil // and finishes its work anyway
		}),
		pipeline.Step("b", notRun(t)),
	)
	f.create(t, p, "doc")
	err := p.Run(t.Context(), f.tr, "doc")
	<-requested
	require.ErrorIs(t, err, tracker.ErrCancelRequested)
	st := f.get(t, "doc")
	assert.Equal(t, store.StatusCanceled, st.Status)
	assert.Equal(t, map[string]store.StepStatus{"a": store.StepSuccess, "b": store.StepSkipped}, statuses(st))
}

// TestCanceledBeforeStart: a task canceled while pending never starts.
func TestCanceledBeforeStart(t *testing.T) {
	f := newFixture(t)
	p := newPipeline(t, pipeline.Step("a", notRun(t)))
	f.create(t, p, "doc")
	require.NoError(t, f.tr.Apply(t.Context(), "doc", tracker.RequestCancel("not needed")))
	err := p.Run(t.Context(), f.tr, "doc")
	require.ErrorIs(t, err, store.ErrTerminal)
	assert.Equal(t, store.StatusCanceled, f.get(t, "doc").Status)
}
