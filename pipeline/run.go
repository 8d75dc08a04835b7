package pipeline

import (
	"context"
	"errors"
	"fmt"
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
// wrapping ctx's error when ctx ended first. Errors of tr do not change
// the result: tr reports them to its error handler.
//
// Run creates the task if it does not exist and starts it if it is
// pending. It runs nothing and returns an error if id is invalid
// ([store.ErrInvalidID]) or the task has already started
// ([store.ErrInvalidTransition]) or ended ([store.ErrTerminal]). If the
// task ends elsewhere while the run goes on (another process cancels it),
// the run stops before its next step and returns an error wrapping
// [store.ErrTerminal].
func (p *Pipeline) Run(ctx context.Context, tr *tracker.Tracker, id string) error {
	if err := store.ValidateID(id); err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	if tr == nil {
		return errors.New("pipeline: nil tracker")
	}
	r := &run{p: p, tr: tr, id: id, rec: context.WithoutCancel(ctx), steps: make([]stepRun, len(p.steps))}
	if err := r.begin(); err != nil {
		return err
	}
	for i, stage := range p.stages {
		if ctx.Err() != nil {
			return r.interrupted(ctx)
		}
		f, err := r.runStage(ctx, stage)
		if err != nil {
			return err
		}
		if f == nil {
			continue
		}
		if ctx.Err() != nil {
			return r.interrupted(ctx)
		}
		return r.fail(p.stages[i+1:], f)
	}
	_ = r.record(tracker.Succeeded())
	return nil
}

// run is one run of a pipeline for one task. Its methods ignore the errors
// of tracker calls but the refusal to start: the tracker reports them to
// its error handler, and tracking never fails the work.
//
// To keep writes few, and each a state worth reading, the end of a step
// run alone is not written at once but with the next write of the run: the
// start of the next step, or the end of the task. A client so sees one
// step end and the next start together, and a failed step, the steps that
// depend on it and the failed task together.
type run struct {
	p  *Pipeline
	tr *tracker.Tracker
	id string
	// rec is the run's context without its cancellation, for recording:
	// the end of a canceled run is recorded too.
	rec context.Context
	// carry holds the changes to make with the next write. Only the
	// goroutine of Run uses it: the steps of a group write their own.
	carry []tracker.Change
	// steps holds the state of each step, by index. Each is written by the
	// goroutine that runs its step, and read by others once its stage has
	// ended.
	steps []stepRun
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

// begin creates the task if it does not exist, and refuses one that has
// started already; otherwise a store that fails does not stop the run. The
// task is started, with the plan, by the run's first write.
func (r *run) begin() error {
	st, err := r.tr.Get(r.rec, r.id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		_ = r.tr.Create(r.rec, r.id, r.p.names...)
	case err != nil:
		// The store failed: run the work all the same.
	case st.Status.Terminal():
		return fmt.Errorf("pipeline: task %q is %s: %w", r.id, st.Status, store.ErrTerminal)
	case st.Status != store.StatusPending:
		return fmt.Errorf("pipeline: task %q is %s: %w", r.id, st.Status, store.ErrInvalidTransition)
	}
	r.carry = []tracker.Change{tracker.Started(r.p.names...)}
	return nil //nolint:nilerr // a store that fails does not stop the work
}

// record writes changes, after the changes carried, in one write.
func (r *run) record(changes ...tracker.Change) error {
	r.carry = append(r.carry, changes...)
	err := r.tr.Apply(r.rec, r.id, r.carry...)
	clear(r.carry)
	r.carry = r.carry[:0] // the array is reused for the next changes
	return err
}

// runStage runs the steps of a stage, concurrently if there are several,
// and returns the first failure of a required step, in declaration order.
// It returns an error, and runs nothing, if another run started the task
// first.
func (r *run) runStage(ctx context.Context, stage []step) (*failure, error) {
	if len(stage) == 1 {
		f, err := r.runStep(ctx, &stage[0], true)
		return required(f), err
	}
	if len(r.carry) > 0 {
		if err := refused(r.record()); err != nil {
			return nil, err
		}
	}
	failures := make([]*failure, len(stage))
	var wg sync.WaitGroup
	for i := range stage {
		wg.Go(func() { failures[i], _ = r.runStep(ctx, &stage[i], false) })
	}
	wg.Wait()
	for _, f := range failures {
		if f := required(f); f != nil {
			return f, nil
		}
	}
	return nil, nil
}

// refused returns err if it means the task had started or ended before the
// run started it, or nil.
func refused(err error) error {
	if errors.Is(err, store.ErrInvalidTransition) || errors.Is(err, store.ErrTerminal) {
		return fmt.Errorf("pipeline: %w", err) // another run got there first
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

// runStep runs one step, or fails it if a dependency failed, and records
// it. A step run alone (solo) has its start written with the changes
// carried and its end carried to the run's next write; a step of a group
// writes both at once. runStep returns the step's failure, or nil if it
// succeeded, and an error if the run must not go on because the task had
// started before this run started it.
func (r *run) runStep(ctx context.Context, s *step, solo bool) (*failure, error) {
	if err := r.dependencyFailed(s); err != nil {
		r.steps[s.index].failed = true
		r.end(solo, tracker.StepFailed(s.name, err))
		return &failure{step: s, err: err}, nil
	}
	start := tracker.StepStarted(s.name)
	var err error
	if solo {
		err = r.record(start)
	} else {
		err = r.tr.Apply(r.rec, r.id, start)
	}
	if err := refused(err); err != nil {
		return nil, err
	}
	task := &r.steps[s.index].task
	task.run = r
	if err := r.attempts(ctx, s, task); err != nil {
		r.steps[s.index].failed = true
		r.end(solo, tracker.StepFailed(s.name, err))
		return &failure{step: s, err: err, details: task.failureDetails()}, nil
	}
	r.end(solo, tracker.StepSucceeded(s.name))
	return nil, nil
}

// end records c, the end of a step: carried to the run's next write for a
// step run alone, written at once for a step of a group.
func (r *run) end(solo bool, c tracker.Change) {
	if solo {
		r.carry = append(r.carry, c)
		return
	}
	_ = r.tr.Apply(r.rec, r.id, c)
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
func (r *run) attempts(ctx context.Context, s *step, task *Task) error {
	for n := 1; ; n++ {
		err := call(ctx, s, task)
		if err == nil || n == s.attempts || ctx.Err() != nil || isPanic(err) {
			return err
		}
		_ = r.tr.RetryStep(r.rec, r.id, s.name, err)
		if r.p.sleep(ctx, s.backoff(n)) != nil {
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

// fail records the failure f of a required step, which ends the run: the
// steps of the stages left that depend on a failed step fail, the others
// are skipped, and the task fails with f's error and details.
func (r *run) fail(left [][]step, f *failure) error {
	for _, stage := range left {
		for i := range stage {
			s := &stage[i]
			if err := r.dependencyFailed(s); err != nil {
				r.steps[s.index].failed = true
				r.carry = append(r.carry, tracker.StepFailed(s.name, err))
			}
		}
	}
	details := f.details
	if details == nil {
		details = make(map[string]any, 1)
	}
	details[FailedStepKey] = f.step.name
	_ = r.record(tracker.Failed(f.err, details)) // skips the steps still pending
	return &StepError{Step: f.step.name, Err: f.err}
}

// interrupted records the end of a run whose context is done: canceled,
// or failed if its deadline passed. The steps not run are skipped. It
// returns ctx's error, with its cause.
func (r *run) interrupted(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		_ = r.record(tracker.Failed(cause, nil))
	} else {
		_ = r.record(tracker.Canceled(cause))
	}
	if !errors.Is(err, cause) {
		return fmt.Errorf("pipeline: %w: %w", err, cause)
	}
	return fmt.Errorf("pipeline: %w", err)
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

// sleep is the default wait between attempts.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
