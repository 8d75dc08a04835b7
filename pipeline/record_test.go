package pipeline_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

var errDown = errors.Join(store.ErrUnavailable, errors.New("connection refused"))

// flaky is a store that does not answer while down is set. If lose is set,
// the writes it gets while down are applied but answered with an error,
// as when the reply is lost.
type flaky struct {
	store.Store
	down atomic.Bool
	lose bool
}

func (s *flaky) Get(ctx context.Context, id string) (store.State, error) {
	if s.down.Load() {
		return store.State{}, errDown
	}
	return s.Store.Get(ctx, id)
}

func (s *flaky) Put(ctx context.Context, w store.Write) error {
	if !s.down.Load() {
		return s.Store.Put(ctx, w)
	}
	if s.lose {
		_ = s.Store.Put(ctx, w)
	}
	return errDown
}

// setResult returns a step that sets the result field name to value.
func setResult(name string, value any) pipeline.Func {
	return func(_ context.Context, task *pipeline.Task) error {
		task.SetResult(map[string]any{name: value})
		return nil
	}
}

// TestStoreOutageMidRun takes the store down from inside a step and brings
// it back from a later one: the run goes on as if nothing happened, and
// once the tracker has written what it kept, the task records what the
// steps did.
func TestStoreOutageMidRun(t *testing.T) {
	for _, lose := range []bool{false, true} {
		name := map[bool]string{false: "WritesRefused", true: "RepliesLost"}[lose]
		t.Run(name, func(t *testing.T) {
			fl := &flaky{lose: lose}
			f := newFixtureWith(t, func(s store.Store) store.Store { fl.Store = s; return fl })
			p := newPipeline(t,
				pipeline.Step("a", setResult("a", 1)),
				pipeline.Step("b", func(ctx context.Context, task *pipeline.Task) error {
					fl.down.Store(true)
					task.Progress(1, 4, "b")
					return setResult("b", 2)(ctx, task)
				}),
				pipeline.Group(
					pipeline.Step("c1", setResult("c1", 3)),
					pipeline.Step("c2", fail(errors.New("c2 broke")), pipeline.Optional()),
				),
				pipeline.Step("d", func(ctx context.Context, task *pipeline.Task) error {
					fl.down.Store(false)
					task.Progress(3, 4, "d")
					return setResult("d", 4)(ctx, task)
				}),
				pipeline.Step("e", setResult("e", 5)),
			)
			f.create(t, p, "doc")

			require.NoError(t, p.Run(t.Context(), f.tr, "doc"), "the outage does not fail the work")
			require.NotEmpty(t, f.reported(), "the outage is reported")
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			require.NoError(t, f.tr.Close(ctx), "the tracker writes what it kept")

			st := f.get(t, "doc")
			assert.Equal(t, store.StatusSuccess, st.Status)
			assert.Equal(t, 1, st.Attempt)
			assert.Equal(t, map[string]store.StepStatus{
				"a": store.StepSuccess, "b": store.StepSuccess, "c1": store.StepSuccess, "c2": store.StepFailed,
				"d": store.StepSuccess, "e": store.StepSuccess,
			}, statuses(st), "every step's true status, none that ran skipped")
			assert.Equal(t, "c2 broke", step(t, st, "c2").Error)
			for _, s := range st.Steps {
				assert.Equal(t, t0, s.StartedAt, "%s has its start", s.Name)
				assert.Equal(t, 1, s.Attempt, s.Name)
			}
			assert.Equal(t, store.Progress{Done: 3, Total: 4, Message: "d"}, st.Progress)
			want := map[string]string{"a": "1", "b": "2", "c1": "3", "d": "4", "e": "5"}
			require.Len(t, st.Result, len(want))
			for k, v := range want {
				assert.JSONEq(t, v, string(st.Result[k]), "result %s", k)
			}
		})
	}
}

func TestStoreDownDoesNotFailTheWork(t *testing.T) {
	fl := &flaky{}
	f := newFixtureWith(t, func(s store.Store) store.Store { fl.Store = s; return fl })
	ran := 0
	count := func(_ context.Context, task *pipeline.Task) error {
		ran++
		task.Progress(int64(ran), 3, "")
		task.SetResult(map[string]any{"n": ran})
		return nil
	}
	p := newPipeline(t, pipeline.Step("a", count), pipeline.Step("b", count), pipeline.Step("c", count))
	f.create(t, p, "doc")
	fl.down.Store(true)

	require.NoError(t, p.Run(t.Context(), f.tr, "doc"), "the work succeeded, whatever the store did")
	assert.Equal(t, 3, ran, "every step ran")

	broken := errors.New("broken")
	p = newPipeline(t, pipeline.Step("a", fail(broken)))
	err := p.Run(t.Context(), f.tr, "other")
	require.ErrorIs(t, err, broken, "a failing step still fails the run, even if its start could not be checked")

	closed, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, f.tr.Close(closed), context.Canceled, "what was kept is dropped")
	reported := f.reported()
	require.NotEmpty(t, reported, "the outage is reported to the error handler")
	for i, err := range reported {
		if !errors.Is(err, context.Canceled) { // dropped by Close
			require.ErrorIs(t, err, store.ErrUnavailable)
		}
		var te *tracker.Error
		require.ErrorAs(t, err, &te, "errors are reported by the tracker, not by the pipeline")
		for _, other := range reported[:i] {
			require.NotSame(t, other, err, "each error is reported once")
		}
	}
}

// zombieStep is the first step of a run that is made stale while it runs:
// it waits for release, then, if records, reports progress, which is
// refused and must cancel its context.
func zombieStep(t *testing.T, entered, release chan struct{}, records bool, cause *error) pipeline.Func {
	return func(ctx context.Context, task *pipeline.Task) error {
		close(entered)
		<-release
		if !records {
			return nil
		}
		task.Progress(1, 3, "from the stale run")
		select {
		case <-ctx.Done():
			*cause = context.Cause(ctx)
			return ctx.Err()
		case <-time.After(10 * time.Second):
			t.Error("the step's context was not canceled")
			return nil
		}
	}
}

// TestStaleRunStops runs a task, cancels and retries it while its first
// step runs, and runs attempt 2 to its end: the first run, a zombie, then
// records nothing and runs no further step.
func TestStaleRunStops(t *testing.T) {
	for _, tc := range []struct {
		name    string
		records bool // the step records after the retry, rather than return
		last    bool // the step is the zombie's last: its end is the task's
	}{
		{"StepReturns", false, false},
		{"StepRecords", true, false},
		{"LastStepReturns", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logged := captureLogs(t)
			f := newFixture(t)
			ctx := t.Context()
			entered, release := make(chan struct{}), make(chan struct{})
			var cause error
			stages := []pipeline.Stage{pipeline.Step("a", zombieStep(t, entered, release, tc.records, &cause))}
			if !tc.last {
				stages = append(stages, pipeline.Step("b", notRun(t)), pipeline.Step("c", notRun(t)))
			}
			zombie := newPipeline(t, stages...)
			f.create(t, zombie, "doc")
			done := make(chan error, 1)
			go func() { done <- zombie.Run(ctx, f.tr, "doc") }()
			<-entered

			require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Cancel(nil)))
			require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Retry()))
			second := newPipeline(t, pipeline.Step("a", ok), pipeline.Step("b", ok), pipeline.Step("c", ok))
			require.NoError(t, second.Run(ctx, f.tr, "doc"))
			want := f.get(t, "doc")
			close(release)
			err := <-done

			require.ErrorIs(t, err, store.ErrStale, "even when the refused write is the task's end")
			if tc.records {
				require.ErrorIs(t, cause, store.ErrStale, "the step under way sees its context canceled, with the cause")
			}
			st := f.get(t, "doc")
			assert.True(t, want.Equal(st), "nothing of the stale run reaches attempt 2:\nwant %+v\ngot  %+v", want, st)
			assert.Equal(t, 2, st.Attempt)
			assert.Equal(t, store.StatusSuccess, st.Status)
			assert.Equal(t, map[string]store.StepStatus{"a": store.StepSuccess, "b": store.StepSuccess, "c": store.StepSuccess}, statuses(st))
			assert.Empty(t, st.Progress, "the stale run's progress is not recorded")

			lines := logged.attrs()
			require.Len(t, lines, 1, "the stop is logged once")
			assert.Contains(t, lines[0]["msg"], "run stopped")
			assert.Equal(t, "doc", lines[0]["task_id"])
			assert.Contains(t, lines[0]["err"], "the task is at attempt 2", "the log says why")
			assert.Contains(t, lines[0]["err"], "the run at attempt 1")
		})
	}
}

// TestEndedElsewhereStopsTheRun cancels a task from another process while
// its first step runs: the run records nothing more and runs no further
// step.
func TestEndedElsewhereStopsTheRun(t *testing.T) {
	for _, records := range []bool{false, true} {
		name := map[bool]string{false: "StepReturns", true: "StepRecords"}[records]
		t.Run(name, func(t *testing.T) {
			logged := captureLogs(t)
			f := newFixture(t)
			other, err := tracker.New(f.store) // another process, writing the same store
			require.NoError(t, err)
			entered, release := make(chan struct{}), make(chan struct{})
			var cause error
			p := newPipeline(t,
				pipeline.Step("a", zombieStep(t, entered, release, records, &cause)),
				pipeline.Step("b", notRun(t)),
			)
			f.create(t, p, "doc")
			done := make(chan error, 1)
			go func() { done <- p.Run(t.Context(), f.tr, "doc") }()
			<-entered

			require.NoError(t, other.Apply(t.Context(), "doc", tracker.Cancel(errors.New("stopped by an operator"))))
			want := f.get(t, "doc")
			close(release)
			err = <-done

			require.ErrorIs(t, err, store.ErrTerminal)
			if records {
				require.ErrorIs(t, cause, store.ErrTerminal, "the step under way sees its context canceled, with the cause")
			}
			st := f.get(t, "doc")
			assert.True(t, want.Equal(st), "the run records nothing after the task ended")
			assert.Equal(t, store.StatusCanceled, st.Status)
			assert.Equal(t, "stopped by an operator", st.ErrorMessage)
			assert.Equal(t, map[string]store.StepStatus{"a": store.StepFailed, "b": store.StepSkipped}, statuses(st))
			lines := logged.attrs()
			require.Len(t, lines, 1, "the stop is logged once")
			assert.Contains(t, lines[0]["err"], "task is canceled", "the log says why")
		})
	}
}
