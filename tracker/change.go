package tracker

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// Change is one change to a task, made with the functions of this package
// ([Create], [StartStep], [Succeed], ...) and applied by [Tracker.Apply]
// or [Run.Apply]. Several changes applied together are one atomic write:
// readers see all of them or none. The zero Change is invalid.
type Change struct {
	op    string // the change's name, as in Error.Op
	apply func(st *store.State, at stamp) error
	err   error // why the Change is invalid, found when it was made
	// kind tells the changes that a writer treats apart.
	kind changeKind
}

type changeKind uint8

const (
	otherChange changeKind = iota
	createChange
	startChange
	retryChange
	heartbeatChange
	requestCancelChange
)

// stamp is what a change may record of when and for whom it is made.
type stamp struct {
	now         time.Time // in UTC
	correlation string    // the correlation id of the call, or ""
}

// Create records a new task: pending, at attempt 1, with the named steps
// planned as pending in order. It must be the first change of a write. A
// task that exists already is left as it is and the write is refused with
// [store.ErrExists]; start a new attempt of an ended task with [Retry].
func Create(steps ...string) Change {
	return Change{op: "create", kind: createChange, apply: func(st *store.State, at stamp) error {
		if exists(st) {
			return store.ErrExists
		}
		*st = store.State{
			ID:            st.ID,
			Incarnation:   newID(),
			CorrelationID: at.correlation,
			Status:        store.StatusPending,
			CreatedAt:     at.now,
			Attempt:       1,
		}
		return planSteps(st, steps)
	}}
}

// Kind sets the task's kind, such as "document" (see [store.State.Kind]),
// which the task can be found by. It is made together with [Create], in
// the same write: a task's kind never changes after ([store.ErrInvalidTransition]).
// An invalid kind is refused with [store.ErrInvalidInput].
func Kind(kind string) Change {
	c := Change{op: "set kind", err: store.ValidateKind(kind)}
	c.apply = func(st *store.State, _ stamp) error {
		if err := creating(st, "kind"); err != nil {
			return err
		}
		st.Kind = kind
		return nil
	}
	return c
}

// Label sets a label of the task, such as "project_id" (see
// [store.State.Labels]), which the task can be found by. It is made
// together with [Create], in the same write: a task's labels never change
// after ([store.ErrInvalidTransition]). An invalid label, or more than
// [store.MaxLabels], is refused with [store.ErrInvalidInput].
func Label(key, value string) Change {
	c := Change{op: "set label", err: store.ValidateLabel(key, value)}
	c.apply = func(st *store.State, _ stamp) error {
		if err := creating(st, "labels"); err != nil {
			return err
		}
		if _, ok := st.Labels[key]; !ok && len(st.Labels) >= store.MaxLabels {
			return fmt.Errorf("%w: more than %d labels", store.ErrInvalidInput, store.MaxLabels)
		}
		st.Labels = maps.Clone(st.Labels)
		if st.Labels == nil {
			st.Labels = make(map[string]string, 1)
		}
		st.Labels[key] = value
		return nil
	}
	return c
}

// creating refuses to set what, a part of st set at creation, unless st
// is being created by the write the change is part of: it exists, and has
// no version yet.
func creating(st *store.State, what string) error {
	if !exists(st) || st.Version != 0 {
		return fmt.Errorf("%w: the %s of a task is set when it is created", store.ErrInvalidTransition, what)
	}
	return nil
}

// start marks a pending task running: the change [Tracker.Start] makes.
func start() Change {
	return Change{op: "start", kind: startChange, apply: func(st *store.State, at stamp) error {
		if err := open(st); err != nil {
			return err
		}
		if st.Status != store.StatusPending {
			return fmt.Errorf("%w: task is already %s", store.ErrInvalidTransition, st.Status)
		}
		st.Status, st.StartedAt = store.StatusRunning, at.now
		return nil
	}}
}

// StartStep marks a step running, adding it if the task does not have it,
// and marks a pending task running too. A step already running is refused
// with [store.ErrInvalidTransition] (see [RetryStep]).
func StartStep(step string) Change {
	return stepChange("start step", step, func(s *store.Step, st *store.State, at stamp) error {
		if s.Status == store.StepRunning {
			return fmt.Errorf("%w: step %q is already running", store.ErrInvalidTransition, step)
		}
		s.Status, s.StartedAt, s.Attempt = store.StepRunning, at.now, 1
		startTask(st, at.now)
		return nil
	})
}

// RetryStep records that an attempt of a running step failed with cause
// and that the step goes on with a new attempt: its Attempt increments,
// its Error holds cause until the step ends, and its progress and
// sub-steps, which were the failed attempt's, are cleared.
func RetryStep(step string, cause error) Change {
	msg := message(cause, "attempt failed")
	return runningStepChange("retry step", step, func(s *store.Step, _ stamp) error {
		s.Attempt++
		s.Error = msg
		s.Progress, s.SubSteps = store.Progress{}, nil
		return nil
	})
}

// SucceedStep marks a step success, adding it if the task does not have
// it, and marks a pending task running.
func SucceedStep(step string) Change {
	return stepChange("succeed step", step, func(s *store.Step, st *store.State, at stamp) error {
		s.Status, s.CompletedAt, s.Error = store.StepSuccess, at.now, ""
		closeSubSteps(s, s.Status, at.now, "")
		startTask(st, at.now)
		return nil
	})
}

// FailStep marks a step failed with err's message, adding it if the task
// does not have it. The task goes on: fail it with [Fail] if the step's
// failure ends the work.
func FailStep(step string, err error) Change {
	msg := message(err, "failed")
	return stepChange("fail step", step, func(s *store.Step, _ *store.State, at stamp) error {
		s.Status, s.CompletedAt, s.Error = store.StepFailed, at.now, msg
		closeSubSteps(s, s.Status, at.now, msg)
		return nil
	})
}

// SkipStep marks a step skipped, adding it if the task does not have it.
func SkipStep(step string) Change {
	return stepChange("skip step", step, func(s *store.Step, _ *store.State, at stamp) error {
		s.Status, s.CompletedAt = store.StepSkipped, at.now
		closeSubSteps(s, s.Status, at.now, "")
		return nil
	})
}

// stepChange returns the change named op that edits the step named step
// of a task that has not ended, adding the step if the task has none by
// that name. A step that has ended is refused with [store.ErrTerminal].
func stepChange(op, step string, edit func(s *store.Step, st *store.State, at stamp) error) Change {
	return Change{op: op, apply: func(st *store.State, at stamp) error {
		if err := open(st); err != nil {
			return err
		}
		i, err := findStep(st, step)
		if err != nil {
			return err
		}
		s := st.Steps[i]
		if err := edit(&s, st, at); err != nil {
			return err
		}
		ownSteps(st)
		st.Steps[i] = s
		return nil
	}}
}

// SetProgress records how far the work has come and marks a pending task
// running. Done and Total must not be negative, and Done must not exceed
// a known Total ([store.ErrInvalidInput]); a long message is truncated.
func SetProgress(p store.Progress) Change {
	p, err := checkProgress(p)
	return Change{op: "set progress", err: err, apply: func(st *store.State, at stamp) error {
		if err := open(st); err != nil {
			return err
		}
		startTask(st, at.now)
		st.Progress = p
		return nil
	}}
}

// checkProgress returns p with its message truncated, or why it cannot be
// recorded: a negative count, or Done beyond a known Total.
func checkProgress(p store.Progress) (store.Progress, error) {
	if p.Done < 0 || p.Total < 0 || (p.Total > 0 && p.Done > p.Total) {
		return p, fmt.Errorf("%w: progress %d of %d", store.ErrInvalidInput, p.Done, p.Total)
	}
	p.Message = truncate(p.Message)
	return p, nil
}

// SetResult merges fields into the task's result fields, such as
// "entities_extracted" or "vector_indexed". Each value is recorded as JSON:
// a value json.Marshal cannot encode ([store.ErrInvalidInput]), or fields
// whose encoded size would exceed [MaxFieldsSize] ([store.ErrTooLarge]),
// are refused.
func SetResult(fields map[string]any) Change {
	c := Change{op: "set result"}
	encoded, err := encodeFields(fields)
	if err != nil {
		c.err = err
		return c
	}
	c.apply = func(st *store.State, _ stamp) error {
		if err := open(st); err != nil {
			return err
		}
		result, err := mergeFields(st.Result, encoded)
		if err != nil {
			return err
		}
		st.Result = result
		return nil
	}
	return c
}

// Succeed ends a running task as success. Steps still pending are marked
// skipped and steps still running success.
func Succeed() Change {
	return Change{op: "succeed", apply: func(st *store.State, at stamp) error {
		if err := open(st); err != nil {
			return err
		}
		if st.Status != store.StatusRunning {
			return fmt.Errorf("%w: task is %s, not running", store.ErrInvalidTransition, st.Status)
		}
		end(st, store.StatusSuccess, at.now, "")
		return nil
	}}
}

// Fail ends a pending or running task as failed, recording err's message
// and details. details holds facts for the client, such as the input that
// failed; each value is recorded as JSON (or as its fmt form if it cannot
// be encoded), the type of err is added as [ExceptionTypeKey] unless
// details has it, and details too large to keep are replaced by
// [DetailsTruncatedKey]. Steps still pending are marked skipped and steps
// still running failed.
func Fail(err error, details map[string]any) Change {
	msg, encoded := message(err, "failed"), encodeDetails(err, details)
	return Change{op: "fail", apply: func(st *store.State, at stamp) error {
		if err := open(st); err != nil {
			return err
		}
		end(st, store.StatusFailed, at.now, msg)
		st.ErrorDetails = encoded
		return nil
	}}
}

// Cancel ends a pending or running task as canceled, recording cause's
// message (or "canceled" when cause is nil). Steps still pending are
// marked skipped and steps still running failed.
func Cancel(cause error) Change {
	msg := message(cause, "canceled")
	return Change{op: "cancel", apply: func(st *store.State, at stamp) error {
		if err := open(st); err != nil {
			return err
		}
		end(st, store.StatusCanceled, at.now, msg)
		return nil
	}}
}

// Heartbeat renews the lease of a task that has not ended (see
// [WithLease]), which tells readers that its work is alive. Applied alone
// it writes a new version that changes nothing else, not even UpdatedAt,
// and that watchers are not told of (see [store.Write]).
func Heartbeat() Change {
	return Change{op: "heartbeat", kind: heartbeatChange, apply: func(st *store.State, _ stamp) error {
		return open(st)
	}}
}

// Retry starts a new attempt of a task that has ended, or that was
// abandoned (its lease ended, see [store.State.Abandoned]): it becomes
// pending again with Attempt incremented, its steps pending, and its times
// (but CreatedAt), error, progress, result fields and cancel request
// cleared. The outcome of the attempt that ends (its status, times, error
// message and details) is added to [store.State.PreviousAttempts], which
// keeps the latest [store.MaxPreviousAttempts]. It takes the
// correlation id of the call's context, if it has one. The work of the
// attempt before, if it still runs, can no longer record anything
// ([store.ErrStale]). A task that is neither ended nor abandoned is
// refused with [store.ErrInvalidTransition].
func Retry() Change {
	return Change{op: "retry", kind: retryChange, apply: func(st *store.State, at stamp) error {
		if !exists(st) {
			return store.ErrNotFound
		}
		if !st.Status.Terminal() && !st.Abandoned(at.now) {
			return fmt.Errorf("%w: task is %s, not ended or abandoned", store.ErrInvalidTransition, st.Status)
		}
		steps := make([]store.Step, len(st.Steps))
		for i, s := range st.Steps {
			steps[i] = store.Step{Name: s.Name, Status: store.StepPending}
		}
		outcome := store.Attempt{
			Attempt: st.Attempt, Status: st.Status, StartedAt: st.StartedAt, CompletedAt: st.CompletedAt,
			ErrorMessage: st.ErrorMessage, ErrorDetails: st.ErrorDetails,
		}
		if !st.Status.Terminal() {
			outcome.ErrorMessage = abandonedMessage
		}
		previous := append(slices.Clone(st.PreviousAttempts), outcome)
		previous = previous[max(0, len(previous)-store.MaxPreviousAttempts):]
		*st = store.State{
			ID:               st.ID,
			Incarnation:      st.Incarnation,
			Kind:             st.Kind,
			Labels:           st.Labels,
			CorrelationID:    cmp.Or(at.correlation, st.CorrelationID),
			Status:           store.StatusPending,
			CreatedAt:        st.CreatedAt,
			Steps:            steps,
			Attempt:          st.Attempt + 1,
			PreviousAttempts: previous,
			Version:          st.Version,
		}
		return nil
	}}
}

// abandonedMessage is the error message kept of an attempt that was
// retried while abandoned: it did not end.
const abandonedMessage = "abandoned: its lease ended before it did"

// exists reports whether st is a task, rather than the zero State of an
// id that names none.
func exists(st *store.State) bool {
	return st.Status != ""
}

// open refuses a change of a task that does not exist or has ended.
func open(st *store.State) error {
	switch {
	case !exists(st):
		return store.ErrNotFound
	case st.Status.Terminal():
		return fmt.Errorf("%w: task is %s", store.ErrTerminal, st.Status)
	}
	return nil
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
	ownSteps(st)
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
		closeSubSteps(&s, s.Status, now, s.Error)
		st.Steps[i] = s
	}
}

// findStep returns the index of the step named name, adding it as pending
// if st has none by that name. It refuses a step that has ended.
func findStep(st *store.State, name string) (int, error) {
	for i, s := range st.Steps {
		if s.Name != name {
			continue
		}
		if s.Status.Terminal() {
			return 0, fmt.Errorf("%w: step %q is %s", store.ErrTerminal, name, s.Status)
		}
		return i, nil
	}
	if err := addStep(st, name); err != nil {
		return 0, err
	}
	return len(st.Steps) - 1, nil
}

// planSteps adds the named steps st does not have as pending, in order.
func planSteps(st *store.State, names []string) error {
	for _, name := range names {
		if _, ok := st.Step(name); ok {
			continue
		}
		if err := addStep(st, name); err != nil {
			return err
		}
	}
	return nil
}

// addStep appends a pending step named name, within the limits.
func addStep(st *store.State, name string) error {
	if err := checkStepName(name); err != nil {
		return err
	}
	if len(st.Steps) >= MaxSteps {
		return fmt.Errorf("%w: more than %d steps", store.ErrTooLarge, MaxSteps)
	}
	ownSteps(st)
	st.Steps = append(st.Steps, store.Step{Name: name, Status: store.StepPending})
	return nil
}

// ownSteps gives st a steps array of its own, which a change may edit: the
// states a Tracker keeps share their steps arrays, which are never edited
// in place, so that a change that leaves the steps as they are copies
// none of them. Its capacity is its length, so that an append to a shared
// array makes a new one too.
func ownSteps(st *store.State) {
	st.Steps = slices.Clip(slices.Clone(st.Steps))
}
