package pipeline_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

func TestRunnerOutlivesTheRequest(t *testing.T) {
	f := newFixture(t)
	r := pipeline.NewRunner()
	release := make(chan struct{})
	p := newPipeline(t,
		pipeline.Step("a", func(ctx context.Context, _ *pipeline.Task) error {
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}),
		pipeline.Step("b", ok),
	)
	req, endRequest := context.WithCancel(tracker.ContextWithCorrelationID(t.Context(), "abc-456-def"))
	require.NoError(t, f.tr.Apply(req, "doc", tracker.Create(p.Steps()...)))

	require.NoError(t, r.Go(req, p, f.tr, "doc"), "Go returns while the run waits")
	endRequest()
	close(release)
	r.Wait()

	st := f.get(t, "doc")
	assert.Equal(t, store.StatusSuccess, st.Status, "the end of the request does not cancel the run")
	assert.Equal(t, "abc-456-def", st.CorrelationID, "the run keeps the request's values")
	require.NoError(t, r.Shutdown(t.Context()))
}

func TestRunnerGracefulShutdown(t *testing.T) {
	f := newFixture(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // no goroutine of the Runner is left
	r := pipeline.NewRunner()
	const n = 3
	started, release := make(chan struct{}, n), make(chan struct{})
	p := newPipeline(t,
		pipeline.Step("a", func(context.Context, *pipeline.Task) error {
			started <- struct{}{}
			<-release
			return nil
		}),
		pipeline.Step("b", ok),
	)
	for i := range n {
		f.create(t, p, "doc-"+strconv.Itoa(i))
		require.NoError(t, r.Go(t.Context(), p, f.tr, "doc-"+strconv.Itoa(i)))
	}
	for range n {
		<-started
	}

	done := make(chan error)
	go func() { done <- r.Shutdown(t.Context()) }()
	close(release)
	require.NoError(t, <-done, "runs that end in time end gracefully")

	for i := range n {
		st := f.get(t, "doc-"+strconv.Itoa(i))
		assert.Equal(t, store.StatusSuccess, st.Status, "Shutdown returns after the runs in flight have ended")
	}
	require.ErrorIs(t, r.Go(t.Context(), p, f.tr, "late"), pipeline.ErrShuttingDown)
	_, err := f.tr.Get(t.Context(), "late")
	require.ErrorIs(t, err, store.ErrNotFound, "a refused run records nothing")
	require.NoError(t, r.Shutdown(t.Context()), "Shutdown again is harmless")
}

func TestRunnerForcedShutdownCancelsRuns(t *testing.T) {
	f := newFixture(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // no goroutine of the Runner is left
	r := pipeline.NewRunner()
	const n = 3
	started := make(chan struct{}, n)
	causes := make(chan error, n)
	p := newPipeline(t,
		pipeline.Step("a", ok),
		pipeline.Step("b", func(ctx context.Context, _ *pipeline.Task) error {
			started <- struct{}{}
			<-ctx.Done() // the cancellation reaches the step
			causes <- context.Cause(ctx)
			return ctx.Err()
		}),
		pipeline.Step("c", notRun(t)),
	)
	for i := range n {
		f.create(t, p, "doc-"+strconv.Itoa(i))
		require.NoError(t, r.Go(t.Context(), p, f.tr, "doc-"+strconv.Itoa(i)))
	}
	for range n {
		<-started
	}

	expired, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, r.Shutdown(expired), context.Canceled, "Shutdown reports that it had to cancel runs")

	for range n {
		require.ErrorIs(t, <-causes, pipeline.ErrShuttingDown)
	}
	for i := range n {
		st := f.get(t, "doc-"+strconv.Itoa(i))
		assert.Equal(t, store.StatusCanceled, st.Status, "no task is left running")
		assert.Equal(t, pipeline.ErrShuttingDown.Error(), st.ErrorMessage)
		assert.Equal(t, map[string]store.StepStatus{
			"a": store.StepSuccess, "b": store.StepFailed, "c": store.StepSkipped,
		}, statuses(st))
	}
	assert.Empty(t, f.reported())
	require.ErrorIs(t, r.Go(t.Context(), p, f.tr, "late"), pipeline.ErrShuttingDown)
}

func TestRunnerShutdownInterruptsBackoff(t *testing.T) {
	f := newFixture(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // no goroutine of the Runner is left
	r := pipeline.NewRunner()
	failed := make(chan struct{})
	p := newPipeline(t, pipeline.Step("a", func(context.Context, *pipeline.Task) error {
		close(failed)
		return errors.New("refused")
	}, pipeline.Retry(2, time.Hour, time.Hour)))
	f.create(t, p, "doc")
	require.NoError(t, r.Go(t.Context(), p, f.tr, "doc"))
	<-failed

	expired, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, r.Shutdown(expired), context.Canceled, "an hour of backoff does not delay a forced shutdown")

	st := f.get(t, "doc")
	assert.Equal(t, store.StatusCanceled, st.Status)
	a := step(t, st, "a")
	assert.Equal(t, store.StepFailed, a.Status)
	assert.Equal(t, "refused", a.Error)
}

func TestRunnerGoRejectsInvalidArguments(t *testing.T) {
	f := newFixture(t)
	r := pipeline.NewRunner()
	p := newPipeline(t, pipeline.Step("a", notRun(t)))
	require.ErrorContains(t, r.Go(t.Context(), nil, f.tr, "doc"), "nil pipeline")
	require.ErrorContains(t, r.Go(t.Context(), p, nil, "doc"), "nil tracker")
	r.Wait() // nothing started: returns at once

	require.NoError(t, r.Go(t.Context(), p, f.tr, ""), "the tracker checks the id, in the run")
	r.Wait()
	reported := f.reported()
	require.Len(t, reported, 1, "the refused start is reported by the tracker")
	require.ErrorIs(t, reported[0], store.ErrInvalidID)
	require.NoError(t, r.Shutdown(t.Context()))
}
