package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// ConnectionError stands for the origin service's ConnectionError.
type ConnectionError struct{ Msg string }

func (e *ConnectionError) Error() string { return e.Msg }

// TestSeedFailedResponse reproduces the failed response of the origin
// service: embedding fails, so indexing (which needs it) fails and
// freshness analysis is skipped.
func TestSeedFailedResponse(t *testing.T) {
	f := newFixture(t)
	ctx := tracker.ContextWithCorrelationID(t.Context(), "abc-456-def")
	refused := fmt.Errorf("Vectorization failed: %w", &ConnectionError{"Connection refused"})
	p := newPipeline(t,
		pipeline.Step("file_node_creation", func(_ context.Context, task *pipeline.Task) error {
			task.SetResult(map[string]any{"vector_indexed": false})
			return nil
		}),
		pipeline.Step("memgraph_storage", func(_ context.Context, task *pipeline.Task) error {
			task.SetResult(map[string]any{"entities_extracted": 42})
			return nil
		}),
		pipeline.Step("embedding_generation", func(_ context.Context, task *pipeline.Task) error {
			task.Detail("project_id", "my-project")
			task.Detail("source_path", "archon://projects/my-project/documents/doc-123")
			f.clock.Advance(3128 * time.Millisecond)
			return refused
		}),
		pipeline.Step("qdrant_indexing", notRun(t), pipeline.DependsOn("embedding_generation")),
		pipeline.Step("freshness_analysis", notRun(t), pipeline.Optional()),
	)
	require.NoError(t, f.tr.Apply(ctx, "doc-123", tracker.Create(p.Steps()...)), "the service records the task when it accepts it")

	err := p.Run(ctx, f.tr, "doc-123")

	var se *pipeline.StepError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "embedding_generation", se.Step)
	var ce *ConnectionError
	require.ErrorAs(t, err, &ce, "the step's error is returned")

	st := f.get(t, "doc-123")
	assert.Equal(t, store.StatusFailed, st.Status)
	assert.Equal(t, "abc-456-def", st.CorrelationID)
	assert.Equal(t, t0, st.StartedAt)
	assert.Equal(t, t0.Add(3128*time.Millisecond), st.CompletedAt)
	assert.Equal(t, "Vectorization failed: Connection refused", st.ErrorMessage)
	assert.Len(t, st.ErrorDetails, 4)
	assert.JSONEq(t, `"pipeline_test.ConnectionError"`, string(st.ErrorDetails[tracker.ExceptionTypeKey]))
	assert.JSONEq(t, `"embedding_generation"`, string(st.ErrorDetails[pipeline.FailedStepKey]))
	assert.JSONEq(t, `"my-project"`, string(st.ErrorDetails["project_id"]))
	assert.JSONEq(t, `"archon://projects/my-project/documents/doc-123"`, string(st.ErrorDetails["source_path"]))
	assert.JSONEq(t, `42`, string(st.Result["entities_extracted"]))
	assert.JSONEq(t, `false`, string(st.Result["vector_indexed"]))
	assert.Equal(t, map[string]store.StepStatus{
		"file_node_creation":   store.StepSuccess,
		"memgraph_storage":     store.StepSuccess,
		"embedding_generation": store.StepFailed,
		"qdrant_indexing":      store.StepFailed,
		"freshness_analysis":   store.StepSkipped,
	}, statuses(st))
	assert.Equal(t, "Vectorization failed: Connection refused", step(t, st, "embedding_generation").Error)
	assert.Equal(t, "dependency embedding_generation failed", step(t, st, "qdrant_indexing").Error)
	assert.Empty(t, f.reported())
}

func TestFailureFollowsDependencies(t *testing.T) {
	f := newFixture(t)
	p := newPipeline(t,
		pipeline.Step("a", ok),
		pipeline.Step("b", fail(errors.New("b broke"))),
		pipeline.Step("c", notRun(t), pipeline.DependsOn("b")),
		pipeline.Step("d", notRun(t), pipeline.DependsOn("c")),
		pipeline.Group(
			pipeline.Step("e", notRun(t), pipeline.DependsOn("a", "d")),
			pipeline.Step("f", notRun(t), pipeline.DependsOn("a")),
			pipeline.Step("g", notRun(t), pipeline.Optional()),
		),
	)
	f.create(t, p, "doc")

	err := p.Run(t.Context(), f.tr, "doc")
	require.EqualError(t, err, `pipeline: step "b": b broke`)

	st := f.get(t, "doc")
	assert.Equal(t, map[string]store.StepStatus{
		"a": store.StepSuccess,
		"b": store.StepFailed,
		"c": store.StepFailed, // depends on b
		"d": store.StepFailed, // depends on c, so on b
		"e": store.StepFailed, // depends on d
		"f": store.StepSkipped,
		"g": store.StepSkipped,
	}, statuses(st))
	assert.Equal(t, "dependency b failed", step(t, st, "c").Error)
	assert.Equal(t, "dependency c failed", step(t, st, "d").Error)
	assert.Equal(t, "dependency d failed", step(t, st, "e").Error)
	assert.True(t, step(t, st, "c").StartedAt.IsZero(), "a step that did not run has no start time")
	assert.Equal(t, "b broke", st.ErrorMessage)
	assert.JSONEq(t, `"b"`, string(st.ErrorDetails[pipeline.FailedStepKey]))
	assert.JSONEq(t, `"error"`, string(st.ErrorDetails[tracker.ExceptionTypeKey]))
}

func TestOptionalStepFailureLetsTheRunGoOn(t *testing.T) {
	t.Run("Succeeds", func(t *testing.T) {
		f := newFixture(t)
		ranAfter := false
		p := newPipeline(t,
			pipeline.Step("a", ok),
			pipeline.Step("freshness", func(_ context.Context, task *pipeline.Task) error {
				task.Detail("dropped", true)
				return errors.New("document not found")
			}, pipeline.Optional()),
			pipeline.Step("report", notRun(t), pipeline.DependsOn("freshness"), pipeline.Optional()),
			pipeline.Step("b", func(context.Context, *pipeline.Task) error {
				ranAfter = true
				return nil
			}),
		)
		f.create(t, p, "doc")

		require.NoError(t, p.Run(t.Context(), f.tr, "doc"), "an optional step's failure is not the run's")
		assert.True(t, ranAfter, "the steps after an optional failure run")
		st := f.get(t, "doc")
		assert.Equal(t, store.StatusSuccess, st.Status)
		assert.Empty(t, st.ErrorMessage)
		assert.Empty(t, st.ErrorDetails)
		assert.Equal(t, map[string]store.StepStatus{
			"a": store.StepSuccess, "freshness": store.StepFailed, "report": store.StepFailed, "b": store.StepSuccess,
		}, statuses(st))
		assert.Equal(t, "document not found", step(t, st, "freshness").Error)
		assert.Equal(t, "dependency freshness failed", step(t, st, "report").Error)
	})
	t.Run("RequiredDependentFails", func(t *testing.T) {
		f := newFixture(t)
		p := newPipeline(t,
			pipeline.Step("freshness", fail(errors.New("document not found")), pipeline.Optional()),
			pipeline.Step("report", notRun(t), pipeline.DependsOn("freshness")),
			pipeline.Step("b", notRun(t)),
		)
		f.create(t, p, "doc")

		err := p.Run(t.Context(), f.tr, "doc")
		var de *pipeline.DependencyError
		require.ErrorAs(t, err, &de, "a required step that cannot run fails the run")
		assert.Equal(t, "freshness", de.Dependency)
		st := f.get(t, "doc")
		assert.Equal(t, store.StatusFailed, st.Status)
		assert.Equal(t, "dependency freshness failed", st.ErrorMessage)
		assert.JSONEq(t, `"report"`, string(st.ErrorDetails[pipeline.FailedStepKey]))
		assert.JSONEq(t, `"pipeline.DependencyError"`, string(st.ErrorDetails[tracker.ExceptionTypeKey]))
		assert.Equal(t, map[string]store.StepStatus{
			"freshness": store.StepFailed, "report": store.StepFailed, "b": store.StepSkipped,
		}, statuses(st))
	})
}

func TestDetailsOfTheFailingStep(t *testing.T) {
	f := newFixture(t)
	p := newPipeline(t, pipeline.Step("embed", func(_ context.Context, task *pipeline.Task) error {
		task.Detail(tracker.ExceptionTypeKey, "ConnectionError")
		task.Detail(pipeline.FailedStepKey, "the pipeline sets this one")
		task.Detail("attempts", 3)
		task.Detail("unencodable", make(chan int))
		return errors.New("connection refused")
	}))
	f.create(t, p, "doc")

	require.Error(t, p.Run(t.Context(), f.tr, "doc"))
	st := f.get(t, "doc")
	assert.JSONEq(t, `"ConnectionError"`, string(st.ErrorDetails[tracker.ExceptionTypeKey]), "a step may name its exception type")
	assert.JSONEq(t, `"embed"`, string(st.ErrorDetails[pipeline.FailedStepKey]))
	assert.JSONEq(t, `3`, string(st.ErrorDetails["attempts"]))
	assert.Contains(t, st.ErrorDetails, "unencodable", "a value JSON cannot encode is recorded as text")
}

func TestPanicIsTheStepsFailure(t *testing.T) {
	f := newFixture(t)
	p := newPipeline(t,
		pipeline.Step("a", ok),
		pipeline.Step("boom", func(context.Context, *pipeline.Task) error {
			var steps []string
			_ = steps[3] // panics: index out of range
			return nil
		}),
		pipeline.Step("c", notRun(t)),
	)

	var err error
	f.create(t, p, "doc")
	require.NotPanics(t, func() { err = p.Run(t.Context(), f.tr, "doc") })
	var pe *pipeline.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Contains(t, string(pe.Stack), "failure_test.go", "the stack shows where the step panicked")
	var re interface{ RuntimeError() }
	require.ErrorAs(t, err, &re, "a panic with an error value unwraps to it")

	st := f.get(t, "doc")
	assert.Equal(t, store.StatusFailed, st.Status)
	assert.Equal(t, "panic: runtime error: index out of range [3] with length 0", st.ErrorMessage)
	assert.Equal(t, st.ErrorMessage, step(t, st, "boom").Error)
	assert.JSONEq(t, `"pipeline.PanicError"`, string(st.ErrorDetails[tracker.ExceptionTypeKey]))
	assert.JSONEq(t, `"boom"`, string(st.ErrorDetails[pipeline.FailedStepKey]))
	assert.NotContains(t, st.ErrorDetails, "stack", "the stack is not served to clients")
	assert.Equal(t, map[string]store.StepStatus{
		"a": store.StepSuccess, "boom": store.StepFailed, "c": store.StepSkipped,
	}, statuses(st))
}

func TestGroupOf16RecordsEveryOutcome(t *testing.T) {
	f := newFixture(t)
	const n = 16
	// Each member waits until all have started: the group passes only if
	// its members run concurrently. The timeout fails, rather than hangs,
	// a group that runs them one by one.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var started atomic.Int64
	all := make(chan struct{})
	members := make([]pipeline.Stage, n)
	for i := range members {
		name := "part-" + strconv.Itoa(i)
		members[i] = pipeline.Step(name, func(ctx context.Context, task *pipeline.Task) error {
			if started.Add(1) == n {
				close(all)
			}
			select {
			case <-all:
			case <-ctx.Done():
				return ctx.Err()
			}
			task.SetResult(map[string]any{name: i})
			task.Progress(int64(i), n, name)
			if i%4 == 3 {
				return errors.New(name + " failed")
			}
			if i == 5 {
				panic("member panic")
			}
			return nil
		}, pipeline.Optional())
	}
	p := newPipeline(t, pipeline.Step("first", ok), pipeline.Group(members...), pipeline.Step("last", ok))
	f.create(t, p, "doc")

	require.NoError(t, p.Run(ctx, f.tr, "doc"))

	st := f.get(t, "doc")
	assert.Equal(t, store.StatusSuccess, st.Status)
	require.Len(t, st.Steps, n+2)
	assert.Len(t, st.Result, n, "no result field is lost")
	for i := range n {
		s := step(t, st, "part-"+strconv.Itoa(i))
		switch {
		case i%4 == 3:
			assert.Equal(t, store.StepFailed, s.Status, s.Name)
			assert.Equal(t, s.Name+" failed", s.Error)
		case i == 5:
			assert.Equal(t, store.StepFailed, s.Status, s.Name)
			assert.Equal(t, "panic: member panic", s.Error)
		default:
			assert.Equal(t, store.StepSuccess, s.Status, s.Name)
		}
		assert.JSONEq(t, strconv.Itoa(i), string(st.Result[s.Name]))
	}
	assert.Equal(t, store.StepSuccess, step(t, st, "last").Status)
	assert.Empty(t, f.reported(), "concurrent writes of one task never conflict within a tracker")
}

func TestGroupFailsAfterAllMembersEnd(t *testing.T) {
	f := newFixture(t)
	bFailing := make(chan struct{})
	p := newPipeline(t,
		pipeline.Group(
			pipeline.Step("a", ok),
			pipeline.Step("b", func(context.Context, *pipeline.Task) error {
				close(bFailing)
				return errors.New("b broke")
			}),
			pipeline.Step("c", fail(errors.New("c broke")), pipeline.Optional()),
			pipeline.Step("d", func(_ context.Context, task *pipeline.Task) error {
				<-bFailing
				task.Detail("from", "d")
				return errors.New("d broke")
			}),
			pipeline.Step("e", func(ctx context.Context, _ *pipeline.Task) error {
				<-bFailing
				return ctx.Err() // a sibling's failure does not cancel e
			}),
		),
		pipeline.Step("f", notRun(t)),
		pipeline.Step("g", notRun(t), pipeline.DependsOn("d")),
	)
	f.create(t, p, "doc")

	err := p.Run(t.Context(), f.tr, "doc")
	require.EqualError(t, err, `pipeline: step "b": b broke`, "the first required failure, in declaration order, is the run's")

	st := f.get(t, "doc")
	assert.Equal(t, store.StatusFailed, st.Status)
	assert.Equal(t, "b broke", st.ErrorMessage)
	assert.JSONEq(t, `"b"`, string(st.ErrorDetails[pipeline.FailedStepKey]))
	assert.NotContains(t, st.ErrorDetails, "from", "only the failing step's details are recorded")
	assert.Equal(t, map[string]store.StepStatus{
		"a": store.StepSuccess, "b": store.StepFailed, "c": store.StepFailed, "d": store.StepFailed,
		"e": store.StepSuccess, "f": store.StepSkipped, "g": store.StepFailed,
	}, statuses(st))
	assert.Equal(t, "d broke", step(t, st, "d").Error)
}
