package tracker_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// TestSubSteps walks the sub-steps of a step through their changes and
// checks what is recorded, and what is refused.
func TestSubSteps(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.create(t, "doc", "embed", "index")
	require.ErrorIs(t, f.tr.Apply(ctx, "doc", tracker.StartSubStep("embed", "chunk")), store.ErrInvalidTransition,
		"a step that has not started has no sub-steps running")

	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.StartStep("embed"), tracker.StartSubStep("embed", "chunk")))
	f.clock.Advance(time.Second)
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.SucceedSubStep("embed", "chunk"), tracker.StartSubStep("embed", "vectors"),
		tracker.StepProgress("embed", store.Progress{Done: 3, Total: 10, Message: "chunks"})))
	f.clock.Advance(time.Second)
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.FailSubStep("embed", "vectors", errors.New("quota")), tracker.SkipSubStep("embed", "upsert")))

	embed, _ := f.get(t, "doc").Step("embed")
	assert.Equal(t, store.Progress{Done: 3, Total: 10, Message: "chunks"}, embed.Progress)
	require.Len(t, embed.SubSteps, 3)
	assert.Equal(t, store.SubStep{Name: "chunk", Status: store.StepSuccess, StartedAt: t0, CompletedAt: t0.Add(time.Second)}, embed.SubSteps[0])
	assert.Equal(t, store.SubStep{Name: "vectors", Status: store.StepFailed, StartedAt: t0.Add(time.Second), CompletedAt: t0.Add(2 * time.Second), Error: "quota"}, embed.SubSteps[1])
	assert.Equal(t, store.SubStep{Name: "upsert", Status: store.StepSkipped, CompletedAt: t0.Add(2 * time.Second)}, embed.SubSteps[2])

	for name, c := range map[string]tracker.Change{
		"a sub-step that ended, again":    tracker.StartSubStep("embed", "chunk"),
		"a failed sub-step, as a success": tracker.SucceedSubStep("embed", "vectors"),
	} {
		require.ErrorIs(t, f.tr.Apply(ctx, "doc", c), store.ErrTerminal, name)
	}
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.StartSubStep("embed", "retry")))
	require.ErrorIs(t, f.tr.Apply(ctx, "doc", tracker.StartSubStep("embed", "retry")), store.ErrInvalidTransition, "a running sub-step, started again")
	require.ErrorIs(t, f.tr.Apply(ctx, "doc", tracker.StepProgress("embed", store.Progress{Done: 11, Total: 10})), store.ErrInvalidInput)
	require.ErrorIs(t, f.tr.Apply(ctx, "doc", tracker.StepProgress("index", store.Progress{Done: 1})), store.ErrInvalidTransition,
		"progress of a step that is not running")
	require.ErrorIs(t, f.tr.Apply(ctx, "doc", tracker.StartSubStep("embed", "")), store.ErrInvalidInput)
	embed, _ = f.get(t, "doc").Step("embed")
	require.Len(t, embed.SubSteps, 4, "refused changes record nothing")
}

// TestSubStepsBounded: a step holds at most store.MaxSubSteps sub-steps.
func TestSubStepsBounded(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.create(t, "doc", "embed")
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.StartStep("embed")))
	for i := range store.MaxSubSteps {
		require.NoError(t, f.tr.Apply(ctx, "doc", tracker.SucceedSubStep("embed", fmt.Sprint(i))))
	}
	require.ErrorIs(t, f.tr.Apply(ctx, "doc", tracker.StartSubStep("embed", "one more")), store.ErrTooLarge)
}

// TestStepEndClosesSubSteps: a step that ends closes its running
// sub-steps as it ends, and a retried step starts its new
// attempt without the sub-steps and progress of the failed one.
func TestStepEndClosesSubSteps(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.create(t, "doc", "a", "b", "c", "d")
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.StartStep("a"), tracker.StartSubStep("a", "running"), tracker.SkipSubStep("a", "skipped")))
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.SucceedStep("a")))
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.StartStep("b"), tracker.StartSubStep("b", "running")))
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.FailStep("b", errors.New("boom"))))
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.StartStep("c"), tracker.StartSubStep("c", "running"),
		tracker.StepProgress("c", store.Progress{Done: 1}), tracker.RetryStep("c", errors.New("again"))))
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.StartStep("d"), tracker.StartSubStep("d", "running")))
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Fail(errors.New("gave up"), nil)))

	st := f.get(t, "doc")
	subs := func(step string) map[string]string {
		s, _ := st.Step(step)
		m := map[string]string{}
		for _, sub := range s.SubSteps {
			m[sub.Name] = string(sub.Status) + " " + sub.Error
		}
		return m
	}
	assert.Equal(t, map[string]string{"running": "success ", "skipped": "skipped "}, subs("a"), "a step's success")
	assert.Equal(t, map[string]string{"running": "failed boom"}, subs("b"), "a step's failure")
	c, _ := st.Step("c")
	assert.Empty(t, c.SubSteps, "a retried step's sub-steps were its failed attempt's")
	assert.Zero(t, c.Progress)
	assert.Equal(t, map[string]string{"running": "failed gave up"}, subs("d"), "the task's failure")
}
