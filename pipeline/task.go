package pipeline

import (
	"context"
	"fmt"
	"maps"
	"runtime/debug"
	"sync"

	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// Task is what a step sees of the task it works for: its id, and methods
// to report progress, run sub-steps, set result fields, renew the task's
// lease and attach details to the step's failure. Its methods are safe for
// concurrent use. They record through the run's [tracker.Run]; recording
// errors go to the tracker's error handler, not to the step: they never
// fail it.
type Task struct {
	run  *run
	step string // the name of the step

	mu      sync.Mutex
	details map[string]any
	subs    map[string]subState // the sub-steps of the step's attempt, by name
}

// ID returns the task's id.
func (t *Task) ID() string { return t.run.id }

// Progress records how far the work has come: done of total units (total
// 0 if unknown) and a short message. It is the task's progress, shared by
// its steps: the last report wins. Reports are written at most once per
// [ProgressInterval], the last one at the latest with the step's end. See
// [tracker.SetProgress] for what is refused.
func (t *Task) Progress(done, total int64, message string) {
	t.run.report("", tracker.SetProgress(store.Progress{Done: done, Total: total, Message: message}))
}

// StepProgress records how far the step's own work has come, as Progress
// does the task's, and under the same interval: the step's progress is
// shown on the step ([store.Step.Progress]).
func (t *Task) StepProgress(done, total int64, message string) {
	t.run.report(t.step, tracker.StepProgress(t.step, store.Progress{Done: done, Total: total, Message: message}))
}

// SubStep runs fn as the sub-step name of the step ([store.Step.SubSteps]):
// it records the sub-step running, calls fn with ctx and records its end,
// a success or a failure with fn's error (a panic is one, a
// [*PanicError]), each a write. Sub-steps follow the rules of steps: one
// that [DependsOn] a sub-step of the step that failed is not run and is
// recorded failed with a [*DependencyError]; SubStep returns the failure of
// a required sub-step, for the step to return, and nil for an [Optional]
// one. A sub-step may depend only on sub-steps run before it in the same
// attempt of the step, and a step runs at most [store.MaxSubSteps]
// sub-steps; names are unique in a step. [Timeout] and [Retry] are options
// of steps only. SubStep refuses what breaks these rules with an error,
// without running fn.
func (t *Task) SubStep(ctx context.Context, name string, fn func(ctx context.Context) error, opts ...StepOption) error {
	s := step{name: name, attempts: 1}
	for _, opt := range opts {
		if opt == nil {
			return fmt.Errorf("pipeline: sub-step %q: nil option: %w", name, store.ErrInvalidInput)
		}
		if err := opt(&s); err != nil {
			return fmt.Errorf("pipeline: sub-step %q: %w: %w", name, store.ErrInvalidInput, err)
		}
	}
	dep, err := t.beginSub(s)
	if err != nil {
		return err
	}
	if dep != nil {
		err = dep
	} else {
		t.run.write(tracker.StartSubStep(t.step, name))
		err = callSub(ctx, fn)
	}
	t.endSub(name, err != nil)
	if err == nil {
		t.run.write(tracker.SucceedSubStep(t.step, name))
		return nil
	}
	t.run.write(tracker.FailSubStep(t.step, name, err))
	if s.optional {
		return nil
	}
	return fmt.Errorf("sub-step %s: %w", name, err)
}

// subState is how far a sub-step of a Task has come.
type subState uint8

const (
	subRunning subState = iota + 1
	subSucceeded
	subFailed
)

// beginSub checks sub-step s against the rules of SubStep and marks it
// running, so that a call at the same time by the same name is refused.
// It returns the error s is refused with, or, if a sub-step s depends on
// failed, that failure: s is recorded failed and not run.
func (t *Task) beginSub(s step) (*DependencyError, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case s.name == "":
		return nil, fmt.Errorf("pipeline: sub-step without a name: %w", store.ErrInvalidInput)
	case s.timeout != 0 || s.attempts != 1:
		return nil, fmt.Errorf("pipeline: sub-step %q: Timeout and Retry are options of steps, not of sub-steps: %w", s.name, store.ErrInvalidInput)
	case len(t.subs) >= store.MaxSubSteps:
		return nil, fmt.Errorf("pipeline: sub-step %q: step %q ran %d sub-steps already: %w", s.name, t.step, len(t.subs), store.ErrTooLarge)
	case t.subs[s.name] != 0:
		return nil, fmt.Errorf("pipeline: sub-step %q ran already in step %q: %w", s.name, t.step, store.ErrInvalidInput)
	}
	var dep *DependencyError
	for _, d := range s.after {
		switch t.subs[d] {
		case 0, subRunning:
			return nil, fmt.Errorf("pipeline: sub-step %q depends on %q, which has not run in step %q: %w", s.name, d, t.step, store.ErrInvalidInput)
		case subFailed:
			if dep == nil {
				dep = &DependencyError{Dependency: d}
			}
		}
	}
	if t.subs == nil {
		t.subs = make(map[string]subState)
	}
	t.subs[s.name] = subRunning
	return dep, nil
}

// endSub records that sub-step name ended, failed or not.
func (t *Task) endSub(name string, failed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	state := subSucceeded
	if failed {
		state = subFailed
	}
	t.subs[name] = state
}

// newAttempt forgets the sub-steps of the step's attempt that failed: the
// next attempt runs its own.
func (t *Task) newAttempt() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.subs)
}

// callSub calls fn and turns a panic into a *PanicError.
func callSub(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn(ctx)
}

// SetResult merges fields into the task's result fields, such as
// "entities_extracted", at once: a client sees them while the work goes on.
// See [tracker.SetResult] for what is refused.
func (t *Task) SetResult(fields map[string]any) {
	t.run.write(tracker.SetResult(fields))
}

// Heartbeat renews the task's lease (see [tracker.WithLease] and
// [tracker.Heartbeat]) without changing anything a client reads. A step
// that can go longer than the lease without recording anything calls it
// more often than the lease ends, so that its task is not taken for
// abandoned.
func (t *Task) Heartbeat() {
	t.run.write(tracker.Heartbeat())
}

// Detail attaches key and value to the details of the step's failure,
// recorded as the task's error details if the step fails the task. A
// step's details are kept across its attempts and dropped if it succeeds.
// [FailedStepKey] is set by the pipeline; [tracker.ExceptionTypeKey]
// replaces the type of the step's error.
func (t *Task) Detail(key string, value any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.details == nil {
		t.details = make(map[string]any)
	}
	t.details[key] = value
}

// failureDetails returns a copy of the details attached so far.
func (t *Task) failureDetails() map[string]any {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.details)
}
