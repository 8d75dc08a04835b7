package tracker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// AbandonedType is the exception type (see [ExceptionTypeKey]) of the
// failure [Tracker.Rescue] records for a task whose work was abandoned.
const AbandonedType = "TaskAbandoned"

// errAbandoned is the error Rescue fails an abandoned task with.
var errAbandoned = errors.New("the task's work stopped renewing its lease: its process most likely died")

// Rescue ends the tasks whose work was abandoned, so that they do not stay
// pending or running until they expire: at once and then every every
// until ctx is done, it finds the tasks that have not ended and whose
// lease ended more than grace ago (see [WithLease]), through the store's
// [store.Lister], and fails each with the exception type [AbandonedType]
// in its error details. A task whose lease was renewed meanwhile, or that
// ended, is left as it is: each failure is a compare-and-set of the state
// found abandoned, so several processes may rescue at once, and a live
// worker's renewal wins. A new attempt of a rescued task starts with
// [Retry].
//
// Rescue returns ctx's error once ctx is done, or at once an error if the
// store cannot list tasks or every or grace is not positive. Errors of a
// pass (the store is down) go to the error handler, and the next pass
// tries again.
func (t *Tracker) Rescue(ctx context.Context, every, grace time.Duration) error {
	lister, ok := t.store.(store.Lister)
	switch {
	case !ok:
		return fmt.Errorf("tracker: rescue: the store (%T) cannot list tasks", t.store)
	case every <= 0 || grace <= 0:
		return fmt.Errorf("tracker: rescue every %v after a grace of %v: not positive", every, grace)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if _, err := t.rescue(ctx, lister, grace); err != nil && ctx.Err() == nil {
			t.onError(ctx, &Error{Op: "rescue", Err: err})
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// rescue makes one pass of Rescue and returns how many tasks it failed.
func (t *Tracker) rescue(ctx context.Context, lister store.Lister, grace time.Duration) (int, error) {
	f := store.Filter{LeaseEndedBefore: t.now().UTC().Add(-grace)}
	rescued, token := 0, ""
	for {
		lctx, cancel := context.WithTimeout(ctx, t.timeout)
		page, err := lister.List(lctx, f, store.MaxPageSize, token)
		cancel()
		if err != nil {
			return rescued, t.timedOut(ctx, err)
		}
		for _, st := range page.Tasks {
			err := t.apply(ctx, st.ID, []Change{abandon(grace)})
			switch {
			case err == nil:
				rescued++
			case !refusal(err) && !errors.Is(err, store.ErrNotFound):
				t.onError(ctx, &Error{Op: "rescue", ID: st.ID, Err: err})
			}
		}
		if page.NextPageToken == "" {
			return rescued, nil
		}
		token = page.NextPageToken
	}
}

// abandon fails a task whose lease ended more than grace ago, and refuses
// any other with store.ErrInvalidTransition.
func abandon(grace time.Duration) Change {
	fail := Fail(errAbandoned, map[string]any{ExceptionTypeKey: AbandonedType})
	return Change{op: "rescue", apply: func(st *store.State, at stamp) error {
		if err := open(st); err != nil {
			return err
		}
		if !st.Abandoned(at.now.Add(-grace)) {
			return fmt.Errorf("%w: the task's lease has not ended %v ago", store.ErrInvalidTransition, grace)
		}
		return fail.apply(st, at)
	}}
}
