package tracker

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// Start marks a pending task running and plans the named steps: those the
// task does not have yet are added as pending, in order. Starting a task
// that is already running is refused with [store.ErrInvalidTransition], so
// a second start never wipes a record.
func (t *Tracker) Start(ctx context.Context, id string, steps ...string) error {
	return t.update(ctx, "start", id, func(st store.State, now time.Time) (store.State, error) {
		switch {
		case st.Status.Terminal():
			return st, terminal(st.Status)
		case st.Status != store.StatusPending:
			return st, fmt.Errorf("%w: task is already %s", store.ErrInvalidTransition, st.Status)
		}
		if err := planSteps(&st, steps); err != nil {
			return st, err
		}
		st.Status, st.StartedAt = store.StatusRunning, now
		return st, nil
	})
}

// StartStep marks a step running, adding it if the task does not have it,
// and marks a pending task running too. A step already running is refused
// with [store.ErrInvalidTransition] (see [Tracker.RetryStep]).
func (t *Tracker) StartStep(ctx context.Context, id, step string) error {
	return t.update(ctx, "start step", id, func(st store.State, now time.Time) (store.State, error) {
		s, i, err := openStep(&st, step)
		if err != nil {
			return st, err
		}
		if s.Status == store.StepRunning {
			return st, fmt.Errorf("%w: step %q is already running", store.ErrInvalidTransition, step)
		}
		s.Status, s.StartedAt, s.Attempt = store.StepRunning, now, 1
		startTask(&st, now)
		putStep(&st, i, s)
		return st, nil
	})
}

// RetryStep records that an attempt of a running step failed with cause
// and that the step goes on with a new attempt: its Attempt increments and
// its Error holds cause until the step ends.
func (t *Tracker) RetryStep(ctx context.Context, id, step string, cause error) error {
	msg := message(cause, "attempt failed")
	return t.update(ctx, "retry step", id, func(st store.State, _ time.Time) (store.State, error) {
		s, i, err := openStep(&st, step)
		if err != nil {
			return st, err
		}
		if s.Status != store.StepRunning {
			return st, fmt.Errorf("%w: step %q is %s, not running", store.ErrInvalidTransition, step, s.Status)
		}
		s.Attempt++
		s.Error = msg
		putStep(&st, i, s)
		return st, nil
	})
}

// SucceedStep marks a step success, adding it if the task does not have
// it, and marks a pending task running.
func (t *Tracker) SucceedStep(ctx context.Context, id, step string) error {
	return t.update(ctx, "succeed step", id, func(st store.State, now time.Time) (store.State, error) {
		s, i, err := openStep(&st, step)
		if err != nil {
			return st, err
		}
		s.Status, s.CompletedAt, s.Error = store.StepSuccess, now, ""
		startTask(&st, now)
		putStep(&st, i, s)
		return st, nil
	})
}

// FailStep marks a step failed with err's message, adding it if the task
// does not have it. The task goes on: fail it with [Tracker.Fail] if the
// step's failure ends the work.
func (t *Tracker) FailStep(ctx context.Context, id, step string, err error) error {
	msg := message(err, "failed")
	return t.update(ctx, "fail step", id, func(st store.State, now time.Time) (store.State, error) {
		s, i, err := openStep(&st, step)
		if err != nil {
			return st, err
		}
		s.Status, s.CompletedAt, s.Error = store.StepFailed, now, msg
		putStep(&st, i, s)
		return st, nil
	})
}

// SkipStep marks a step skipped, adding it if the task does not have it.
func (t *Tracker) SkipStep(ctx context.Context, id, step string) error {
	return t.update(ctx, "skip step", id, func(st store.State, now time.Time) (store.State, error) {
		s, i, err := openStep(&st, step)
		if err != nil {
			return st, err
		}
		s.Status, s.CompletedAt = store.StepSkipped, now
		putStep(&st, i, s)
		return st, nil
	})
}

// SetProgress records how far the work has come and marks a pending task
// running. Done and Total must not be negative, and Done must not exceed
// a known Total; a long message is truncated.
func (t *Tracker) SetProgress(ctx context.Context, id string, p store.Progress) error {
	if p.Done < 0 || p.Total < 0 || (p.Total > 0 && p.Done > p.Total) {
		return t.fail(ctx, "set progress", id,
			fmt.Errorf("%w: progress %d of %d", store.ErrInvalidInput, p.Done, p.Total))
	}
	p.Message = truncate(p.Message)
	return t.update(ctx, "set progress", id, func(st store.State, now time.Time) (store.State, error) {
		if st.Status.Terminal() {
			return st, terminal(st.Status)
		}
		startTask(&st, now)
		st.Progress = p
		return st, nil
	})
}

// SetResult merges fields into the task's result fields, such as
// "entities_extracted" or "vector_indexed". Each value is recorded as JSON:
// a value json.Marshal cannot encode, or fields whose encoded size would
// exceed [MaxFieldsSize], are refused and nothing is recorded.
func (t *Tracker) SetResult(ctx context.Context, id string, fields map[string]any) error {
	return t.update(ctx, "set result", id, func(st store.State, _ time.Time) (store.State, error) {
		if st.Status.Terminal() {
			return st, terminal(st.Status)
		}
		result, err := encodeFields(st.Result, fields)
		if err != nil {
			return st, err
		}
		st.Result = result
		return st, nil
	})
}

// Heartbeat renews the lease of a task that has not ended (see
// [WithLease]) and tells readers its work is alive. It changes nothing
// else.
func (t *Tracker) Heartbeat(ctx context.Context, id string) error {
	return t.update(ctx, "heartbeat", id, func(st store.State, _ time.Time) (store.State, error) {
		if st.Status.Terminal() {
			return st, terminal(st.Status)
		}
		return st, nil
	})
}

// Succeed ends a running task as success. Steps still pending are marked
// skipped and steps still running success.
func (t *Tracker) Succeed(ctx context.Context, id string) error {
	return t.update(ctx, "succeed", id, func(st store.State, now time.Time) (store.State, error) {
		switch {
		case st.Status.Terminal():
			return st, terminal(st.Status)
		case st.Status != store.StatusRunning:
			return st, fmt.Errorf("%w: task is %s, not running", store.ErrInvalidTransition, st.Status)
		}
		end(&st, store.StatusSuccess, now, "")
		return st, nil
	})
}

// Fail ends a pending or running task as failed, recording err's message
// and details. details holds facts for the client, such as the input that
// failed; each value is recorded as JSON (or as its fmt form if it cannot
// be encoded), the type of err is added as [ExceptionTypeKey] unless
// details has it, and details too large to keep are replaced by
// [DetailsTruncatedKey]. Steps still pending are marked skipped and steps
// still running failed.
func (t *Tracker) Fail(ctx context.Context, id string, err error, details map[string]any) error {
	msg, encoded := message(err, "failed"), encodeDetails(err, details)
	return t.update(ctx, "fail", id, func(st store.State, now time.Time) (store.State, error) {
		if st.Status.Terminal() {
			return st, terminal(st.Status)
		}
		end(&st, store.StatusFailed, now, msg)
		st.ErrorDetails = encoded
		return st, nil
	})
}

// Cancel ends a pending or running task as canceled, recording cause's
// message (or "canceled" when cause is nil). Steps still pending are
// marked skipped and steps still running failed.
func (t *Tracker) Cancel(ctx context.Context, id string, cause error) error {
	msg := message(cause, "canceled")
	return t.update(ctx, "cancel", id, func(st store.State, now time.Time) (store.State, error) {
		if st.Status.Terminal() {
			return st, terminal(st.Status)
		}
		end(&st, store.StatusCanceled, now, msg)
		return st, nil
	})
}

// Retry starts a new attempt of an ended task: it becomes pending again
// with Attempt incremented, its steps pending, and its times (but
// CreatedAt), error, progress and result fields cleared. A task that has
// not ended is refused with [store.ErrInvalidTransition].
func (t *Tracker) Retry(ctx context.Context, id string) error {
	return t.update(ctx, "retry", id, func(st store.State, _ time.Time) (store.State, error) {
		if !st.Status.Terminal() {
			return st, fmt.Errorf("%w: task is %s, not ended", store.ErrInvalidTransition, st.Status)
		}
		steps := make([]store.Step, len(st.Steps))
		for i, s := range st.Steps {
			steps[i] = store.Step{Name: s.Name, Status: store.StepPending}
		}
		st = store.State{
			ID:            st.ID,
			CorrelationID: st.CorrelationID,
			Status:        store.StatusPending,
			CreatedAt:     st.CreatedAt,
			Steps:         steps,
			Attempt:       st.Attempt + 1,
			Version:       st.Version,
		}
		return st, nil
	})
}

// terminal returns the error for a change asked of an ended task.
func terminal(status store.Status) error {
	return fmt.Errorf("%w: task is %s", store.ErrTerminal, status)
}

// startTask marks a pending task running: work on it has begun.
func startTask(st *store.State, now time.Time) {
	if st.Status == store.StatusPending {
		st.Status, st.StartedAt = store.StatusRunning, now
	}
}

// end makes st terminal and closes its open steps: pending ones are
// skipped, running ones end as the task did (success, or failed with msg).
func end(st *store.State, status store.Status, now time.Time, msg string) {
	st.Status, st.CompletedAt, st.ErrorMessage = status, now, msg
	shared := true
	for i, s := range st.Steps {
		if s.Status.Terminal() {
			continue
		}
		if shared {
			st.Steps, shared = slices.Clone(st.Steps), false
		}
		s.CompletedAt = now
		switch {
		case s.Status == store.StepPending:
			s.Status = store.StepSkipped
		case status == store.StatusSuccess:
			s.Status, s.Error = store.StepSuccess, ""
		default:
			s.Status, s.Error = store.StepFailed, msg
		}
		st.Steps[i] = s
	}
}

// openStep returns the step named name of a task that has not ended, and
// its index, or a new pending step and -1 if the task has none by that
// name. It refuses a step that has ended.
func openStep(st *store.State, name string) (store.Step, int, error) {
	if st.Status.Terminal() {
		return store.Step{}, 0, terminal(st.Status)
	}
	for i, s := range st.Steps {
		if s.Name == name {
			if s.Status.Terminal() {
				return s, i, fmt.Errorf("%w: step %q is %s", store.ErrTerminal, name, s.Status)
			}
			return s, i, nil
		}
	}
	if err := checkStepName(name); err != nil {
		return store.Step{}, 0, err
	}
	if len(st.Steps) >= MaxSteps {
		return store.Step{}, 0, fmt.Errorf("%w: more than %d steps", store.ErrTooLarge, MaxSteps)
	}
	return store.Step{Name: name, Status: store.StepPending}, -1, nil
}

// putStep sets step i of st, or appends s when i is -1, without changing
// the slice st shared with the state it was copied from.
func putStep(st *store.State, i int, s store.Step) {
	if i < 0 {
		st.Steps = append(slices.Clip(st.Steps), s)
		return
	}
	st.Steps = slices.Clone(st.Steps)
	st.Steps[i] = s
}

// planSteps adds the named steps st does not have as pending, in order.
func planSteps(st *store.State, names []string) error {
	var added []store.Step
	for _, name := range names {
		if _, ok := st.Step(name); ok || slices.ContainsFunc(added, func(s store.Step) bool { return s.Name == name }) {
			continue
		}
		if err := checkStepName(name); err != nil {
			return err
		}
		if added == nil {
			added = make([]store.Step, 0, len(names))
		}
		added = append(added, store.Step{Name: name, Status: store.StepPending})
	}
	if len(st.Steps)+len(added) > MaxSteps {
		return fmt.Errorf("%w: more than %d steps", store.ErrTooLarge, MaxSteps)
	}
	if len(added) > 0 {
		st.Steps = slices.Concat(st.Steps, added)
	}
	return nil
}
