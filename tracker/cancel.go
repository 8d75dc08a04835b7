package tracker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// ErrCancelRequested is the cause, wrapped with the request's reason, of
// the context [Run.WatchCancel] returns when the cancellation of the Run's
// attempt is requested ([RequestCancel]).
var ErrCancelRequested = errors.New("cancellation requested")

// errUnchanged is returned by a change that finds the task already as it
// would make it. A write made only of such changes is not made.
var errUnchanged = errors.New("unchanged")

// RequestCancel asks for the cancellation of the task's attempt, for
// reason, from any process: it records the request (the time and reason,
// [store.State.CancelRequestedAt]) and the work running the task learns of
// it ([Run.WatchCancel]), stops and records the task canceled, unless the
// work ended first. A task that is pending, or abandoned (see
// [store.State.Abandoned]), has no work to stop: it is canceled at once,
// with reason as its error message, and a pending task never starts.
//
// Asking again is the same as asking once: a task whose cancellation was
// requested, and that has not ended or ended canceled, is left as it is,
// without a write, and Apply returns nil. A task that ended otherwise is
// refused with [store.ErrTerminal]. RequestCancel is applied by id, alone.
func RequestCancel(reason string) Change {
	return Change{op: "request cancel", kind: requestCancelChange, apply: func(st *store.State, at stamp) error {
		switch {
		case !exists(st):
			return store.ErrNotFound
		case !st.CancelRequestedAt.IsZero() && (!st.Status.Terminal() || st.Status == store.StatusCanceled):
			return errUnchanged
		case st.Status.Terminal():
			return fmt.Errorf("%w: task is %s", store.ErrTerminal, st.Status)
		}
		st.CancelRequestedAt, st.CancelReason = at.now, reason
		if st.Status == store.StatusPending || st.Abandoned(at.now) {
			end(st, store.StatusCanceled, at.now, cmp.Or(reason, "canceled"))
		}
		return nil
	}}
}

// WatchCancel returns a context derived from ctx for the Run's work, and a
// function that stops the watch and cancels the context; call it when the
// work is done. The context is canceled with a cause:
//
//   - wrapping [ErrCancelRequested], with the reason, when the
//     cancellation of the Run's attempt is requested ([RequestCancel]),
//     by any process;
//   - wrapping [store.ErrStale] when the task moves on to another attempt
//     or incarnation: the work can no longer record anything;
//   - wrapping [store.ErrTerminal] when the task ended: by the work
//     itself, or otherwise (a rescuer failed it, say).
//
// It follows the task through the store's [store.Watcher], or reads it
// every [WithPollInterval] from a store that is not one; a watch that ends
// for a store failure is opened again after that interval. A Run that has
// not recorded its start yet is told once it has.
func (r *Run) WatchCancel(ctx context.Context) (context.Context, context.CancelFunc) {
	wctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.watchCancel(wctx, cancel)
	}()
	return wctx, func() {
		cancel(context.Canceled)
		<-done
	}
}

// watchCancel follows the task until ctx is done or a state of it gives a
// cause to cancel ctx (see cancelCause).
func (r *Run) watchCancel(ctx context.Context, cancel context.CancelCauseFunc) {
	w, watches := r.t.store.(store.Watcher)
	for {
		var cause error
		if watches {
			cause = r.watchOnce(ctx, w)
		} else {
			cause = r.readOnce(ctx)
		}
		if cause != nil {
			cancel(cause)
			return
		}
		t := time.NewTimer(r.t.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// watchOnce watches the task until the watch ends, and returns the cause
// to cancel the work that a state sent gives, if any. It ends the watch
// early if the Run is not bound to its attempt yet, so that the state is
// seen again once it is.
func (r *Run) watchOnce(ctx context.Context, w store.Watcher) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := w.Watch(wctx, r.id)
	if err != nil {
		return nil // not found (the Run may write it again), or down: later
	}
	for st := range ch {
		cause, known := r.cancelCause(st)
		if cause != nil || !known {
			return cause
		}
	}
	return nil
}

// readOnce reads the task and returns the cause to cancel the work that
// it gives, if any.
func (r *Run) readOnce(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, r.t.timeout)
	defer cancel()
	st, err := r.t.store.Get(rctx, r.id)
	if err != nil {
		return nil
	}
	cause, _ := r.cancelCause(st)
	return cause
}

// cancelCause returns why the work of the Run should stop, given st, a
// state of its task, or nil; and whether it could tell: not before the
// Run is bound to its attempt.
func (r *Run) cancelCause(st store.State) (cause error, known bool) {
	r.mu.Lock()
	bound, incarnation, attempt := r.bound, r.incarnation, r.attempt
	r.mu.Unlock()
	switch {
	case !bound:
		return nil, false
	case st.Incarnation != incarnation || st.Attempt != attempt:
		return fmt.Errorf("%w: the task is at attempt %d of incarnation %s, the run at attempt %d of %s",
			store.ErrStale, st.Attempt, st.Incarnation, attempt, incarnation), true
	case !st.CancelRequestedAt.IsZero() && st.CancelReason == "":
		return ErrCancelRequested, true
	case !st.CancelRequestedAt.IsZero():
		return fmt.Errorf("%w: %s", ErrCancelRequested, st.CancelReason), true
	case st.Status.Terminal():
		return fmt.Errorf("%w: task is %s", store.ErrTerminal, st.Status), true
	}
	return nil, true
}
