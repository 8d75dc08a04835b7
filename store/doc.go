// Package store defines the data model of a tracked task and the contract
// that storage backends implement.
//
// Services do not call a Store to change a task: they call a
// [github.com/taskstatus/taskstatus/tracker.Tracker], which owns the state
// machine and writes each new [State] through the Store. A Store is a
// versioned record store with compare-and-set: it keeps the latest State of
// each task, refuses a [Write] computed from a state that is no longer the
// stored one with [ErrConflict], and knows nothing about which transitions
// are legal. This keeps the rules in one place, lets a transition be one
// store round trip, and fits any backend that can compare a version and
// write atomically (a Redis script, an SQL UPDATE ... WHERE version = $1, a
// mutex).
//
// # Write identity
//
// A write names the state it was computed from: its version, and the
// task's incarnation, which differs each time the id is created, so that a
// task lost and created anew is never overwritten by a writer of the old
// one that happens to hold the same version number. A write also carries
// an id, so that a store recognises a write resent after its reply was
// lost, even when other writes came in between, and answers it as applied
// rather than as a conflict. docs/writing-a-store.md says how a store does
// both.
//
// # Task states
//
// A task moves through these statuses (docs/state_machine.md draws them):
//
//	pending ──Start──▶ running ──Succeed──▶ success
//	   │                  │
//	   ├──Fail────────────┴──Fail──────────▶ failed
//	   └──Cancel─────────────Cancel────────▶ canceled
//
//	success, failed, canceled ──Retry──▶ pending (Attempt+1)
//	running, abandoned        ──Retry──▶ pending (Attempt+1)
//
// The statuses mean:
//
//   - pending: the work is queued. The task is known, so its status is
//     served instead of "not found".
//   - running: the work has started.
//   - success: the work finished. Terminal.
//   - failed: the work stopped with an error; ErrorMessage and ErrorDetails
//     say why. Terminal.
//   - canceled: the work was stopped before it finished. Terminal.
//
// A terminal task never changes again, except through an explicit new
// attempt (Retry), which increments Attempt. A task that has not ended and
// whose lease ended is abandoned ([State.Abandoned]): its process stopped
// renewing it, and Retry starts a new attempt of it too.
//
// Each step of a task is pending, running, or one of the terminal step
// statuses success, failed and skipped; a step in a terminal status never
// changes.
//
// # Optional capabilities
//
// A Store may also implement [Watcher] to push changes to readers (long-poll
// and Server-Sent Events use it). Callers detect it with a type assertion.
// Writes marked Quiet, such as lease renewals, are not pushed.
//
// The package [github.com/taskstatus/taskstatus/store/storetest] checks that
// a Store keeps this contract.
package store
