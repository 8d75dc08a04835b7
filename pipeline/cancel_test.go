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

		require.ErrorIs(t, p.Run(ctx, f.tr, "doc"), context.DeadlineExceeded)
		st := f.get(t, "doc")
		assert.Equal(t, store.StatusFailed, st.Status, "work out of time has failed")
		assert.Equal(t, "context deadline exceeded", st.ErrorMessage)
		assert.Equal(t, store.StepSkipped, step(t, st, "a").Status)
	})
	t.Run("MidStep", func(t *testing.T) {
		f := newFixture(t)
		late := errors.New("document took too long")
		ctx, cancel := context.WithTimeoutCause(t.Context(), time.Millisecond, late)
		defer cancel()
		p := newPipeline(t,
			pipeline.Step("a", func(ctx context.Context, _ *pipeline.Task) error {
				<-ctx.Done()
				return ctx.Err()
			}, pipeline.Timeout(time.Hour)),
			pipeline.Step("b", notRun(t)),
		)

		err := p.Run(ctx, f.tr, "doc")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, err, late)
		st := f.get(t, "doc")
		assert.Equal(t, store.StatusFailed, st.Status)
		assert.Equal(t, "document took too long", st.ErrorMessage)
		assert.Equal(t, "context deadline exceeded", step(t, st, "a").Error, "the run's deadline is not the step's timeout")
		assert.Equal(t, store.StepSkipped, step(t, st, "b").Status)
	})
}
