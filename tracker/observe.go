package tracker

import (
	"context"
	"errors"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// Event is what an [Observer] is told of: a write by which a Tracker
// changed a task (Err is nil), or the error of a call or of a background
// write (Err is not nil). A task's deletion ([Tracker.Delete]) is not an
// Event, unless it fails.
type Event struct {
	ID string // the task id
	// Op names the changes, as [Error.Op] does: "create", "succeed step",
	// or "apply succeed step, succeed" for several written together.
	Op string
	// Prev is the state the write changed: the task's state at the
	// version it replaced, or, for a task created, the zero State with
	// only ID set. Next is the state written. Both are zero when Err is
	// not nil.
	//
	// They share memory with the states the Tracker keeps: an Observer
	// must not modify them, and keeps a copy made with [store.State.Clone].
	Prev, Next store.State
	// Took is how long the write took, on the real clock: for a change by
	// id, the whole call, re-reads after a conflict included; for a Run's
	// change, the store call that wrote it.
	Took time.Duration
	// Err is the error, an [*Error], that the error handler is told of
	// (see [WithErrorHandler]); nil for a write.
	Err error
}

// Ended reports whether e is the write that ended the task (success,
// failed or canceled). No write succeeds on a task that has ended, so
// each task that ends is ended by one such write, of some Tracker.
func (e Event) Ended() bool {
	return e.Err == nil && e.Next.Status.Terminal()
}

// Observer is told of each [Event] of a Tracker: metrics, traces, logs
// and completion hooks attach here (see [WithObserver]). It is called in
// the goroutine that made the write or the call, after it: the caller of
// [Tracker.Apply], [Tracker.Start] or [Run.Apply], or the Tracker's
// background writer. It must be safe for concurrent use and must not
// block for long.
type Observer func(ctx context.Context, e Event)

// WithObserver adds o to the observers of the Tracker, which are called
// in the order they were added. A Tracker with none pays nothing for them.
func WithObserver(o Observer) Option {
	return func(t *Tracker) error {
		if o == nil {
			return errors.New("tracker: WithObserver: nil observer")
		}
		t.observers = append(t.observers, o)
		return nil
	}
}

// WithOnEnd adds an [Observer] that calls f with a copy of the state of
// each task that a write of this Tracker ended (see [Event.Ended]). Every
// task that ends is ended by a write of some Tracker, so a hook given to
// the Tracker of every process that writes tasks hears of every task that
// ends, once: but not of a task whose process died between the write and
// the call, nor of tasks that expire.
func WithOnEnd(f func(ctx context.Context, st store.State)) Option {
	if f == nil {
		return func(*Tracker) error { return errors.New("tracker: WithOnEnd: nil function") }
	}
	return WithObserver(func(ctx context.Context, e Event) {
		if e.Ended() {
			f(ctx, e.Next.Clone())
		}
	})
}

// observe tells the observers of e.
func (t *Tracker) observe(ctx context.Context, e Event) {
	for _, o := range t.observers {
		o(ctx, e)
	}
}

// observing returns the time now if the Tracker has observers, to time a
// write, and the zero time, which costs nothing, if it has none.
func (t *Tracker) observing() time.Time {
	if len(t.observers) == 0 {
		return time.Time{}
	}
	return time.Now()
}
