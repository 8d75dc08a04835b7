package store

import (
	"context"
	"fmt"
	"time"
)

// Store keeps the latest [State] of each task. It is a versioned record
// store: it never decides whether a change is legal (the tracker does), it
// only refuses writes made against a state that is no longer the stored
// one, which makes every transition atomic however many processes write.
//
// Every method is safe for concurrent use, takes a context first and
// respects its cancellation and deadline, and rejects an id that
// [ValidateID] rejects with an error wrapping [ErrInvalidID]. An error that
// wraps [ErrUnavailable] means the store could not answer; for a write,
// whether it took effect is then unknown. States go in and out as copies:
// a caller may change a State it passed to Put or got from Get, and the
// store never changes one it handed out.
type Store interface {
	// Get returns the current state of the task id, or an error wrapping
	// ErrNotFound if there is none (never created, deleted or expired).
	Get(ctx context.Context, id string) (State, error)

	// Put applies w, a compare-and-set write, or refuses it with an error
	// wrapping ErrConflict and changes nothing. See [Write] for when a
	// write applies. Put refuses a write that [Write.Validate] rejects,
	// with its error.
	//
	// A successful Put is seen by every later Get and, unless w.Quiet, is
	// delivered to watchers. The store keeps the state's times to the
	// millisecond at least and in UTC.
	Put(ctx context.Context, w Write) error

	// Delete removes the task id, and with it the memory of its writes.
	// Deleting an unknown task is not an error.
	Delete(ctx context.Context, id string) error
}

// MinWriteIDs is how many of a task's latest write ids a Store remembers
// at least, so that a write resent after its reply was lost is recognised
// even when other writes were applied in between (see [Write]).
const MinWriteIDs = 8

// Write is one compare-and-set write of a task, for [Store.Put].
//
// It applies when the stored task is the one it was computed from:
//
//   - Prev 0: no task is stored under the id. Version 1 creates a task;
//     a higher version restores one that the store lost (a server that
//     restarted empty) with the versions its readers knew.
//   - Prev above 0: the stored task has version Prev and the incarnation
//     of State, and State.Version is Prev+1.
//
// Otherwise the write is refused with [ErrConflict]: another writer got
// there first, or the task was deleted, expired, or created anew (a new
// incarnation) since the write was computed. A version number alone would
// not tell a task from the one created after it was lost.
//
// A write whose ID is among the last [MinWriteIDs] write ids the store
// applied to the task is a resend of a write already applied (its reply
// was lost): Put changes nothing and returns nil, however many writes
// came in between.
type Write struct {
	// State is the new state of task State.ID.
	State State
	// Prev is the version the write was computed from; 0 means no task.
	Prev int64
	// TTL, when positive, makes the task expire TTL after this write; a
	// write with TTL <= 0 keeps it until it is deleted.
	TTL time.Duration
	// ID identifies the write, so that a resend of it is recognised: a
	// unique string of at most MaxIDLen bytes, or "" for a write that is
	// never resent.
	ID string
	// Quiet marks a write that watchers need not hear of, such as a
	// lease renewal: it is not delivered to them, who see its state with
	// the next write that is.
	Quiet bool
}

// Validate reports whether w can be applied by a store: its state passes
// [State.Validate], and its versions and id are well formed (else the
// error wraps [ErrInvalidInput]).
func (w Write) Validate() error {
	if err := w.State.Validate(); err != nil {
		return err
	}
	switch {
	case w.Prev < 0:
		return fmt.Errorf("%w: previous version %d is negative", ErrInvalidInput, w.Prev)
	case w.Prev > 0 && w.State.Version != w.Prev+1:
		return fmt.Errorf("%w: version %d does not follow version %d", ErrInvalidInput, w.State.Version, w.Prev)
	case len(w.ID) > MaxIDLen:
		return fmt.Errorf("%w: write id of %d bytes (%d allowed)", ErrInvalidInput, len(w.ID), MaxIDLen)
	}
	return nil
}

// Watcher is implemented by stores that can push changes to readers.
type Watcher interface {
	// Watch sends the current state of task id on the returned channel,
	// then each later state, in version order. A reader that falls behind
	// gets the latest state, never an older one: versions it receives
	// strictly increase but may skip. The states of quiet writes (see
	// [Write]) are not sent on their own.
	//
	// The channel is closed after a terminal state is sent (at once if the
	// task had already ended), when ctx is done, and when watching cannot
	// go on: the task was deleted, expired or created anew, or the store
	// failed. A caller that needs to know which can call Get. Watch
	// returns an error wrapping ErrNotFound if the task does not exist,
	// and frees everything it holds once the channel is closed.
	Watch(ctx context.Context, id string) (<-chan State, error)
}
