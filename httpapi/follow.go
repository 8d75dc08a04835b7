package httpapi

import (
	"context"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// follower follows a task for a request that waits for its changes, a
// long poll or an event stream: it finds the documents its client is to
// be told of, which are those of the task's changes but lease renewals
// (see renewal), and the document of the task judged abandoned once its
// lease ends.
//
// Renewals are quiet writes that watchers are not told of (see
// [store.Write]), so the end of a lease is not seen by watching: the
// follower reads the task again when the lease it knows of ends, and
// waits for the end of the new lease if it was renewed meanwhile.
type follower struct {
	h      *handler
	states <-chan store.State // the task's states, from its watch
	sent   Document           // the document the client has
	cur    store.State        // the latest state known: sent's, or a renewal of it

	leaseEnd  <-chan time.Time // when cur's lease ends, if the client is to be told; else nil
	leaseFor  time.Time        // the lease end leaseEnd is for
	stopLease func()
}

// wake is why follower.next returned.
type wake int

const (
	wakeNews     wake = iota // the client is to be told of the document in sent
	wakeEnded                // the watch ended: the task ended, was deleted, expired or created anew, or the store failed
	wakeFailed               // the task could not be read again, to judge its lease: see the error
	wakeDone                 // the context is done
	wakeShutdown             // the service shuts down
	wakeTick                 // the tick channel passed to next ticked
)

// follow returns a follower of the task of doc, the document the client
// has, whose states come on states. Call stop when done with it.
func (h *handler) follow(states <-chan store.State, doc Document) *follower {
	f := &follower{h: h, states: states, sent: doc, cur: doc.State}
	f.arm()
	return f
}

// next waits for the next document to tell the client of, which it puts
// in f.sent, or for something else to happen, and says which. tick may be
// nil.
func (f *follower) next(ctx context.Context, tick <-chan time.Time) (wake, error) {
	for {
		var st store.State
		select {
		case s, ok := <-f.states:
			if !ok {
				return wakeEnded, nil
			}
			if s.Version <= f.cur.Version {
				continue
			}
			st = s
		case <-f.leaseEnd:
			f.disarm() // news arms it again, for a renewed lease
			st = f.cur
		case <-tick:
			return wakeTick, nil
		case <-f.h.shutdown:
			return wakeShutdown, nil
		case <-ctx.Done():
			return wakeDone, nil
		}
		doc := f.h.document(st)
		if doc.Abandoned {
			// The lease of st has ended, but it may have been renewed
			// since, quietly: read the task again to know.
			st, err := f.h.store.Get(ctx, st.ID)
			if err != nil {
				return readFailed(ctx, err)
			}
			doc = f.h.document(st)
		}
		if f.news(doc) {
			return wakeNews, nil
		}
	}
}

// news takes doc, the document of a state of the task newer than f.cur or
// read again, and reports whether the client is to be told of it, in
// which case it is put in f.sent: its state changes more than a renewal
// does, or it says the task was abandoned and the client's document does
// not, or the other way round.
func (f *follower) news(doc Document) bool {
	f.cur = doc.State
	news := !renewal(f.sent.State, doc.State) || doc.Abandoned != f.sent.Abandoned
	if news {
		f.sent = doc
	}
	f.arm()
	return news
}

// renewal reports whether next differs from prev only in its version and
// lease: a lease renewal ([tracker.Heartbeat]), which is not a change for
// clients.
func renewal(prev, next store.State) bool {
	next.Version, next.LeaseUntil = prev.Version, prev.LeaseUntil
	return next.Equal(prev)
}

// arm makes leaseEnd fire when the lease of f.cur ends, if the client is
// to be told then: the task has not ended, has a lease, and the client's
// document does not say it was abandoned.
func (f *follower) arm() {
	if f.cur.Status.Terminal() || f.cur.LeaseUntil.IsZero() || f.sent.Abandoned {
		f.disarm()
		return
	}
	if f.leaseEnd != nil && f.leaseFor.Equal(f.cur.LeaseUntil) {
		return
	}
	f.disarm()
	// A task is abandoned once the time is after its lease's end.
	d := f.cur.LeaseUntil.Sub(f.h.clock.Now()) + time.Nanosecond
	f.leaseEnd, f.stopLease = f.h.clock.After(d)
	f.leaseFor = f.cur.LeaseUntil
}

// disarm stops the wait for the lease's end, if there is one.
func (f *follower) disarm() {
	if f.stopLease != nil {
		f.stopLease()
	}
	f.leaseEnd, f.leaseFor, f.stopLease = nil, time.Time{}, nil
}

// stop frees what f holds.
func (f *follower) stop() { f.disarm() }

// readFailed returns the wake of a read that failed with err: the end of
// the wait if ctx is done (the client went, or the wait ended), else the
// failure.
func readFailed(ctx context.Context, err error) (wake, error) {
	if ctx.Err() == nil {
		return wakeFailed, err
	}
	return wakeDone, nil // not the store's failure: the wait is over
}
