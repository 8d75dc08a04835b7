package pipeline_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// sleeper records the waits asked of it and returns at once.
type sleeper struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeper) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits = append(s.waits, d)
	return ctx.Err()
}

func (s *sleeper) asked() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

func TestRetryRecordsEachAttempt(t *testing.T) {
	f := newFixture(t)
	var sl sleeper
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
		}, pipeline.Retry(5, 100*time.Millisecond, time.Second)),
		pipeline.WithSleep(sl.sleep),
	)

	require.NoError(t, p.Run(t.Context(), f.tr, "doc"))

	assert.Equal(t, []seen{{1, ""}, {2, "attempt 1 refused"}, {3, "attempt 2 refused"}}, attempts,
		"each attempt is recorded, with the last attempt's error, while the step is retried")
	s := step(t, f.get(t, "doc"), "embed")
	assert.Equal(t, store.StepSuccess, s.Status)
	assert.Equal(t, 3, s.Attempt)
	assert.Empty(t, s.Error, "a step that succeeds in the end has no error")
	waits := sl.asked()
	require.Len(t, waits, 2, "one wait before each retry")
	assert.GreaterOrEqual(t, waits[0], 50*time.Millisecond)
	assert.LessOrEqual(t, waits[0], 100*time.Millisecond)
	assert.GreaterOrEqual(t, waits[1], 100*time.Millisecond)
	assert.LessOrEqual(t, waits[1], 200*time.Millisecond)
}

func TestRetryBackoffGrowsWithJitter(t *testing.T) {
	f := newFixture(t)
	var sl sleeper
	const attempts = 9
	p := newPipeline(t,
		pipeline.Step("embed", fail(errors.New("refused")), pipeline.Retry(attempts, 100*time.Millisecond, time.Second)),
		pipeline.WithSleep(sl.sleep),
	)
	p2 := newPipeline(t,
		pipeline.Step("flat", fail(errors.New("refused")), pipeline.Retry(attempts, time.Second, time.Second)),
		pipeline.WithSleep(sl.sleep),
	)

	err := p.Run(t.Context(), f.tr, "doc")
	require.EqualError(t, err, `pipeline: step "embed": refused`, "the last attempt's error fails the step")
	s := step(t, f.get(t, "doc"), "embed")
	assert.Equal(t, store.StepFailed, s.Status)
	assert.Equal(t, attempts, s.Attempt, "every attempt is counted")

	waits := sl.asked()
	require.Len(t, waits, attempts-1)
	nominal := []int64{100, 200, 400, 800, 1000, 1000, 1000, 1000} // ms: doubling, capped
	for i, w := range waits {
		d := time.Duration(nominal[i]) * time.Millisecond
		assert.GreaterOrEqual(t, w, d/2, "wait %d", i+1)
		assert.LessOrEqual(t, w, d, "wait %d", i+1)
		if i > 0 && i < 4 {
			assert.GreaterOrEqual(t, w, waits[i-1], "waits grow until the cap")
		}
	}

	require.Error(t, p2.Run(t.Context(), f.tr, "flat"))
	waits = sl.asked()[attempts-1:]
	require.Len(t, waits, attempts-1)
	distinct := make(map[time.Duration]bool)
	for _, w := range waits {
		distinct[w] = true
	}
	assert.Greater(t, len(distinct), 1, "waits of the same nominal length are jittered")
}

func TestRetryEndsEarly(t *testing.T) {
	t.Run("Panic", func(t *testing.T) {
		f := newFixture(t)
		calls := 0
		p := newPipeline(t, pipeline.Step("a", func(context.Context, *pipeline.Task) error {
			calls++
			panic("bug")
		}, pipeline.Retry(3, 0, 0)))
		var pe *pipeline.PanicError
		require.ErrorAs(t, p.Run(t.Context(), f.tr, "doc"), &pe)
		assert.Equal(t, 1, calls, "a panic is a bug, not retried")
		assert.Equal(t, 1, step(t, f.get(t, "doc"), "a").Attempt)
	})
	t.Run("CanceledDuringWait", func(t *testing.T) {
		f := newFixture(t)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		calls := 0
		p := newPipeline(t,
			pipeline.Step("a", func(context.Context, *pipeline.Task) error {
				calls++
				return errors.New("refused")
			}, pipeline.Retry(3, time.Hour, time.Hour)),
			pipeline.Step("b", notRun(t)),
			pipeline.WithSleep(func(ctx context.Context, _ time.Duration) error {
				cancel()
				return ctx.Err()
			}),
		)
		require.ErrorIs(t, p.Run(ctx, f.tr, "doc"), context.Canceled)
		assert.Equal(t, 1, calls, "no attempt after the run is canceled")
		st := f.get(t, "doc")
		assert.Equal(t, store.StatusCanceled, st.Status)
		a := step(t, st, "a")
		assert.Equal(t, store.StepFailed, a.Status)
		assert.Equal(t, "refused", a.Error)
		assert.Equal(t, store.StepSkipped, step(t, st, "b").Status)
	})
	t.Run("DefaultSleep", func(t *testing.T) {
		f := newFixture(t)
		calls := 0
		p := newPipeline(t, pipeline.Step("a", func(context.Context, *pipeline.Task) error {
			calls++
			if calls == 1 {
				return errors.New("refused")
			}
			return nil
		}, pipeline.Retry(2, 0, 0)))
		require.NoError(t, p.Run(t.Context(), f.tr, "doc"))
		assert.Equal(t, 2, calls)
	})
}

func TestTimeoutBoundsEachAttempt(t *testing.T) {
	f := newFixture(t)
	var sl sleeper
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
		pipeline.WithSleep(sl.sleep),
	)

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
