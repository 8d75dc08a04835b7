package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"

	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// Run runs the pipeline for task id in the calling goroutine, recording
// each step through tr, and returns the work's error: nil when every
// required step succeeded, a [*StepError] when one failed, or an error
// wrapping ctx's error when ctx ended first. Errors of tr, such as a store
// that is down, do not change the result: tr reports them to its error
// handler.
//
// The task must exist and be pending: the service creates it, with
// [Pipeline.Steps] as its plan, before it runs the pipeline. Run starts it
// with [tracker.Tracker.Start] and records the run through the attempt's
// [tracker.Run]. If the start is refused, Run runs nothing and returns an
// error wrapping the refusal: [store.ErrNotFound] if the task does not
// exist, [store.ErrInvalidTransition] if it has started,
// [store.ErrTerminal] if it has ended, [store.ErrInvalidID] if id is
// invalid.
//
// If the task's cancellation is requested while the run goes on, by any
// process ([tracker.RequestCancel]), the run cancels the context of the
// steps under way with a cause wrapping [tracker.ErrCancelRequested], runs
// no further step, records what the steps did and the task canceled, and
// returns an error wrapping the cause and [context.Canceled]. A step that
// finishes its work despite the request is recorded as it ended.
//
// If the task stops being the run's to record while the run goes on (it
// was retried or created anew: [store.ErrStale]; it ended elsewhere:
// [store.ErrTerminal]), the run records nothing more, cancels the context
// of the steps under way, runs no further step, logs why with
// [slog.Default], and returns an error wrapping the refusal.
func (p *Pipeline) Run(ctx context.Context, tr *tracker.Tracker, id string) error {
	if tr == nil {
		return errors.New("pipeline: nil tracker")
	}
	work, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	r := &run{p: p, tr: tr, id: id, rec: context.WithoutCancel(ctx), stop: stop, steps: make([]stepRun, len(p.steps))}
	for i := range r.steps {
		r.steps[i].task.run, r.steps[i].task.step = r, p.steps[i].name
	}
	defer func() {
		if r.unwatch != nil {
			r.unwatch()
		}
	}()
	return r.stages(ctx, work)
}

// run is one run of a pipeline for one task.
//
// Each write of the run is a state worth reading: the end of a step run
// alone is written with what follows it, the start of the next step or the
// end of the task, so that a client sees one step end and the next start
// together, and a failed step, the steps that depend on it and the failed
// task together. The steps of a group write their own start and end.
type run struct {
	p  *Pipeline
	tr *tracker.Tracker
	id string
	// rec is the run's context without its cancellation, for recording:
	// the end of a canceled run is recorded too.
	rec context.Context
	// stop cancels the context of the steps: see halt.
	stop context.CancelCauseFunc
	// att is the attempt's Run, set by the run's first write, which
	// starts the task before any step runs; unwatch stops the watch of
	// its cancel requests (see watch).
	att     *tracker.Run
	unwatch context.CancelFunc
	// steps holds the state of each step, by index. Each is written by the
	// goroutine that runs its step, and read by others once its stage has
	// ended.
	steps []stepRun
	// progress holds the progress reported and not written yet.
	progress progress

	mu sync.Mutex
	// Guarded by mu:
	halted    error // why the run records nothing more, or nil
	requested error // the cancel request that stops the run, or nil
	over      bool  // the end of the task has been written
}

// stepRun is the state of one step in a run.
type stepRun struct {
	task   Task // what the step sees
	failed bool
}

// failure is how a step failed.
type failure struct {
	step    *step
	err     error
	details map[string]any
}

// stages runs the stages in order, from ctx, with work as the steps'
// context, and records the end of the task.
func (r *run) stages(ctx, work context.Context) error {
	var ended []tracker.Change // the end of the last step run alone, not yet written
	for i, stage := range r.p.stages {
		if err, cause := r.interruption(ctx); err != nil {
			return r.interrupted(err, cause, ended)
		}
		var f *failure
		if len(stage) == 1 {
			ended, f = r.runStep(work, &stage[0], ended)
		} else {
			r.write(ended...) // the task's start, if the group is the first stage
			ended = nil
			f = r.runGroup(work, stage)
		}
		if err := r.stopped(); err != nil {
			return err
		}
		if f = required(f); f == nil {
			continue
		}
		if err, cause := r.interruption(ctx); err != nil {
			return r.interrupted(err, cause, ended)
		}
		return r.fail(ended, f, r.p.stages[i+1:])
	}
	return r.end(nil, append(ended, tracker.Succeed())...)
}

// runStep runs s, or fails it at once if a step it depends on failed. Its
// start is written together with before, the changes not yet written. It
// returns the changes left to write, which end s (after before, if
// nothing was written), and the failure of s, if it failed.
func (r *run) runStep(ctx context.Context, s *step, before []tracker.Change) ([]tracker.Change, *failure) {
	if err := r.dependencyFailed(s); err != nil {
		end, f := r.outcome(s, err)
		return append(before, end), f
	}
	r.write(append(before, tracker.StartStep(s.name))...)
	if r.stopped() != nil {
		return nil, nil
	}
	end, f := r.outcome(s, r.attempts(ctx, s))
	return append(r.progress.take(s.name), end), f
}

// outcome returns the change that records the end of step s, a success if
// err is nil, and the failure of s if it failed. Every step's end is
// decided here, whether it ran or not.
func (r *run) outcome(s *step, err error) (tracker.Change, *failure) {
	if err == nil {
		return tracker.SucceedStep(s.name), nil
	}
	sr := &r.steps[s.index]
	sr.failed = true
	return tracker.FailStep(s.name, err), &failure{step: s, err: err, details: sr.task.failureDetails()}
}

// runGroup runs the steps of a group concurrently, each writing its own
// start and end, and returns the first failure of a required step, in
// declaration order.
func (r *run) runGroup(ctx context.Context, stage []step) *failure {
	failures := make([]*failure, len(stage))
	var wg sync.WaitGroup
	for i := range stage {
		wg.Go(func() {
			var end []tracker.Change
			end, failures[i] = r.runStep(ctx, &stage[i], nil)
			r.write(end...)
		})
	}
	wg.Wait()
	for _, f := range failures {
		if f := required(f); f != nil {
			return f
		}
	}
	return nil
}

// required returns f if it is the failure of a required step, or nil.
func required(f *failure) *failure {
	if f == nil || f.step.optional {
		return nil
	}
	return f
}

// dependencyFailed returns the error of a step that cannot run because a
// step it depends on failed, or nil.
func (r *run) dependencyFailed(s *step) error {
	for _, d := range s.deps {
		if r.steps[d].failed {
			return &DependencyError{Dependency: r.p.steps[d].name}
		}
	}
	return nil
}

// attempts calls the step until an attempt succeeds, the attempts are used
// up, an attempt panics or ctx is done, recording each retry. It returns
// the last attempt's error.
func (r *run) attempts(ctx context.Context, s *step) error {
	task := &r.steps[s.index].task
	for n := 1; ; n++ {
		err := call(ctx, s, task)
		if err == nil || n == s.attempts || ctx.Err() != nil || isPanic(err) {
			return err
		}
		r.progress.drop(s.name)
		task.newAttempt()
		r.write(tracker.RetryStep(s.name, err))
		if sleep(ctx, s.backoff(n)) != nil {
			return err
		}
	}
}

// isPanic reports whether err is a step's panic, which is not retried.
func isPanic(err error) bool {
	_, ok := errors.AsType[*PanicError](err)
	return ok
}

// call makes one attempt of a step, within the step's timeout, and turns a
// panic into a *PanicError.
func call(ctx context.Context, s *step, task *Task) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	if s.timeout == 0 {
		return s.fn(ctx, task)
	}
	sctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err = s.fn(sctx, task)
	if errors.Is(err, context.DeadlineExceeded) && sctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("step timed out after %v: %w", s.timeout, err)
	}
	return err
}

// fail records the failure f of a required step, which ends the run, with
// ended, the changes not yet written: the steps of the stages left that
// depend on a failed step fail, the others are skipped, and the task
// fails with f's error and details.
func (r *run) fail(ended []tracker.Change, f *failure, left [][]step) error {
	changes := ended
	for _, stage := range left {
		for i := range stage {
			if err := r.dependencyFailed(&stage[i]); err != nil {
				end, _ := r.outcome(&stage[i], err)
				changes = append(changes, end)
			}
		}
	}
	details := f.details
	if details == nil {
		details = make(map[string]any, 1)
	}
	details[FailedStepKey] = f.step.name
	// Fail skips the steps still pending.
	return r.end(&StepError{Step: f.step.name, Err: f.err}, append(changes, tracker.Fail(f.err, details))...)
}

// interruption returns why the run must end before its next stage, as a
// context's error and its cause: ctx is done, or the task's cancellation
// was requested. It returns nils if the run goes on.
func (r *run) interruption(ctx context.Context) (err, cause error) {
	if err := ctx.Err(); err != nil {
		return err, context.Cause(ctx)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.requested != nil {
		return context.Canceled, r.requested
	}
	return nil, nil
}

// interrupted records the end of a run that was interrupted (see
// interruption) for err and its cause, with ended, the changes not yet
// written: canceled, or failed if a deadline passed. The steps not run are
// skipped. It returns err, with its cause.
func (r *run) interrupted(err, cause error, ended []tracker.Change) error {
	end := tracker.Cancel(cause)
	if errors.Is(err, context.DeadlineExceeded) {
		end = tracker.Fail(cause, nil)
	}
	if !errors.Is(err, cause) {
		err = fmt.Errorf("pipeline: %w: %w", err, cause)
	} else {
		err = fmt.Errorf("pipeline: %w", err)
	}
	return r.end(err, append(ended, end)...)
}

// end writes changes, which end the task, and returns err, the run's
// result, unless the write stopped the run: then it returns why.
func (r *run) end(err error, changes ...tracker.Change) error {
	r.write(changes...)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.over = true
	if r.halted != nil {
		return r.halted
	}
	return err
}

// write makes changes to the task in one write through the attempt's Run;
// the run's first write starts the task. The tracker reports its errors to
// its error handler, and tracking never fails the work: write only stops
// the run (see halt) if the task is no longer the run's to record.
func (r *run) write(changes ...tracker.Change) {
	if r.stopped() != nil {
		return
	}
	if r.att == nil {
		var err error
		if r.att, err = r.tr.Start(r.rec, r.id, changes...); r.att == nil {
			r.halt(err, false) // refused, and reported by the tracker
			return
		}
		r.watch()
		return // a Run with an error: the store did not answer, and keeps the changes
	}
	if err := r.att.Apply(r.rec, changes...); stops(err) {
		r.halt(err, true)
	}
}

// report writes c, a report of progress of step ("" for the task's), or
// holds it (see ProgressInterval).
func (r *run) report(step string, c tracker.Change) {
	if changes := r.progress.report(r.tr.Now(), step, c); len(changes) > 0 {
		r.write(changes...)
	}
}

// stops reports whether err, from a write of the Run, means that the task
// is no longer the run's to record: it was retried or created anew, it
// ended elsewhere, or a start kept while the store did not answer was
// refused in the end. The Run records nothing more after such an error.
func stops(err error) bool {
	return errors.Is(err, store.ErrStale) || errors.Is(err, store.ErrTerminal) ||
		errors.Is(err, store.ErrInvalidTransition) || errors.Is(err, store.ErrNotFound)
}

// halt stops the run for err, unless it has stopped or ended: nothing more
// is recorded, no further step runs, and the context of the steps under
// way is canceled with the cause. It logs why if log is set.
func (r *run) halt(err error, log bool) {
	r.mu.Lock()
	if r.halted != nil || r.over {
		r.mu.Unlock()
		return
	}
	r.halted = fmt.Errorf("pipeline: %w", err)
	if log {
		// Under r.mu: a Run that sees it halted has logged why.
		slog.WarnContext(r.rec, "pipeline: run stopped: the task is no longer its to record",
			slog.String("task_id", r.id), slog.Any("err", err))
	}
	r.mu.Unlock()
	r.stop(r.halted)
}

// watch follows the task for what ends the run from outside: a cancel
// request, from any process, cancels the context of the steps under way
// and ends the run before its next stage (see interruption); a new
// attempt or incarnation of the task halts it.
func (r *run) watch() {
	wctx, stop := r.att.WatchCancel(r.rec)
	r.unwatch = stop
	context.AfterFunc(wctx, func() {
		switch cause := context.Cause(wctx); {
		case errors.Is(cause, tracker.ErrCancelRequested):
			r.cancelRequested(cause)
		case errors.Is(cause, store.ErrStale):
			r.halt(cause, true)
		}
	})
}

// cancelRequested stops the run for cause, a cancel request, unless it
// has stopped or ended: the context of the steps under way is canceled,
// no further step runs, and the task is recorded canceled.
func (r *run) cancelRequested(cause error) {
	r.mu.Lock()
	if r.halted != nil || r.over || r.requested != nil {
		r.mu.Unlock()
		return
	}
	r.requested = cause
	r.mu.Unlock()
	r.stop(cause)
	slog.InfoContext(r.rec, "pipeline: run canceled on request",
		slog.String("task_id", r.id), slog.Any("cause", cause))
}

// stopped returns why the run stopped, or nil.
func (r *run) stopped() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.halted
}

// backoff returns how long to wait before retry n (from 1) of s.
func (s *step) backoff(n int) time.Duration {
	d := s.initial
	for i := 1; i < n && d < s.maxWait; i++ {
		if d > s.maxWait/2 {
			d = s.maxWait
		} else {
			d *= 2
		}
	}
	return d - rand.N(d/2+1)
}

// sleep waits d, and returns nil, or ctx's error as soon as ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
