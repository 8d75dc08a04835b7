package store

import "errors"

// Errors reported by stores and by the tracker. Callers test for them with
// [errors.Is]; the errors returned wrap them with the operation and the task.
var (
	// ErrNotFound means no task has the id: it was never created, or it
	// was deleted or expired.
	ErrNotFound = errors.New("task not found")

	// ErrExists means a task with the id already exists.
	ErrExists = errors.New("task already exists")

	// ErrConflict means a write was made against a version that is no
	// longer the stored one: another writer got there first.
	ErrConflict = errors.New("task version conflict")

	// ErrStale means a change was made through an attempt of a task that
	// is no longer its current one: the task was retried, or created
	// anew, since. It is refused, and the work of that attempt should
	// stop recording.
	ErrStale = errors.New("task attempt is stale")

	// ErrTerminal means a change was asked of a task or step that has
	// already ended; it stays as it was.
	ErrTerminal = errors.New("task or step has ended")

	// ErrInvalidTransition means a change is not allowed from the current
	// status, such as succeeding a task that has not started.
	ErrInvalidTransition = errors.New("invalid transition")

	// ErrInvalidID means a task id breaks the rules of [ValidateID].
	ErrInvalidID = errors.New("invalid task id")

	// ErrInvalidInput means an input other than the id breaks a
	// documented rule, such as an empty step name or negative progress.
	ErrInvalidInput = errors.New("invalid input")

	// ErrTooLarge means an input exceeds a documented size limit.
	ErrTooLarge = errors.New("input too large")

	// ErrCorrupt means stored data could not be decoded.
	ErrCorrupt = errors.New("stored task is corrupt")

	// ErrUnavailable means the store cannot be reached or cannot answer
	// now (down, timed out, closed, loading). Whether a write that fails
	// this way took effect is unknown. HTTP handlers answer 503.
	ErrUnavailable = errors.New("store unavailable")
)
