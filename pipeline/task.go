package pipeline

import (
	"maps"
	"sync"

	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// Task is what a step sees of the task it works for: its id, and methods
// to report progress, set result fields, renew the task's lease and attach
// details to the step's failure. Its methods are safe for concurrent use.
// They record through the run's [tracker.Run]; recording errors go to the
// tracker's error handler, not to the step: they never fail it.
type Task struct {
	run *run

	mu      sync.Mutex
	details map[string]any
}

// ID returns the task's id.
func (t *Task) ID() string { return t.run.id }

// Progress records how far the work has come: done of total units (total
// 0 if unknown) and a short message. It is the task's progress, shared by
// its steps: the last report wins. See [tracker.SetProgress] for what is
// refused.
func (t *Task) Progress(done, total int64, message string) {
	t.run.write(tracker.SetProgress(store.Progress{Done: done, Total: total, Message: message}))
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
