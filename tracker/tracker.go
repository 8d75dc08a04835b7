package tracker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// Tracker records task states in a store. Its methods are safe for
// concurrent use. Create one with [New], and call [Tracker.Close] when the
// work is done, to write what is still waiting for the store.
type Tracker struct {
	store     store.Store
	ttl       time.Duration
	lease     time.Duration
	now       func() time.Time
	timeout   time.Duration
	onError   func(context.Context, error)
	observers []Observer
	poll      time.Duration
	cache     *cache   // states of tasks written by id
	waiting   *waiting // runs whose changes wait for the store to answer
}

// Option configures a Tracker.
type Option func(*Tracker) error

// WithTTL sets how long a task is kept after its last change. The default
// is 24 hours; 0 keeps tasks until they are deleted.
func WithTTL(d time.Duration) Option {
	return func(t *Tracker) error {
		if d < 0 {
			return fmt.Errorf("tracker: WithTTL(%v): negative", d)
		}
		t.ttl = d
		return nil
	}
}

// WithLease makes every write of a task that has not ended renew its lease
// for d (see [store.State.Abandoned]): a task whose process dies is then
// seen as abandoned d after its last write, and can be retried at once
// ([Retry]). Work that can go longer than d between writes applies
// [Heartbeat]. The default, 0, keeps no lease.
func WithLease(d time.Duration) Option {
	return func(t *Tracker) error {
		if d < 0 {
			return fmt.Errorf("tracker: WithLease(%v): negative", d)
		}
		t.lease = d
		return nil
	}
}

// WithClock sets the clock that stamps recorded times. The default is
// time.Now. Timeouts and the waits between attempts to reach the store
// always use real time.
func WithClock(now func() time.Time) Option {
	return func(t *Tracker) error {
		if now == nil {
			return errors.New("tracker: WithClock: nil clock")
		}
		t.now = now
		return nil
	}
}

// WithTimeout bounds each call, including its store round trips and
// retries, and each store call made in the background. The default is 5
// seconds.
func WithTimeout(d time.Duration) Option {
	return func(t *Tracker) error {
		if d <= 0 {
			return fmt.Errorf("tracker: WithTimeout(%v): not positive", d)
		}
		t.timeout = d
		return nil
	}
}

// WithErrorHandler sets the function told of the errors of calls, with
// the call's context, and of changes kept for the store that could not be
// written in the end. It must be safe for concurrent use and must not
// block for long. The default logs with [slog.Default]: at level Warn when
// the tracker refused a change (see [Error]), at level Error otherwise.
func WithErrorHandler(h func(ctx context.Context, err error)) Option {
	return func(t *Tracker) error {
		if h == nil {
			return errors.New("tracker: WithErrorHandler: nil handler")
		}
		t.onError = h
		return nil
	}
}

// WithPollInterval sets how often [Run.WatchCancel] reads a task from a
// store that is not a [store.Watcher], and how long it waits to watch a
// task again after a watch ended for a store failure. d must be positive;
// the default is 1 second.
func WithPollInterval(d time.Duration) Option {
	return func(t *Tracker) error {
		if d <= 0 {
			return fmt.Errorf("tracker: WithPollInterval(%v): not positive", d)
		}
		t.poll = d
		return nil
	}
}

// WithCacheSize bounds the memory of the states a Tracker keeps of the
// tasks it wrote, so that their next write, or the Start of their Run, is
// one round trip without a read first: n bytes, as the states would take
// in memory, more or less. A task the Tracker has forgotten costs one read
// at its next write. The default, 16 MiB, keeps about 10,000 tasks of
// five steps with results; a service with more tasks in flight at once
// gives more, about 1.5 KB a task. n must be positive.
func WithCacheSize(n int) Option {
	return func(t *Tracker) error {
		if n <= 0 {
			return fmt.Errorf("tracker: WithCacheSize(%d): not positive", n)
		}
		t.cache = newCache(n)
		return nil
	}
}

// New returns a Tracker that records task states in s.
func New(s store.Store, opts ...Option) (*Tracker, error) {
	if s == nil {
		return nil, errors.New("tracker: nil store")
	}
	t := &Tracker{
		store:   s,
		ttl:     24 * time.Hour,
		now:     time.Now,
		timeout: 5 * time.Second,
		poll:    time.Second,
		onError: logError,
		cache:   newCache(defaultCacheBytes),
	}
	for _, opt := range opts {
		if err := opt(t); err != nil {
			return nil, err
		}
	}
	t.waiting = newWaiting(t)
	return t, nil
}

// Error is the error a Tracker call returns: the operation, the task and
// the cause, which errors.Is and errors.As see through. A cause that wraps
// [store.ErrTerminal], [store.ErrInvalidTransition], [store.ErrExists] or
// [store.ErrStale] is the tracker refusing a change that the task's state
// forbids; [store.ErrUnavailable] is the store failing.
type Error struct {
	Op  string // the change, such as "succeed" or "start step"
	ID  string // the task id
	Err error  // the cause
}

func (e *Error) Error() string {
	return "tracker: " + e.Op + " " + strconv.Quote(e.ID) + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func logError(ctx context.Context, err error) {
	attrs := []any{slog.Any("err", err)}
	if e, ok := errors.AsType[*Error](err); ok {
		attrs = append(attrs, slog.String("op", e.Op), slog.String("task_id", e.ID))
	}
	if id := CorrelationID(ctx); id != "" {
		attrs = append(attrs, slog.String("correlation_id", id))
	}
	level := slog.LevelError
	if refusal(err) {
		level = slog.LevelWarn
	}
	slog.Default().Log(ctx, level, "taskstatus: tracking failed", attrs...)
}

// refusal reports whether err is the tracker refusing a change that breaks
// the state machine, rather than the store failing.
func refusal(err error) bool {
	return errors.Is(err, store.ErrTerminal) || errors.Is(err, store.ErrInvalidTransition) ||
		errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrStale)
}

// report wraps a non-nil err as an *Error and tells the error handler.
func (t *Tracker) report(ctx context.Context, op, id string, err error) error {
	if err == nil {
		return nil
	}
	err = &Error{Op: op, ID: id, Err: err}
	t.onError(ctx, err)
	if len(t.observers) > 0 {
		t.observe(ctx, Event{ID: id, Op: op, Err: err})
	}
	return err
}

// Apply makes changes to task id as it is now, whichever attempt that is,
// in one atomic write: if one change is refused, none is made and its
// error is returned. It is the way to create a task ([Create]), start a
// new attempt ([Retry]) or cancel one ([Cancel]); the changes of an
// attempt's own work go through its [Run].
//
// The write is a compare-and-set of the task's latest state, which the
// Tracker keeps for the tasks it wrote by id, so it is one store round
// trip; if another writer got there first, the task is read again and the
// changes applied to it. A call that fails because the store does not
// answer returns an error wrapping [store.ErrUnavailable], and whether it
// took effect is then unknown: its caller decides what to tell its own.
// Errors are also told to the error handler (see [WithErrorHandler]).
func (t *Tracker) Apply(ctx context.Context, id string, changes ...Change) error {
	return t.report(ctx, opName(changes), id, t.apply(ctx, id, changes))
}

func (t *Tracker) apply(ctx context.Context, id string, changes []Change) error {
	if err := checkChanges(id, changes, true); err != nil {
		return err
	}
	began := t.observing()
	wctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	// Changes are applied to the state cached from the Tracker's last
	// write, if it has one, or to the state read; a change is refused only
	// for the state read, since the cached one may be out of date.
	cur, cached := t.cache.get(id)
	fresh := false
	if !cached && changes[0].kind == createChange {
		cur, cached = store.State{ID: id}, true // most likely new: a conflict says if not
	}
	for {
		if !cached && !fresh {
			var err error
			if cur, err = t.read(wctx, id); err != nil {
				return t.timedOut(ctx, err)
			}
			fresh = true
		}
		at := t.stampFor(ctx)
		next := cur
		err := applyChanges(&next, changes, at)
		switch {
		case err != nil && !fresh:
			cached = false // refused for a state that may be out of date
			continue
		case errors.Is(err, errUnchanged):
			return nil
		case err != nil:
			return err
		}
		w := t.seal(cur, next, quiet(changes), at.now)
		err = t.store.Put(wctx, w)
		switch {
		case err == nil:
			t.cache.put(w.State)
			t.wrote(ctx, changes, cur, w.State, began)
			return nil
		case !errors.Is(err, store.ErrConflict):
			t.cache.drop(id)
			return t.timedOut(ctx, err)
		case wctx.Err() != nil:
			return t.timedOut(ctx, fmt.Errorf("%w: %w", err, wctx.Err())) // other writers keep winning
		}
		cached, fresh = false, false
	}
}

// wrote tells the observers, if any, of the write of next over prev that
// changes made, which began at began.
func (t *Tracker) wrote(ctx context.Context, changes []Change, prev, next store.State, began time.Time) {
	if len(t.observers) > 0 {
		t.observe(ctx, Event{ID: next.ID, Op: opName(changes), Prev: prev, Next: next, Took: time.Since(began)})
	}
}

// read returns the stored state of task id, and keeps it in the cache; a
// task that does not exist is the zero State with the id, at version 0.
func (t *Tracker) read(ctx context.Context, id string) (store.State, error) {
	st, err := t.store.Get(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		t.cache.drop(id)
		return store.State{ID: id}, nil
	case err != nil:
		return st, err
	}
	t.cache.put(st)
	return st, nil
}

// timedOut marks err as the store being unavailable when the call's own
// timeout ended it while the caller's context was still live.
func (t *Tracker) timedOut(ctx context.Context, err error) error {
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, store.ErrUnavailable) {
		return fmt.Errorf("%w: no answer within %v: %w", store.ErrUnavailable, t.timeout, err)
	}
	return err
}

// stampFor returns the stamp of changes made now by a call with ctx.
func (t *Tracker) stampFor(ctx context.Context) stamp {
	return stamp{now: t.now().UTC(), correlation: CorrelationID(ctx)}
}

// quiet reports whether changes are all heartbeats, which readers need not
// be told of (see store.Write).
func quiet(changes []Change) bool {
	for _, c := range changes {
		if c.kind != heartbeatChange {
			return false
		}
	}
	return true
}

// seal returns the write that makes next, computed from prev, the task's
// new state, at now: it sets the fields every write sets.
func (t *Tracker) seal(prev, next store.State, quiet bool, now time.Time) store.Write {
	// A renewal of a lease that had ended is news: the task was seen
	// abandoned, and is alive.
	quiet = quiet && !prev.Abandoned(now)
	next.Version = prev.Version + 1
	if !quiet && now.After(prev.UpdatedAt) {
		next.UpdatedAt = now
	}
	next.LeaseUntil = time.Time{}
	if t.lease > 0 && !next.Status.Terminal() {
		next.LeaseUntil = now.Add(t.lease)
	}
	return store.Write{State: next, Prev: prev.Version, TTL: t.ttl, ID: newID(), Quiet: quiet}
}

// applyChanges applies changes to st, in order, at at. If one is refused,
// it leaves st as it was and returns its error, named after it if there
// are several. The changes copy what they edit (see ownSteps), so the
// states st was made from, which share its arrays and maps, stay as they
// are.
func applyChanges(st *store.State, changes []Change, at stamp) error {
	prev := *st
	for _, c := range changes {
		if err := c.apply(st, at); err != nil {
			*st = prev
			if len(changes) > 1 {
				err = fmt.Errorf("%s: %w", c.op, err)
			}
			return err
		}
	}
	if st.CorrelationID == "" {
		st.CorrelationID = at.correlation
	}
	return nil
}

// checkChanges reports whether changes can be applied to task id, by id
// or, if not byID, through a Run.
func checkChanges(id string, changes []Change, byID bool) error {
	if err := store.ValidateID(id); err != nil {
		return err
	}
	for i, c := range changes {
		switch {
		case c.err != nil:
			return c.err
		case c.apply == nil:
			return fmt.Errorf("%w: zero Change", store.ErrInvalidInput)
		case c.kind == createChange && i > 0:
			return fmt.Errorf("%w: create must be the first change", store.ErrInvalidInput)
		case !byID && (c.kind == createChange || c.kind == retryChange):
			return fmt.Errorf("%w: %s is applied by id, not through a run", store.ErrInvalidInput, c.op)
		case c.kind == requestCancelChange && (!byID || len(changes) > 1):
			return fmt.Errorf("%w: %s is applied by id, alone", store.ErrInvalidInput, c.op)
		}
	}
	if byID && len(changes) == 0 {
		return fmt.Errorf("%w: no change", store.ErrInvalidInput)
	}
	return nil
}

// opName names a call that applies changes, for its errors.
func opName(changes []Change) string {
	if len(changes) == 1 {
		return changes[0].op
	}
	ops := make([]string, len(changes))
	for i, c := range changes {
		ops[i] = c.op
	}
	return "apply " + strings.Join(ops, ", ")
}

// newID returns a random id for an incarnation or a write.
func newID() string {
	return strconv.FormatUint(rand.Uint64(), 36)
}

// Now returns the time by the tracker's clock (see [WithClock]).
func (t *Tracker) Now() time.Time {
	return t.now()
}

// Get returns the current state of task id, read from the store. An
// unknown task is reported with [store.ErrNotFound]. Errors are returned,
// not told to the error handler.
func (t *Tracker) Get(ctx context.Context, id string) (store.State, error) {
	if err := store.ValidateID(id); err != nil {
		return store.State{}, &Error{Op: "get", ID: id, Err: err}
	}
	wctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	st, err := t.store.Get(wctx, id)
	if err != nil {
		return store.State{}, &Error{Op: "get", ID: id, Err: t.timedOut(ctx, err)}
	}
	return st, nil
}

// Delete removes task id. Deleting an unknown task is not an error. A Run
// of the task that is still going writes it again with its next change,
// as it does for a task the store lost.
func (t *Tracker) Delete(ctx context.Context, id string) error {
	return t.report(ctx, "delete", id, t.delete(ctx, id))
}

func (t *Tracker) delete(ctx context.Context, id string) error {
	if err := store.ValidateID(id); err != nil {
		return err
	}
	t.cache.drop(id)
	wctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.timedOut(ctx, t.store.Delete(wctx, id))
}
