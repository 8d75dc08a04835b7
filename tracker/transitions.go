package tracker

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// Change is one change to a task. [Tracker.Apply] makes several in one
// write, so that readers see them together or not at all: a step's success
// and the next step's start, or a failed step, the steps that depend on it
// and the task's failure. Each method of Tracker that changes a task is
// Apply with one Change. Make Changes with the functions of this package,
// such as [StepSucceeded]; the zero Change is invalid.
type Change struct {
	kind     changeKind
	step     string   // the step a step change is about
	steps    []string // the plan of a start
	msg      string   // the message of a failure or retry, already truncated
	progress store.Progress
	fields   map[string]any             // the result fields of a ResultSet
	details  map[string]json.RawMessage // the encoded details of a Failed
	err      error                      // why the Change is invalid, found when it was made
}

type changeKind uint8

const (
	invalidChange changeKind = iota
	started
	stepStarted
	stepRetried
	stepSucceeded
	stepFailed
	stepSkipped
	progressed
	resultSet
	succeeded
	failed
	canceled
	heartbeat
	retried
)

// changeOps names the kinds of change, as in Error.Op.
var changeOps = [...]string{
	invalidChange: "apply", started: "start", stepStarted: "start step",
	stepRetried: "retry step", stepSucceeded: "succeed step", stepFailed: "fail step",
	stepSkipped: "skip step", progressed: "set progress", resultSet: "set result",
	succeeded: "succeed", failed: "fail", canceled: "cancel", heartbeat: "heartbeat", retried: "retry",
}

// Apply makes changes to task id, in order, in one atomic write: if one is
// refused, none is made and its error is returned. It refuses the changes
// that the methods named after them refuse, in the same cases.
func (t *Tracker) Apply(ctx context.Context, id string, changes ...Change) error {
	err := t.write(ctx, id, changes)
	if err != nil {
		return t.fail(ctx, opName(changes), id, err)
	}
	return nil
}

// opName names a call of Apply with changes, for its errors.
func opName(changes []Change) string {
	if len(changes) == 1 {
		return changeOps[changes[0].kind]
	}
	ops := make([]string, len(changes))
	for i, c := range changes {
		ops[i] = changeOps[c.kind]
	}
	return "apply " + strings.Join(ops, ", ")
}

// Started marks a pending task running and plans the named steps: those
// the task does not have yet are added as pending, in order. A task that is
// already running is refused with [store.ErrInvalidTransition], so a second
// start never wipes a record.
func Started(steps ...string) Change { return Change{kind: started, steps: steps} }

// StepStarted marks a step running, adding it if the task does not have
// it, and marks a pending task running too. A step already running is
// refused with [store.ErrInvalidTransition] (see [StepRetried]).
func StepStarted(step string) Change { return Change{kind: stepStarted, step: step} }

// StepRetried records that an attempt of a running step failed with cause
// and that the step goes on with a new attempt: its Attempt increments and
// its Error holds cause until the step ends.
func StepRetried(step string, cause error) Change {
	return Change{kind: stepRetried, step: step, msg: message(cause, "attempt failed")}
}

// StepSucceeded marks a step success, adding it if the task does not have
// it, and marks a pending task running.
func StepSucceeded(step string) Change { return Change{kind: stepSucceeded, step: step} }

// StepFailed marks a step failed with err's message, adding it if the
// task does not have it. The task goes on: fail it with [Failed] if the
// step's failure ends the work.
func StepFailed(step string, err error) Change {
	return Change{kind: stepFailed, step: step, msg: message(err, "failed")}
}

// StepSkipped marks a step skipped, adding it if the task does not have it.
func StepSkipped(step string) Change { return Change{kind: stepSkipped, step: step} }

// Progressed records how far the work has come and marks a pending task
// running. Done and Total must not be negative, and Done must not exceed
// a known Total ([store.ErrInvalidInput]); a long message is truncated.
func Progressed(p store.Progress) Change {
	if p.Done < 0 || p.Total < 0 || (p.Total > 0 && p.Done > p.Total) {
		return Change{kind: progressed, err: fmt.Errorf("%w: progress %d of %d", store.ErrInvalidInput, p.Done, p.Total)}
	}
	p.Message = truncate(p.Message)
	return Change{kind: progressed, progress: p}
}

// ResultSet merges fields into the task's result fields, such as
// "entities_extracted" or "vector_indexed". Each value is recorded as JSON:
// a value json.Marshal cannot encode ([store.ErrInvalidInput]), or fields
// whose encoded size would exceed [MaxFieldsSize] ([store.ErrTooLarge]),
// are refused.
func ResultSet(fields map[string]any) Change { return Change{kind: resultSet, fields: fields} }

// Succeeded ends a running task as success. Steps still pending are marked
// skipped and steps still running success.
func Succeeded() Change { return Change{kind: succeeded} }

// Failed ends a pending or running task as failed, recording err's message
// and details. details holds facts for the client, such as the input that
// failed; each value is recorded as JSON (or as its fmt form if it cannot
// be encoded), the type of err is added as [ExceptionTypeKey] unless
// details has it, and details too large to keep are replaced by
// [DetailsTruncatedKey]. Steps still pending are marked skipped and steps
// still running failed.
func Failed(err error, details map[string]any) Change {
	return Change{kind: failed, msg: message(err, "failed"), details: encodeDetails(err, details)}
}

// Canceled ends a pending or running task as canceled, recording cause's
// message (or "canceled" when cause is nil). Steps still pending are
// marked skipped and steps still running failed.
func Canceled(cause error) Change { return Change{kind: canceled, msg: message(cause, "canceled")} }

// apply changes task st by c, in place: st is the tracker's own copy.
func (c *Change) apply(st *store.State, now time.Time) error {
	switch c.kind {
	case started:
		switch {
		case st.Status.Terminal():
			return terminal(st.Status)
		case st.Status != store.StatusPending:
			return fmt.Errorf("%w: task is already %s", store.ErrInvalidTransition, st.Status)
		}
		if err := planSteps(st, c.steps); err != nil {
			return err
		}
		st.Status, st.StartedAt = store.StatusRunning, now
		return nil
	case stepStarted, stepRetried, stepSucceeded, stepFailed, stepSkipped:
		return c.applyStep(st, now)
	case progressed, resultSet, heartbeat:
		if st.Status.Terminal() {
			return terminal(st.Status)
		}
		switch c.kind {
		case progressed:
			startTask(st, now)
			st.Progress = c.progress
		case resultSet:
			result, err := encodeFields(st.Result, c.fields)
			if err != nil {
				return err
			}
			st.Result = result
		}
		return nil
	case succeeded:
		switch {
		case st.Status.Terminal():
			return terminal(st.Status)
		case st.Status != store.StatusRunning:
			return fmt.Errorf("%w: task is %s, not running", store.ErrInvalidTransition, st.Status)
		}
		end(st, store.StatusSuccess, now, "")
		return nil
	case failed, canceled:
		if st.Status.Terminal() {
			return terminal(st.Status)
		}
		if c.kind == canceled {
			end(st, store.StatusCanceled, now, c.msg)
			return nil
		}
		end(st, store.StatusFailed, now, c.msg)
		st.ErrorDetails = c.details
		return nil
	case retried:
		return retry(st)
	}
	return fmt.Errorf("%w: zero Change", store.ErrInvalidInput)
}

// applyStep changes task st by a step change c.
func (c *Change) applyStep(st *store.State, now time.Time) error {
	s, i, err := openStep(st, c.step)
	if err != nil {
		return err
	}
	switch c.kind {
	case stepStarted:
		if s.Status == store.StepRunning {
			return fmt.Errorf("%w: step %q is already running", store.ErrInvalidTransition, c.step)
		}
		s.Status, s.StartedAt, s.Attempt = store.StepRunning, now, 1
		startTask(st, now)
	case stepRetried:
		if s.Status != store.StepRunning {
			return fmt.Errorf("%w: step %q is %s, not running", store.ErrInvalidTransition, c.step, s.Status)
		}
		s.Attempt++
		s.Error = c.msg
	case stepSucceeded:
		s.Status, s.CompletedAt, s.Error = store.StepSuccess, now, ""
		startTask(st, now)
	case stepFailed:
		s.Status, s.CompletedAt, s.Error = store.StepFailed, now, c.msg
	case stepSkipped:
		s.Status, s.CompletedAt = store.StepSkipped, now
	}
	putStep(st, i, s)
	return nil
}

// retry makes st, ended, the first state of a new attempt.
func retry(st *store.State) error {
	if !st.Status.Terminal() {
		return fmt.Errorf("%w: task is %s, not ended", store.ErrInvalidTransition, st.Status)
	}
	steps := make([]store.Step, len(st.Steps))
	for i, s := range st.Steps {
		steps[i] = store.Step{Name: s.Name, Status: store.StepPending}
	}
	*st = store.State{
		ID:            st.ID,
		CorrelationID: st.CorrelationID,
		Status:        store.StatusPending,
		CreatedAt:     st.CreatedAt,
		Steps:         steps,
		Attempt:       st.Attempt + 1,
		Version:       st.Version,
	}
	return nil
}

// Start is Apply with [Started].
func (t *Tracker) Start(ctx context.Context, id string, steps ...string) error {
	return t.Apply(ctx, id, Started(steps...))
}

// StartStep is Apply with [StepStarted].
func (t *Tracker) StartStep(ctx context.Context, id, step string) error {
	return t.Apply(ctx, id, StepStarted(step))
}

// RetryStep is Apply with [StepRetried].
func (t *Tracker) RetryStep(ctx context.Context, id, step string, cause error) error {
	return t.Apply(ctx, id, StepRetried(step, cause))
}

// SucceedStep is Apply with [StepSucceeded].
func (t *Tracker) SucceedStep(ctx context.Context, id, step string) error {
	return t.Apply(ctx, id, StepSucceeded(step))
}

// FailStep is Apply with [StepFailed].
func (t *Tracker) FailStep(ctx context.Context, id, step string, err error) error {
	return t.Apply(ctx, id, StepFailed(step, err))
}

// SkipStep is Apply with [StepSkipped].
func (t *Tracker) SkipStep(ctx context.Context, id, step string) error {
	return t.Apply(ctx, id, StepSkipped(step))
}

// SetProgress is Apply with [Progressed].
func (t *Tracker) SetProgress(ctx context.Context, id string, p store.Progress) error {
	return t.Apply(ctx, id, Progressed(p))
}

// SetResult is Apply with [ResultSet].
func (t *Tracker) SetResult(ctx context.Context, id string, fields map[string]any) error {
	return t.Apply(ctx, id, ResultSet(fields))
}

// Succeed is Apply with [Succeeded].
func (t *Tracker) Succeed(ctx context.Context, id string) error {
	return t.Apply(ctx, id, Succeeded())
}

// Fail is Apply with [Failed].
func (t *Tracker) Fail(ctx context.Context, id string, err error, details map[string]any) error {
	return t.Apply(ctx, id, Failed(err, details))
}

// Cancel is Apply with [Canceled].
func (t *Tracker) Cancel(ctx context.Context, id string, cause error) error {
	return t.Apply(ctx, id, Canceled(cause))
}

// Heartbeat renews the lease of a task that has not ended (see
// [WithLease]) and tells readers its work is alive. It changes nothing
// else.
func (t *Tracker) Heartbeat(ctx context.Context, id string) error {
	return t.Apply(ctx, id, Change{kind: heartbeat})
}

// Retry starts a new attempt of an ended task: it becomes pending again
// with Attempt incremented, its steps pending, and its times (but
// CreatedAt), error, progress and result fields cleared. It takes the
// correlation id of ctx, if ctx has one. A task that has not ended is
// refused with [store.ErrInvalidTransition].
func (t *Tracker) Retry(ctx context.Context, id string) error {
	return t.Apply(ctx, id, Change{kind: retried})
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
	for i, s := range st.Steps {
		if s.Status.Terminal() {
			continue
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

// putStep sets step i of st, or appends s when i is -1.
func putStep(st *store.State, i int, s store.Step) {
	if i < 0 {
		st.Steps = append(st.Steps, s)
		return
	}
	st.Steps[i] = s
}

// planSteps adds the named steps st does not have as pending, in order.
// It edits st in place: a caller that gets an error discards st.
func planSteps(st *store.State, names []string) error {
	grown := false
	for _, name := range names {
		if _, ok := st.Step(name); ok {
			continue
		}
		if err := checkStepName(name); err != nil {
			return err
		}
		if len(st.Steps) >= MaxSteps {
			return fmt.Errorf("%w: more than %d steps", store.ErrTooLarge, MaxSteps)
		}
		if !grown {
			st.Steps, grown = slices.Grow(st.Steps, len(names)), true
		}
		st.Steps = append(st.Steps, store.Step{Name: name, Status: store.StepPending})
	}
	return nil
}
