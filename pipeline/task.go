package pipeline

import (
	"maps"
	"sync"

	"github.com/taskstatus/taskstatus/store"
)

// Task is what a step sees of the task it works for: its id, and methods
// to report progress, set result fields and attach details to the step's
// failure. Its methods are safe for concurrent use. Recording errors are
// reported to the tracker's error handler, not returned: they never fail
// the step.
type Task struct {
	run *run

	mu      sync.Mutex
	details map[string]any
}

// ID returns the task's id.
func (t *Task) ID() string { return t.run.id }

// Progress records how far the work has come: done of total units (total
// 0 if unknown) and a short message. It is the task's progress, shared by
// its steps: the last report wins.
func (t *Task) Progress(done, total int64, message string) {
	_ = t.run.tr.SetProgress(t.run.rec, t.run.id, store.Progress{Done: done, Total: total, Message: message})
}

// SetResult merges fields into the task's result fields, such as
// "entities_extracted", at once: a client sees them while the work goes on.
// See [tracker.Tracker.SetResult] for what is refused.
func (t *Task) SetResult(fields map[string]any) {
	_ = t.run.tr.SetResult(t.run.rec, t.run.id, fields)
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
