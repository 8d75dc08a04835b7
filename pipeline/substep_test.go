package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/store"
)

// TestProgressIsRateLimited: a step reports its progress 1,000 times in a
// second of the tracker's clock. The first report is written at once, the
// others are held, and the last is written with the step's end: two
// writes in all, and the final values exact.
func TestProgressIsRateLimited(t *testing.T) {
	counter := &puts{}
	f := newFixtureWith(t, func(s store.Store) store.Store { counter.Store = s; return counter })
	var writesDuring int64
	p := newPipeline(t,
		pipeline.Step("embed", func(_ context.Context, task *pipeline.Task) error {
			before := counter.n.Load()
			for i := range int64(1000) {
				task.StepProgress(i+1, 1000, "chunks")
				task.Progress(i+1, 2000, "documents")
				f.clock.Advance(time.Millisecond - time.Microsecond) // 1,000 reports within a second
			}
			writesDuring = counter.n.Load() - before
			return nil
		}),
		pipeline.Step("index", ok))
	f.create(t, p, "doc")
	require.NoError(t, p.Run(t.Context(), f.tr, "doc"))

	assert.Equal(t, int64(1), writesDuring, "one write of progress in a second (ProgressInterval), however many reports")
	st := f.get(t, "doc")
	embed := step(t, st, "embed")
	assert.Equal(t, store.Progress{Done: 1000, Total: 1000, Message: "chunks"}, embed.Progress, "the last report, written with the step's end")
	assert.Equal(t, store.Progress{Done: 1000, Total: 2000, Message: "documents"}, st.Progress)
	assert.Empty(t, f.reported())
}

// TestProgressAfterTheInterval: a report after ProgressInterval is written
// at once.
func TestProgressAfterTheInterval(t *testing.T) {
	f := newFixture(t)
	p := newPipeline(t, pipeline.Step("embed", func(_ context.Context, task *pipeline.Task) error {
		task.StepProgress(1, 3, "")
		f.clock.Advance(pipeline.ProgressInterval)
		task.StepProgress(2, 3, "")
		embed := step(t, f.get(t, "doc"), "embed")
		assert.Equal(t, int64(2), embed.Progress.Done, "written while the step runs")
		return nil
	}))
	f.create(t, p, "doc")
	require.NoError(t, p.Run(t.Context(), f.tr, "doc"))
}

// TestSubSteps runs sub-steps under the rules of steps: a failed optional
// one lets the step go on, one that depends on a failed one is not run,
// and a failed required one fails the step, and so the task.
func TestSubSteps(t *testing.T) {
	f := newFixture(t)
	errQuota := errors.New("quota")
	p := newPipeline(t, pipeline.Step("embed", func(ctx context.Context, task *pipeline.Task) error {
		nop := func(context.Context) error { return nil }
		require.NoError(t, task.SubStep(ctx, "chunk", nop))
		require.NoError(t, task.SubStep(ctx, "cache", func(context.Context) error { return errors.New("cold") }, pipeline.Optional()))
		require.NoError(t, task.SubStep(ctx, "warm", func(context.Context) error {
			t.Error("a sub-step whose dependency failed ran")
			return nil
		}, pipeline.DependsOn("cache"), pipeline.Optional()))
		return task.SubStep(ctx, "vectors", func(context.Context) error { return errQuota }, pipeline.DependsOn("chunk"))
	}), pipeline.Step("index", notRun(t)))
	f.create(t, p, "doc")
	err := p.Run(t.Context(), f.tr, "doc")
	require.ErrorIs(t, err, errQuota)

	st := f.get(t, "doc")
	assert.Equal(t, store.StatusFailed, st.Status)
	embed := step(t, st, "embed")
	assert.Equal(t, store.StepFailed, embed.Status)
	got := map[string]string{}
	for _, sub := range embed.SubSteps {
		got[sub.Name] = string(sub.Status) + ": " + sub.Error
	}
	assert.Equal(t, map[string]string{
		"chunk": "success: ", "cache": "failed: cold", "warm": "failed: dependency cache failed", "vectors": "failed: quota",
	}, got)
	assert.Equal(t, []string{"chunk", "cache", "warm", "vectors"}, []string{
		embed.SubSteps[0].Name, embed.SubSteps[1].Name, embed.SubSteps[2].Name, embed.SubSteps[3].Name}, "in the order they ran")
}

// TestSubStepRefused: what breaks the rules of sub-steps is refused
// without running.
func TestSubStepRefused(t *testing.T) {
	f := newFixture(t)
	p := newPipeline(t, pipeline.Step("embed", func(ctx context.Context, task *pipeline.Task) error {
		nop := func(context.Context) error { return nil }
		require.NoError(t, task.SubStep(ctx, "chunk", nop))
		require.NoError(t, task.SubStep(ctx, "outer", func(ctx context.Context) error {
			// While "outer" runs, its name is taken and it has not ended.
			require.ErrorIs(t, task.SubStep(ctx, "outer", nop), store.ErrInvalidInput, "a name that is running")
			require.ErrorIs(t, task.SubStep(ctx, "inner", nop, pipeline.DependsOn("outer")), store.ErrInvalidInput,
				"a dependency that has not ended")
			return nil
		}))
		for name, call := range map[string]func() error{
			"a name run already":    func() error { return task.SubStep(ctx, "chunk", nop) },
			"no name":               func() error { return task.SubStep(ctx, "", nop) },
			"an unknown dependency": func() error { return task.SubStep(ctx, "x", nop, pipeline.DependsOn("later")) },
			"a timeout":             func() error { return task.SubStep(ctx, "x", nop, pipeline.Timeout(time.Second)) },
			"retries":               func() error { return task.SubStep(ctx, "x", nop, pipeline.Retry(2, 0, 0)) },
			"an invalid option":     func() error { return task.SubStep(ctx, "x", nop, pipeline.Timeout(-1)) },
		} {
			require.ErrorIs(t, call(), store.ErrInvalidInput, "a sub-step with %s", name)
		}
		for i := range store.MaxSubSteps - 2 {
			require.NoError(t, task.SubStep(ctx, fmt.Sprint("part ", i), nop))
		}
		assert.ErrorIs(t, task.SubStep(ctx, "one more", nop), store.ErrTooLarge)
		return nil
	}))
	f.create(t, p, "doc")
	require.NoError(t, p.Run(t.Context(), f.tr, "doc"))
	assert.Len(t, step(t, f.get(t, "doc"), "embed").SubSteps, store.MaxSubSteps)
	assert.Empty(t, f.reported(), "nothing refused was written")
}
