package tracker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// Run is one attempt of a task's work, started by [Tracker.Start]: the
// changes its work makes go through [Run.Apply], and apply only while the
// task is at that attempt. Its methods are safe for concurrent use, so the
// steps of a task that run at once share one Run.
//
// A Run keeps the state it has recorded. Its writes are one store round
// trip each, and none of its changes is lost to a store that fails: a
// change the store did not take (it did not answer, or its answer was
// lost) is kept and written once the store answers again, with the
// changes made after it, in order (see [Tracker.Close]). If the store
// comes back without the task (a server restarted empty, a failover that
// lost the last writes), the Run writes the task again from what it has
// recorded, with versions that go on from those readers knew; unless the
// task was created anew meanwhile, which makes the Run stale.
type Run struct {
	t  *Tracker
	id string

	mu sync.Mutex
	// Guarded by mu:
	stored  store.State // the state last known stored, if known
	known   bool        // whether stored is known; if not, the task is read before the next write
	lost    bool        // the store has lost the task: the next write creates it again
	top     int64       // the highest version the Run wrote or read
	want    store.State // the state the Run has recorded: stored with every change of pending
	pending []*group    // changes not yet known to be written, in order
	seq     uint64      // of the last group made
	unsure  *unsure     // the last write, whose outcome is unknown
	writing bool        // a goroutine writes pending (see flush)
	// The incarnation and attempt the Run records, once bound to them.
	bound       bool
	incarnation string
	attempt     int
	err         error     // why the Run can record nothing more, or nil
	waitSince   time.Time // when its changes began to wait for the store, or zero
}

// group is the changes of one call of Run.Apply. Its fields are guarded
// by the Run's mu.
type group struct {
	seq     uint64 // its place in the order of the Run's groups
	changes []Change
	at      stamp
	ctx     context.Context // the call's, for reports

	// The outcome told to the caller: once told, a later outcome that is
	// an error goes to the error handler.
	told bool
	err  error
	done chan struct{} // closed when told, if a caller waits on it
}

// unsure is a write whose outcome is unknown, and the last group it holds.
type unsure struct {
	w    store.Write
	upTo uint64
}

// Start starts the work on task id, which must be pending: it marks the
// task running, makes changes in the same write (such as the start of the
// first step, [StartStep]), and returns the attempt's [Run]. A task that
// does not exist, has started or has ended is refused with an error
// wrapping [store.ErrNotFound], [store.ErrInvalidTransition] or
// [store.ErrTerminal], and no Run is returned.
//
// If the store does not answer, Start returns the Run together with an
// error wrapping [store.ErrUnavailable]: the work may go on, and the start
// and the changes after it are written once the store answers (or dropped,
// with a report, if the task turns out not to be pending then).
func (t *Tracker) Start(ctx context.Context, id string, changes ...Change) (*Run, error) {
	if err := checkChanges(id, changes, false); err != nil {
		return nil, t.report(ctx, "start", id, err)
	}
	r := &Run{t: t, id: id}
	st, ok := t.cache.take(id)
	if !ok {
		rctx, cancel := context.WithTimeout(ctx, t.timeout)
		var err error
		st, err = t.store.Get(rctx, id)
		cancel()
		switch {
		case err == nil:
			ok = true
		case errors.Is(err, store.ErrNotFound):
			return nil, t.report(ctx, "start", id, err)
		default:
			// Assume the task pending: the start is checked against
			// the stored state once it can be read.
			st = store.State{ID: id, Status: store.StatusPending, Version: 1}
		}
	}
	// The Run is bound to the attempt its start is written to: the state
	// at hand may be out of date.
	r.stored, r.known, r.top, r.want = st, ok, st.Version, st
	err := r.apply(ctx, append([]Change{start()}, changes...))
	switch {
	case err == nil:
		return r, nil
	case errors.Is(err, store.ErrUnavailable):
		return r, t.report(ctx, "start", id, err)
	}
	return nil, t.report(ctx, "start", id, err)
}

// Apply makes changes to the Run's attempt of the task, in order, in one
// atomic write: if one change is refused, none is made and its error is
// returned. Changes of the attempt's work are made here; [Create] and
// [Retry] are applied by id, with [Tracker.Apply].
//
// If the task is no longer at the Run's attempt (it was retried, or
// created anew), Apply refuses the changes with [store.ErrStale], and so
// does every later call: the Run's work should stop recording. If the
// store does not answer, Apply returns an error wrapping
// [store.ErrUnavailable] and keeps the changes, which are written once the
// store answers; while they wait, later calls return such an error at
// once, without waiting for the store. The error handler is told of the
// first, and of changes dropped in the end.
func (r *Run) Apply(ctx context.Context, changes ...Change) error {
	err := r.apply(ctx, changes)
	if errors.Is(err, errWaiting) {
		return &Error{Op: opName(changes), ID: r.id, Err: err} // told once, when the wait began
	}
	return r.t.report(ctx, opName(changes), r.id, err)
}

// errWaiting is the error of changes kept behind others that wait for the
// store to answer.
var errWaiting = fmt.Errorf("%w: kept, behind changes that wait for the store to answer", store.ErrUnavailable)

func (r *Run) apply(ctx context.Context, changes []Change) error {
	if err := checkChanges(r.id, changes, false); err != nil {
		return err
	}
	if len(changes) == 0 {
		return nil
	}
	r.mu.Lock()
	if r.err != nil {
		err := r.err
		r.mu.Unlock()
		return err
	}
	at := r.t.stampFor(ctx)
	if err := applyChanges(&r.want, changes, at); err != nil {
		r.mu.Unlock()
		return err
	}
	r.seq++
	g := &group{seq: r.seq, changes: changes, at: at, ctx: ctx}
	r.pending = append(r.pending, g)
	switch {
	case !r.waitSince.IsZero():
		r.tell(g, errWaiting)
		r.mu.Unlock()
		return errWaiting
	case r.writing:
		// Another call writes: this group goes with its next write.
		done := make(chan struct{})
		g.done = done
		r.mu.Unlock()
		select {
		case <-done:
			return g.err
		case <-ctx.Done():
			return fmt.Errorf("%w (the changes are kept and will be written)", ctx.Err())
		}
	}
	r.writing = true
	r.mu.Unlock()
	// A write the caller gives up on is kept: the changes are still made.
	wctx, cancel := context.WithTimeout(ctx, r.t.timeout)
	r.flush(wctx, at.now)
	cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	return g.err // told by flush, which tells every group it leaves
}

// wait makes the Run wait for the store to answer, after err: its
// pending changes are kept, their callers are told, and the Tracker writes
// them in the background. Once the Tracker is closed, they are dropped
// instead. r.mu is held.
func (r *Run) wait(err error) {
	err = r.t.timedOut(context.Background(), err)
	if r.waitSince.IsZero() {
		if !r.t.waiting.add(r) {
			r.drop(fmt.Errorf("%w (dropped: the tracker is closed)", err))
			return
		}
		r.waitSince = time.Now()
	}
	err = fmt.Errorf("%w (kept, to be written when the store answers)", err)
	for _, g := range r.pending {
		if !g.told {
			r.tell(g, err)
		}
	}
}

// giveUp drops the pending changes for err and ends the Run's wait.
func (r *Run) giveUp(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drop(err)
	r.endWait()
}

// endWait ends the Run's wait for the store, if it waits. r.mu is held.
func (r *Run) endWait() {
	if !r.waitSince.IsZero() {
		r.waitSince = time.Time{}
		r.t.waiting.remove(r)
	}
}

// drop gives up the pending changes, for err. The task is read again
// before the next write. r.mu is held.
func (r *Run) drop(err error) {
	r.settle(r.seq, err)
	r.unsure, r.known = nil, false
	r.want = r.stored
}

// tell gives g's caller the outcome err, or, if it was told already, gives
// the error handler err, if err is not nil. r.mu is held.
func (r *Run) tell(g *group, err error) {
	switch {
	case !g.told:
		g.told, g.err = true, err
		if g.done != nil {
			close(g.done)
		}
	case err != nil:
		_ = r.t.report(g.ctx, opName(g.changes), r.id, err)
	}
}

// settle removes the pending groups up to the one numbered upTo, telling
// them err. r.mu is held.
func (r *Run) settle(upTo uint64, err error) {
	n := 0
	for n < len(r.pending) && r.pending[n].seq <= upTo {
		r.tell(r.pending[n], err)
		n++
	}
	clear(r.pending[:n])
	r.pending = append(r.pending[:0], r.pending[n:]...)
}

// flush writes the pending changes until none is left, or until the store
// does not answer, which makes the Run wait (see wait) and whose error it
// returns, or until the Run can record no more. Every group it leaves
// pending has been told the outcome. The caller has set r.writing, so that
// no other goroutine flushes the Run meanwhile; flush clears it.
//
// A write made before any other store call is made at now, if it is not
// zero: the time its caller stamped its changes at, a moment ago. The
// others are made at the time the clock tells.
func (r *Run) flush(ctx context.Context, now time.Time) error {
	resent := false
	for {
		r.mu.Lock()
		if done := r.err != nil || len(r.pending) == 0; done {
			r.writing = false
			r.endWait()
			r.mu.Unlock()
			return nil // a Run that can record no more is not a store failure
		}
		var err error
		switch u := r.unsure; {
		case u != nil:
			// A resend: the store tells whether the write was applied.
			r.mu.Unlock()
			err = r.put(ctx, u.w, u.upTo)
		case !r.known:
			r.mu.Unlock()
			err = r.read(ctx)
		default:
			if now.IsZero() {
				now = r.t.now().UTC()
			}
			w := r.t.seal(r.stored, r.want, r.quiet(), now)
			if r.lost {
				w.Prev, w.State.Version = 0, r.top+1
			}
			upTo := r.pending[len(r.pending)-1].seq
			r.mu.Unlock()
			err = r.put(ctx, w, upTo)
		}
		now = time.Time{} // a store call was made: time has passed
		if err != nil && !resent && ctx.Err() == nil {
			// Once, at once: a lost reply is most often a passing
			// blip, and the resend tells whether the write was applied.
			resent = true
			continue
		}
		if err != nil {
			r.mu.Lock()
			r.writing = false
			if len(r.pending) > 0 && r.err == nil {
				r.wait(err)
			}
			r.mu.Unlock()
			return err
		}
	}
}

// quiet reports whether the pending changes are all heartbeats, which
// readers need not be told of. r.mu is held.
func (r *Run) quiet() bool {
	for _, g := range r.pending {
		if !quiet(g.changes) {
			return false
		}
	}
	return true
}

// put makes write w, which holds the pending groups up to the one
// numbered upTo, and records its outcome. It returns the error of a store
// that did not answer; a conflict makes the Run read the task again.
func (r *Run) put(ctx context.Context, w store.Write, upTo uint64) error {
	began := r.t.observing()
	err := r.t.store.Put(ctx, w)
	var e Event
	observed, err := r.record(w, upTo, err, &e)
	if observed {
		e.Took = time.Since(began)
		r.t.observe(ctx, e)
	}
	return err
}

// record records the outcome err of write w, which holds the pending
// groups up to the one numbered upTo, and returns put's error. If the
// write was made and the Tracker has observers, it sets e to the write's
// Event, but for its timing, and reports true.
func (r *Run) record(w store.Write, upTo uint64, err error, e *Event) (observed bool, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unsure = nil
	switch {
	case err == nil:
		if observed = len(r.t.observers) > 0; observed {
			*e = Event{ID: r.id, Op: r.opUpTo(upTo), Prev: r.stored, Next: w.State}
		}
		r.stored, r.known, r.lost = w.State, true, false
		r.top = max(r.top, w.State.Version)
		if !r.bound {
			r.bind(w.State)
		}
		r.settle(upTo, nil)
		if len(r.pending) == 0 {
			r.want = w.State
		}
		return observed, nil
	case errors.Is(err, store.ErrConflict):
		r.known = false
		return false, nil
	case unknown(err):
		r.unsure = &unsure{w: w, upTo: upTo}
		r.top = max(r.top, w.State.Version)
		return false, err
	}
	// The store refuses the write for good (invalid, corrupt): drop it.
	r.settle(upTo, err)
	r.known = false
	return false, nil
}

// opUpTo names the changes of the pending groups up to the one numbered
// upTo, as opName does. r.mu is held.
func (r *Run) opUpTo(upTo uint64) string {
	if len(r.pending) == 1 || (len(r.pending) > 1 && r.pending[1].seq > upTo) {
		return opName(r.pending[0].changes) // the usual write: one call's changes
	}
	var changes []Change
	for _, g := range r.pending {
		if g.seq > upTo {
			break
		}
		changes = append(changes, g.changes...)
	}
	return opName(changes)
}

// unknown reports whether err leaves the outcome of a store call unknown:
// the store did not answer, or not in time.
func unknown(err error) bool {
	return errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled)
}

// read reads the task and applies the pending changes to it again. It
// returns an error only if the store did not answer.
func (r *Run) read(ctx context.Context) error {
	cur, err := r.t.store.Get(ctx, r.id)
	if unknown(err) {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case errors.Is(err, store.ErrNotFound):
		r.gone()
		return nil
	case err != nil:
		r.end(err)
		return nil
	case r.bound && (cur.Incarnation != r.incarnation || cur.Attempt != r.attempt):
		r.end(fmt.Errorf("%w: the task is at attempt %d of incarnation %s, the run at attempt %d of %s",
			store.ErrStale, cur.Attempt, cur.Incarnation, r.attempt, r.incarnation))
		return nil
	}
	r.top = max(r.top, cur.Version)
	r.stored, r.known, r.lost, r.want = cur, true, false, cur
	kept := r.pending[:0]
	for _, g := range r.pending {
		err := applyChanges(&r.want, g.changes, g.at)
		switch {
		case err != nil && g.changes[0].kind == startChange:
			// The start was refused: the task is not the Run's to record.
			r.end(err)
			return nil
		case err != nil:
			r.tell(g, err)
			continue
		}
		kept = append(kept, g)
	}
	clear(r.pending[len(kept):])
	r.pending = kept
	return nil
}

// bind makes st's incarnation and attempt the Run's. r.mu is held, or the
// Run is not shared yet.
func (r *Run) bind(st store.State) {
	r.bound, r.incarnation, r.attempt = true, st.Incarnation, st.Attempt
}

// gone acts on a read that found no task: a Run that knows its attempt
// writes it again; one that does not (its start was never written) ends.
// r.mu is held.
func (r *Run) gone() {
	if !r.bound {
		r.end(fmt.Errorf("%w: task %q", store.ErrNotFound, r.id))
		return
	}
	r.known, r.lost = true, true
}

// end makes the Run record nothing more, for err, and drops its pending
// changes. r.mu is held.
func (r *Run) end(err error) {
	r.err = err
	r.settle(r.seq, err)
	r.unsure = nil
}
