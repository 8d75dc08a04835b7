package store

import (
	"context"
	"time"
)

// Store keeps the latest [State] of each task. It is a versioned record
// store: it never decides whether a change is legal (the tracker does), it
// only refuses writes made against a stale version, which makes every
// transition atomic however many processes write.
//
// Every method is safe for concurrent use, takes a context first and
// respects its cancellation, and rejects an id that [ValidateID] rejects
// with an error wrapping [ErrInvalidID]. Get, Put and Delete use their
// context only until they return: a caller may reuse it then. An error
// that wraps [ErrUnavailable] means the store could not answer; for a
// write, whether it took effect is then unknown.
type Store interface {
	// Get returns the current state of the task id, or an error wrapping
	// ErrNotFound if there is none (never created, deleted or expired).
	// The returned State may share memory with the store: treat it as
	// read-only.
	Get(ctx context.Context, id string) (State, error)

	// Put writes st as the new state of task st.ID if the stored version is
	// st.Version-1, where version 0 means the task does not exist. So
	// st.Version 1 creates a task, and every later write names the version
	// after the one it was computed from. If the stored version differs,
	// Put changes nothing and returns an error wrapping ErrConflict. A
	// store that resends a write whose reply it lost must not report its
	// own first attempt as a conflict. Put refuses a state that
	// [State.Validate] rejects, with its error.
	//
	// With ttl > 0 the task expires ttl after this write; with ttl <= 0 it
	// does not expire. A successful Put is seen by every later Get and is
	// delivered to watchers. The store keeps st's times to the millisecond
	// at least and in UTC. Put does not keep st.Steps: the caller may
	// change it once Put returns. (ErrorDetails and Result are never
	// changed in place, see State.)
	Put(ctx context.Context, st State, ttl time.Duration) error

	// Delete removes the task id. Deleting an unknown task is not an error.
	Delete(ctx context.Context, id string) error
}

// Watcher is implemented by stores that can push changes to readers.
type Watcher interface {
	// Watch sends the current state of task id on the returned channel,
	// then each later state, in version order. A reader that falls behind
	// gets the latest state, never an older one: versions it receives
	// strictly increase but may skip.
	//
	// The channel is closed after a terminal state is sent (at once if the
	// task had already ended), when ctx is done, and when watching cannot
	// go on: the task was deleted or expired, or the store failed. A caller
	// that needs to know which can call Get. Watch returns an error
	// wrapping ErrNotFound if the task does not exist, and frees everything
	// it holds once the channel is closed.
	Watch(ctx context.Context, id string) (<-chan State, error)
}
