package tracker

import (
	"fmt"
	"slices"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// StepProgress records how far a running step's own work has come (see
// [store.Step.Progress]), under the rules of [SetProgress]. A step that is
// not running is refused with [store.ErrInvalidTransition].
func StepProgress(step string, p store.Progress) Change {
	p, err := checkProgress(p)
	c := runningStepChange("set step progress", step, func(s *store.Step, _ stamp) error {
		s.Progress = p
		return nil
	})
	c.err = err
	return c
}

// StartSubStep marks a sub-step of a running step running, adding it to
// the step if it has none by that name (at most [store.MaxSubSteps]; more
// are refused with [store.ErrTooLarge]). A sub-step already running is
// refused with [store.ErrInvalidTransition].
func StartSubStep(step, sub string) Change {
	return subStepChange("start sub-step", step, sub, func(s *store.SubStep, at stamp) error {
		if s.Status == store.StepRunning {
			return fmt.Errorf("%w: sub-step %q of step %q is already running", store.ErrInvalidTransition, sub, step)
		}
		s.Status, s.StartedAt = store.StepRunning, at.now
		return nil
	})
}

// SucceedSubStep marks a sub-step of a running step success, adding it if
// the step does not have it.
func SucceedSubStep(step, sub string) Change {
	return subStepChange("succeed sub-step", step, sub, func(s *store.SubStep, at stamp) error {
		s.Status, s.CompletedAt = store.StepSuccess, at.now
		return nil
	})
}

// FailSubStep marks a sub-step of a running step failed with err's
// message, adding it if the step does not have it. The step goes on: fail
// it with [FailStep] if the sub-step's failure ends its work.
func FailSubStep(step, sub string, err error) Change {
	msg := message(err, "failed")
	return subStepChange("fail sub-step", step, sub, func(s *store.SubStep, at stamp) error {
		s.Status, s.CompletedAt, s.Error = store.StepFailed, at.now, msg
		return nil
	})
}

// SkipSubStep marks a sub-step of a running step skipped, adding it if
// the step does not have it.
func SkipSubStep(step, sub string) Change {
	return subStepChange("skip sub-step", step, sub, func(s *store.SubStep, at stamp) error {
		s.Status, s.CompletedAt = store.StepSkipped, at.now
		return nil
	})
}

// runningStepChange returns the change named op that edits the step named
// step, which must be running.
func runningStepChange(op, step string, edit func(s *store.Step, at stamp) error) Change {
	return stepChange(op, step, func(s *store.Step, _ *store.State, at stamp) error {
		if s.Status != store.StepRunning {
			return fmt.Errorf("%w: step %q is %s, not running", store.ErrInvalidTransition, step, s.Status)
		}
		return edit(s, at)
	})
}

// subStepChange returns the change named op that edits sub-step sub of the
// running step named step, adding the sub-step if the step has none by
// that name. A sub-step that has ended is refused with [store.ErrTerminal].
func subStepChange(op, step, sub string, edit func(s *store.SubStep, at stamp) error) Change {
	return runningStepChange(op, step, func(s *store.Step, at stamp) error {
		// The array may be shared with states the Tracker keeps, which
		// are never edited in place, nor appended to: this change edits a
		// copy.
		s.SubSteps = slices.Clone(s.SubSteps)
		i := slices.IndexFunc(s.SubSteps, func(x store.SubStep) bool { return x.Name == sub })
		switch {
		case i >= 0 && s.SubSteps[i].Status.Terminal():
			return fmt.Errorf("%w: sub-step %q of step %q is %s", store.ErrTerminal, sub, step, s.SubSteps[i].Status)
		case i < 0:
			if err := checkStepName(sub); err != nil {
				return err
			}
			if len(s.SubSteps) >= store.MaxSubSteps {
				return fmt.Errorf("%w: more than %d sub-steps in step %q", store.ErrTooLarge, store.MaxSubSteps, step)
			}
			i = len(s.SubSteps)
			s.SubSteps = append(s.SubSteps, store.SubStep{Name: sub, Status: store.StepPending})
		}
		return edit(&s.SubSteps[i], at)
	})
}

// closeSubSteps ends the open sub-steps of s, whose step ends with status:
// pending ones are skipped, running ones end as the step did (success,
// skipped, or failed with msg).
func closeSubSteps(s *store.Step, status store.StepStatus, now time.Time, msg string) {
	if !slices.ContainsFunc(s.SubSteps, func(x store.SubStep) bool { return !x.Status.Terminal() }) {
		return
	}
	s.SubSteps = slices.Clip(slices.Clone(s.SubSteps))
	for i := range s.SubSteps {
		sub := &s.SubSteps[i]
		switch {
		case sub.Status.Terminal():
			continue
		case sub.Status == store.StepPending || status == store.StepSkipped:
			sub.Status = store.StepSkipped
		case status == store.StepSuccess:
			sub.Status = store.StepSuccess
		default:
			sub.Status, sub.Error = store.StepFailed, msg
		}
		sub.CompletedAt = now
	}
}
