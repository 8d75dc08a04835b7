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
// # Changes, by id and by attempt
//
// Every change is a [Change], made with a function of this package and
// applied in one of two ways:
//
//   - by id, with [Tracker.Apply], to the task as it is now: to create it
//     ([Create]), start a new attempt ([Retry]) or cancel it ([Cancel]),
//     from a request handler or any process;
//   - through a [Run], the handle of one attempt that [Tracker.Start]
//     returns, for the changes the attempt's work makes: its steps
//     ([StartStep], [SucceedStep], ...), progress, results and end.
//
// Several changes applied together are one atomic write: a step's end and
// the next step's start, or a failed step and the task's failure. Readers
// see them together or not at all.
//
//	err := tr.Apply(ctx, id, tracker.Create("embed", "index"), tracker.SetResult(fields))
//	run, err := tr.Start(ctx, id, tracker.StartStep("embed"))
//	err = run.Apply(ctx, tracker.SucceedStep("embed"), tracker.StartStep("index"))
//	err = run.Apply(ctx, tracker.SucceedStep("index"), tracker.Succeed())
//
// # One round trip, no lost update
//
// Each write is a compare-and-set of the task's version and incarnation
// (see [store.Write]). A Run keeps the state it recorded, and the Tracker
// the states it wrote by id, within a bound on their memory
// ([WithCacheSize]), so a write is one store round trip; if
// another writer got there first, the task is read and the changes applied
// to it again, so no update is lost.
//
// # Attempts
//
// A Run's changes apply only to its attempt. Once the task is retried, or
// created anew under the same id, they are refused with [store.ErrStale]:
// the work of an old attempt, if it is still going (a slow worker whose
// lease ended), cannot write into the next one. With [WithLease], a task
// whose work stops renewing its lease is abandoned
// ([store.State.Abandoned]) and can be retried at once; [Tracker.Rescue]
// fails abandoned tasks in the background, so that none stays running
// until it expires.
//
// # Cancel from anywhere, and hear of every end
//
// [RequestCancel] asks for the cancellation of a task from any process,
// by id; the work of its attempt learns of it through [Run.WatchCancel],
// which follows the task through the store's watch, stops, and records the
// task canceled. [WithOnEnd] hears of each task that a Tracker's write
// ended; given to the Tracker of every process, it hears of every end.
//
// # Observers
//
// An [Observer] added with [WithObserver] is told of each write a Tracker
// makes, as an [Event]: the task's state before and after it, the changes,
// how long it took; and of each error the error handler is told of. It is
// the one hook that metrics, traces, logs and completion hooks attach to:
// [WithOnEnd] is an Observer, and so is the Observe method of the
// otelstatus package's Telemetry, which makes OpenTelemetry metrics and
// spans of the events. A Tracker without observers pays nothing for them.
//
// # Tracking never breaks the work, and never lies
//
// Every call is bounded by a timeout (see [WithTimeout]), never panics on a
// store failure, and tells its errors to the error handler (slog by
// default, see [WithErrorHandler]) as well as returning them, so the work
// can go on while the failure is logged.
//
// A change of a Run that the store did not take (it did not answer, or its
// reply was lost) is not lost: the Run keeps it, with the changes made
// after it, and the Tracker writes them in the background once the store
// answers again, reading the task and applying them again if need be;
// while they wait, later changes of the Run wait behind them without
// waiting for the store. A write resent after a lost reply is recognised
// by the store as applied, so nothing is applied twice. If the store comes
// back without the task (a Redis restarted without persistence), the Run
// writes it again from what it recorded. The recorded state thus converges
// to what the work did.
//
// The changes that wait are bounded: at most 10,000 Runs keep changes at
// once (beyond, those of the Run that has waited longest are dropped), for
// at most the tasks' time to live ([WithTTL]); dropped changes are told to
// the error handler. [Tracker.Close] writes what waits before a service
// exits, until its context is done. What waits is in memory: if the
// process dies during the outage too, it is lost, and the task shows
// abandoned once its lease ends (and is rescued).
//
// Changes applied by id are not kept: their caller, a request handler for
// instance, learns of the failure ([store.ErrUnavailable]) and answers its
// own caller, who may try again.
//
// # Correlation ids
//
// [ContextWithCorrelationID] puts a request's correlation id in a context;
// [Create] records it, and so does any later write if the task has none
// yet. Keep it for background work with [context.WithoutCancel].
//
// # Limits
//
// Inputs are bounded so a task's stored size is: at most [MaxSteps] steps,
// step names up to [MaxStepNameLen] bytes, messages up to [MaxMessageLen]
// bytes (longer ones are cut and end in [TruncatedMarker]), and at most
// [MaxFieldsSize] bytes of encoded error details and of result fields.
package tracker
