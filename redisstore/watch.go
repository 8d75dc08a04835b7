package redisstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// Watch is built of three parts, each in its own file, whose locks are
// taken in this order and never the other way:
//
//   - watch.go: Watch, the watcher (one Watch call and its channel), and
//     the Store's watching, which creates the fan-out with the first watch;
//   - fanout.go and reader.go: the fan-out, one topic per watched task
//     holding its watchers, and one goroutine, the reader, that reads the
//     tasks whose topics ask for it and hands each state to their watchers;
//     at each health interval it also checks that every watched task is
//     still the one last read;
//   - hub.go and health.go: the subscription hub, the one pub/sub
//     connection the fan-out's topics share, with two goroutines: the
//     subscriber, which alone writes on the connection (SUBSCRIBE,
//     UNSUBSCRIBE, PING), and the receiver, which alone reads it and tells
//     the fan-out what came. health.go pings the connection and replaces
//     it when it fails or goes quiet.
//
// The fan-out and the hub live as long as something is watched: the last
// watch to end closes them, and the next Watch makes new ones. A watch has
// no goroutine of its own.

// watching is the part of a Store that serves Watch.
type watching struct {
	mu     sync.Mutex
	f      *fanout // the current fan-out; nil, or closed, while nothing is watched
	closed bool    // by Store.Close
}

// watcher is one Watch call. Its fields are guarded by its fan-out's mu.
type watcher struct {
	f     *fanout
	t     *topic
	ch    chan store.State // holds the latest state not yet taken
	first chan error       // gets, once, the outcome of the Watch call: nil once the first state is on ch
	stop  func() bool      // forgets the context.AfterFunc that ends the watch with its context

	pending     bool   // waiting for its first state
	ended       bool   // no longer in t.watchers
	last        int64  // the version last sent on ch
	incarnation string // of the state last sent on ch
}

// Watch implements [store.Watcher]. It subscribes to the task's channel,
// waits for Redis to confirm the subscription, and only then reads the
// current state, so that no change made after the read is missed. Each
// notification then makes it read the task again and send the state if
// its version is newer than the last one sent. Watch waits at most the
// store's timeout (see [WithTimeout]) for the first state, and returns an
// error wrapping [store.ErrUnavailable] if none came.
//
// A watch does not rely on notifications alone: at each health interval
// (see [WithHealthInterval]) every watched task is checked, so that a
// change whose notification was lost is delivered, and a task that
// disappeared (expired, deleted, lost by a server that restarted empty or
// was flushed) ends its watches, within the interval. If the connection
// fails or goes quiet, it is replaced and every watched task read again.
// A watch whose task has been neither read nor checked for longer than
// the health interval plus the store's timeout ends. See Health and
// freshness in the package doc.
//
// All the watches of a Store share one pub/sub connection, opened by the
// first and closed when the last ends (or by [Store.Close]), and subscribe
// to each task's channel once however many follow it; one read of the task
// serves them all, and each is sent a copy of its own. A watch holds no
// goroutine and no connection of its own.
func (s *Store) Watch(ctx context.Context, id string) (<-chan store.State, error) {
	if err := s.check(ctx, "watch", id); err != nil {
		return nil, err
	}
	w := &watcher{ch: make(chan store.State, 1), first: make(chan error, 1), pending: true}
	if err := s.watching.join(ctx, s, id, w); err != nil {
		return nil, fmt.Errorf("redisstore: watch %q: %w", id, err)
	}

	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-w.first:
	case <-timer.C:
		w.f.leave(w, wrap(fmt.Sprintf("watch %q: no state within %v", id, s.timeout), context.DeadlineExceeded))
		err = <-w.first
	}
	if err != nil {
		return nil, err
	}
	return w.ch, nil
}

// join adds w, a watcher of task id whose watch ends with ctx, to the
// current fan-out, which it creates if there is none or it has closed.
func (wg *watching) join(ctx context.Context, s *Store, id string, w *watcher) error {
	wg.mu.Lock()
	defer wg.mu.Unlock()
	if wg.closed {
		return errClosed
	}
	if wg.f == nil || !wg.f.join(ctx, id, w) {
		wg.f = newFanout(s)
		wg.f.join(ctx, id, w)
	}
	return nil
}

// close ends every watch for good, and waits for the goroutines that
// served them to end.
func (wg *watching) close() {
	wg.mu.Lock()
	wg.closed = true
	f := wg.f
	wg.f = nil
	wg.mu.Unlock()
	if f != nil {
		f.shutdown(fmt.Errorf("redisstore: watch: %w", errClosed))
	}
}

// send puts st on w's channel, replacing a state the reader has not taken:
// the reader gets the latest state and the sender never waits for it.
// Sends are made under the fan-out's mu, so no other can fill the channel
// between the two steps.
func (w *watcher) send(st store.State) {
	select {
	case <-w.ch:
	default:
	}
	w.ch <- st
	w.last, w.incarnation = st.Version, st.Incarnation
}
