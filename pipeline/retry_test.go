package pipeline_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

func TestRetryRecordsEachAttempt(t *testing.T) {
	f := newFixture(t)
	type seen struct {
		attempt int
		err     string
	}
	var attempts []seen
	p := newPipeline(t,
		pipeline.Step("embed", func(_ context.Context, task *pipeline.Task) error {
			s := step(t, f.get(t, task.ID()), "embed")
			attempts = append(attempts, seen{s.Attempt, s.Error})
			task.Detail("attempt", len(attempts))
			if len(attempts) < 3 {
				return errors.New("attempt " + strconv.Itoa(len(attempts)) + " refused")
			}
			return nil
		}, pipeline.Retry(5, 0, 0)),
	)
	f.create(t, p, "doc")

	require.NoError(t, p.Run(t.Context(), f.tr, "doc"))

	assert.Equal(t, []seen{{1, ""}, {2, "attempt 1 refused"}, {3, "attempt 2 refused"}}, attempts,
		"each attempt is recorded, with the last attempt's error, while the step is retried")
	s := step(t, f.get(t, "doc"), "embed")
	assert.Equal(t, store.StepSuccess, s.Status)
	assert.Equal(t, 3, s.Attempt)
	assert.Empty(t, s.Error, "a step that succeeds in the end has no error")
	assert.Empty(t, f.reported())
}

func TestRetryUsesEveryAttempt(t *testing.T) {
	f := newFixture(t)
	const attempts = 9
	calls := 0
	p := newPipeline(t, pipeline.Step("embed", func(context.Context, *pipeline.Task) error {
		calls++
		return errors.New("refused")
	}, pipeline.Retry(attempts, 0, 0)))
	f.create(t, p, "doc")

	err := p.Run(t.Context(), f.tr, "doc")
	require.EqualError(t, err, `pipeline: step "embed": refused`, "the last attempt's error fails the step")
	assert.Equal(t, attempts, calls)
	s := step(t, f.get(t, "doc"), "embed")
	assert.Equal(t, store.StepFailed, s.Status)
	assert.Equal(t, attempts, s.Attempt, "every attempt is counted")
}

func TestRetryEndsEarly(t *testing.T) {
	t.Run("Panic", func(t *testing.T) {
		f := newFixture(t)
		calls := 0
		p := newPipeline(t, pipeline.Step("a", func(context.Context, *pipeline.Task) error {
			calls++
			panic("bug")
		}, pipeline.Retry(3, 0, 0)))
		f.create(t, p, "doc")
		var pe *pipeline.PanicError
		require.ErrorAs(t, p.Run(t.Context(), f.tr, "doc"), &pe)
		assert.Equal(t, 1, calls, "a panic is a bug, not retried")
		assert.Equal(t, 1, step(t, f.get(t, "doc"), "a").Attempt)
	})
	t.Run("CanceledBeforeTheWait", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		// The run is canceled once the retry is recorded: the wait of an
		// hour before it ends at once.
		hooked := &puts{hook: func(w store.Write) {
			if s, ok := w.State.Step("a"); ok && s.Attempt == 2 {
				cancel()
			}
		}}
		f := newFixtureWith(t, func(s store.Store) store.Store { hooked.Store = s; return hooked })
		calls := 0
		p := newPipeline(t,
			pipeline.Step("a", func(context.Context, *pipeline.Task) error {
				calls++
				return errors.New("refused")
			}, pipeline.Retry(3, time.Hour, time.Hour)),
			pipeline.Step("b", notRun(t)),
		)
		f.create(t, p, "doc")
		require.ErrorIs(t, p.Run(ctx, f.tr, "doc"), context.Canceled)
		assert.Equal(t, 1, calls, "no attempt after the run is canceled")
		st := f.get(t, "doc")
		assert.Equal(t, store.StatusCanceled, st.Status)
		a := step(t, st, "a")
		assert.Equal(t, store.StepFailed, a.Status)
		assert.Equal(t, "refused", a.Error)
		assert.Equal(t, store.StepSkipped, step(t, st, "b").Status)
	})
}

func TestTimeoutBoundsEachAttempt(t *testing.T) {
	f := newFixture(t)
	calls := 0
	p := newPipeline(t,
		pipeline.Step("slow", func(ctx context.Context, _ *pipeline.Task) error {
			calls++
			if calls == 2 {
				return nil
			}
			<-ctx.Done() // the step's own timeout, not the run's, ends it
			return ctx.Err()
		}, pipeline.Timeout(time.Millisecond), pipeline.Retry(2, 0, 0)),
		pipeline.Step("stuck", func(ctx context.Context, _ *pipeline.Task) error {
			<-ctx.Done()
			return ctx.Err()
		}, pipeline.Timeout(time.Millisecond)),
	)
	f.create(t, p, "doc")

	err := p.Run(t.Context(), f.tr, "doc")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	st := f.get(t, "doc")
	slow := step(t, st, "slow")
	assert.Equal(t, store.StepSuccess, slow.Status, "an attempt that timed out is retried")
	assert.Equal(t, 2, slow.Attempt)
	assert.Equal(t, store.StatusFailed, st.Status, "a step's timeout is the step's failure")
	assert.Equal(t, "step timed out after 1ms: context deadline exceeded", st.ErrorMessage)
	assert.Equal(t, st.ErrorMessage, step(t, st, "stuck").Error)
	assert.JSONEq(t, `"stuck"`, string(st.ErrorDetails[pipeline.FailedStepKey]))
	assert.JSONEq(t, `"context.deadlineExceededError"`, string(st.ErrorDetails[tracker.ExceptionTypeKey]))
}
