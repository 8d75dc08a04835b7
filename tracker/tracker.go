package tracker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// Tracker records task states in a store. Its methods are safe for
// concurrent use. Create one with [New].
type Tracker struct {
	store   store.Store
	ttl     time.Duration
	lease   time.Duration
	now     func() time.Time // nil: the real clock, time.Now
	timeout time.Duration
	onError func(context.Context, error)
	cache   *cache
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
// for d (see [store.State.Stale]): a task whose process dies is then seen
// as stale d after its last write. Work that can go longer than d between
// writes calls [Tracker.Heartbeat]. The default, 0, keeps no lease.
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
// time.Now. Timeouts always use real time.
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
// retries. The default is 5 seconds.
func WithTimeout(d time.Duration) Option {
	return func(t *Tracker) error {
		if d <= 0 {
			return fmt.Errorf("tracker: WithTimeout(%v): not positive", d)
		}
		t.timeout = d
		return nil
	}
}

// WithErrorHandler sets the function told of every error a call returns,
// with the call's context. It runs on the caller's goroutine and must not
// block for long. The default logs the error with [slog.Default]: at level
// Warn when the tracker refused a change (ErrTerminal, ErrInvalidTransition,
// ErrExists), at level Error otherwise.
func WithErrorHandler(h func(ctx context.Context, err error)) Option {
	return func(t *Tracker) error {
		if h == nil {
			return errors.New("tracker: WithErrorHandler: nil handler")
		}
		t.onError = h
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
		timeout: 5 * time.Second,
		onError: logError,
		cache:   newCache(),
	}
	for _, opt := range opts {
		if err := opt(t); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Store returns the store the Tracker writes to, for readers such as HTTP
// handlers.
func (t *Tracker) Store() store.Store { return t.store }

// Error is the error a Tracker call returns: the operation, the task and
// the cause, which errors.Is and errors.As see through.
type Error struct {
	Op  string // the method, such as "succeed" or "start step"
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
		errors.Is(err, store.ErrExists)
}

// fail wraps a non-nil err as an *Error and reports it to the handler.
func (t *Tracker) fail(ctx context.Context, op, id string, err error) error {
	if err == nil {
		return nil
	}
	err = &Error{Op: op, ID: id, Err: err}
	t.onError(ctx, err)
	return err
}

// write applies changes to the latest state of task id with
// compare-and-set: from the cached state when there is one (one round
// trip), re-reading after a conflict. A change that is refused refuses
// them all; with several, its error names it.
func (t *Tracker) write(ctx context.Context, id string, changes []Change) error {
	if len(changes) == 0 {
		return fmt.Errorf("%w: no change", store.ErrInvalidInput)
	}
	for _, c := range changes {
		switch {
		case c.err != nil:
			return c.err
		case c.kind == invalidChange:
			return fmt.Errorf("%w: zero Change", store.ErrInvalidInput)
		}
	}
	if err := store.ValidateID(id); err != nil {
		return err
	}
	bctx, e, now, err := t.hold(ctx, id)
	if err != nil {
		return err
	}
	defer t.unhold(id, e, bctx)
	for {
		if !e.valid {
			cur, err := t.store.Get(bctx, id)
			if err != nil {
				return t.timedOut(ctx, bctx, err)
			}
			// A state read may be shared with other readers: the
			// tracker edits a copy of its own. The time to record
			// follows the state read, written by others.
			e.st, e.valid = cur.Clone(), true
			now = t.clock()
		}
		// next shares e.st's steps, which the changes edit in place: the
		// entry is valid again only once next is written.
		version := e.st.Version
		next := e.st
		e.valid = false
		for i := range changes {
			if err := changes[i].apply(&next, now); err != nil {
				if len(changes) > 1 {
					err = fmt.Errorf("%s: %w", changeOps[changes[i].kind], err)
				}
				return err
			}
			if changes[i].kind == retried {
				// A new attempt belongs to the request that asked for it.
				next.CorrelationID = cmp.Or(CorrelationID(ctx), next.CorrelationID)
			}
		}
		t.stamp(ctx, &next, now)
		next.Version = version + 1
		err := t.store.Put(bctx, next, t.ttl)
		if err == nil {
			e.st, e.valid = next, true
			return nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return t.timedOut(ctx, bctx, err)
		}
		if bctx.expired() {
			// Other writers keep winning: give up at the deadline.
			return t.timedOut(ctx, bctx, fmt.Errorf("%w: %w", err, context.DeadlineExceeded))
		}
	}
}

// hold takes task id for a write: it returns the call's bounded context,
// the task's cache entry, held, and the time to record, read once the
// entry is held (and read again by the caller after reading the store). An
// uncontended call reads the clock once for both the deadline and the
// record.
func (t *Tracker) hold(ctx context.Context, id string) (*boundedContext, *cacheEntry, time.Time, error) {
	e, held := t.cache.tryLock(id)
	if !held {
		bctx := t.bound(ctx)
		if err := t.cache.wait(bctx, id, e); err != nil {
			bctx.stop()
			return nil, nil, time.Time{}, t.timedOut(ctx, bctx, err)
		}
		return bctx, e, t.clock(), nil
	}
	wall := time.Now()
	now := wall.UTC()
	if t.now != nil {
		now = t.now().UTC()
	}
	e.ctx.reset(ctx, t.deadline(ctx, wall))
	return &e.ctx, e, now, nil
}

// unhold ends a hold: it stops the call's context, then releases the
// entry, in that order, for the context may be the entry's, which the next
// holder resets.
func (t *Tracker) unhold(id string, e *cacheEntry, bctx *boundedContext) {
	bctx.stop()
	t.cache.unlock(id, e)
}

// clock returns the time to record, in UTC. A writer reads it once it holds
// the task, and again after a conflict, so that the times it records
// follow the versions.
func (t *Tracker) clock() time.Time {
	if t.now == nil {
		return time.Now().UTC()
	}
	return t.now().UTC()
}

// stamp sets the fields every write updates.
func (t *Tracker) stamp(ctx context.Context, st *store.State, now time.Time) {
	st.UpdatedAt = now
	st.LeaseUntil = time.Time{}
	if t.lease > 0 && !st.Status.Terminal() {
		st.LeaseUntil = now.Add(t.lease)
	}
	if st.CorrelationID == "" {
		st.CorrelationID = CorrelationID(ctx)
	}
}

// timedOut marks err as the store being unavailable when the call's own
// timeout ended it while the caller's context was still live.
func (t *Tracker) timedOut(ctx context.Context, bctx *boundedContext, err error) error {
	if err != nil && ctx.Err() == nil && bctx.expired() && !errors.Is(err, store.ErrUnavailable) {
		return fmt.Errorf("%w: no answer within %v: %w", store.ErrUnavailable, t.timeout, err)
	}
	return err
}

// Create records a new task as pending, with the named steps planned as
// pending in order, and the correlation id of ctx. A task that exists
// already is left as it is and Create reports [store.ErrExists]; start a
// new attempt of an ended task with [Tracker.Retry].
func (t *Tracker) Create(ctx context.Context, id string, steps ...string) error {
	return t.fail(ctx, "create", id, t.create(ctx, id, steps))
}

func (t *Tracker) create(ctx context.Context, id string, steps []string) error {
	if err := store.ValidateID(id); err != nil {
		return err
	}
	bctx, e, now, err := t.hold(ctx, id)
	if err != nil {
		return err
	}
	defer t.unhold(id, e, bctx)
	st := store.State{
		ID:        id,
		Status:    store.StatusPending,
		CreatedAt: now,
		Attempt:   1,
		Version:   1,
	}
	if !e.valid {
		st.Steps = e.st.Steps[:0] // memory no state uses: reuse it
	}
	if err := planSteps(&st, steps); err != nil {
		return err
	}
	t.stamp(ctx, &st, now)
	err = t.store.Put(bctx, st, t.ttl)
	if err != nil {
		e.valid = false
		if errors.Is(err, store.ErrConflict) {
			return store.ErrExists
		}
		return t.timedOut(ctx, bctx, err)
	}
	e.st, e.valid = st, true
	return nil
}

// Get returns the current state of task id, read from the store, as a copy
// the caller may modify. An unknown task is reported with
// [store.ErrNotFound]. Errors are returned, not reported to the handler.
func (t *Tracker) Get(ctx context.Context, id string) (store.State, error) {
	if err := store.ValidateID(id); err != nil {
		return store.State{}, &Error{Op: "get", ID: id, Err: err}
	}
	bctx := t.bound(ctx)
	defer bctx.stop()
	st, err := t.store.Get(bctx, id)
	if err != nil {
		return store.State{}, &Error{Op: "get", ID: id, Err: t.timedOut(ctx, bctx, err)}
	}
	return st.Clone(), nil
}

// Delete removes task id. Deleting an unknown task is not an error.
func (t *Tracker) Delete(ctx context.Context, id string) error {
	return t.fail(ctx, "delete", id, t.delete(ctx, id))
}

func (t *Tracker) delete(ctx context.Context, id string) error {
	if err := store.ValidateID(id); err != nil {
		return err
	}
	bctx, e, _, err := t.hold(ctx, id)
	if err != nil {
		return err
	}
	defer t.unhold(id, e, bctx)
	e.valid = false
	return t.timedOut(ctx, bctx, t.store.Delete(bctx, id))
}
