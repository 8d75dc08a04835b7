// Package tracker records the state of background tasks: it is what a
// service calls as its work is queued, runs, passes through its steps and
// ends.
//
// A [Tracker] owns the state machine drawn in the package
// [github.com/taskstatus/taskstatus/store] doc and enforces it in one place:
// a task is created pending, starts running, and ends once as success,
// failed or canceled; a later change of an ended task or step is refused
// with an error wrapping [store.ErrTerminal], and a task is never created
// twice ([store.ErrExists]). The state is kept in a [store.Store]: memory
// for one process, Redis for many.
//
// # Atomic transitions, one round trip
//
// Each call is one transition, applied to the task's latest state and
// written with the store's compare-and-set on the version. The Tracker
// keeps the latest state of the tasks it is writing, so a transition is a
// single store write; a write that loses a race with another process (the
// store reports [store.ErrConflict]) re-reads the task and applies the
// transition again, so no update is lost. Calls for the same task from one
// Tracker are serialized; calls for different tasks run in parallel.
//
// [Tracker.Apply] makes several changes ([Change]) in one write: a step's
// end and the next step's start, or a failed step and the task's failure.
// Readers see them together or not at all, and the store is written once.
//
// # Tracking never breaks the work
//
// Every call is bounded by a timeout (see [WithTimeout]), never panics on
// store failure, and reports each error to the error handler (slog by
// default, see [WithErrorHandler]) as well as returning it, so the work can
// go on while the failure is logged. A call that fails because the store
// is down or slow returns an error wrapping [store.ErrUnavailable]; whether
// its write took effect is then unknown, and the next call re-reads.
//
// # Correlation ids
//
// [ContextWithCorrelationID] puts a request's correlation id in a context;
// [Tracker.Create] records it, and so does any later call if the task has
// none yet. Keep it for background work with [context.WithoutCancel].
//
// # Limits
//
// Inputs are bounded so a task's stored size is: at most [MaxSteps] steps,
// step names up to [MaxStepNameLen] bytes, messages up to [MaxMessageLen]
// bytes (longer ones are cut and end in [TruncatedMarker]), and at most
// [MaxFieldsSize] bytes of encoded error details and of result fields.
package tracker
