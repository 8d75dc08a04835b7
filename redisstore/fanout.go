package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskstatus/taskstatus/store"
)

// fanout serves the watches of a Store while anything is watched: one
// topic per watched task, which holds the task's watchers. A topic whose
// task may have changed is marked dirty; the reader (reader.go) reads each
// dirty task once, however many watch it, and settles the read here: each
// watcher is sent a copy of the state of its own if it is newer than the
// last it got. A watcher's channel holds one state, which a newer one
// replaces if the reader has not taken it (latest wins), so a slow reader
// holds up no one.
//
// Subscribe, then read: a topic's task is first read once the hub has
// Redis's confirmation that the topic's channel is subscribed on its
// connection, and every confirmation, the first or one after the
// connection was replaced, makes the topic read its task again, so every
// change made after a read is announced or read. Reads of one topic never
// overlap (there is one reader), so the states a watcher gets go forward:
// a state of an older version, or of another incarnation (the task was
// created anew), ends its watch instead.
//
// The watches end: a watcher after a terminal state, or when its context
// is done; all of a topic's watchers when the task is gone, when a read
// fails for another reason than Redis being unavailable, or when the task
// has been neither read nor checked for longer than the health interval
// plus the store's timeout (reader.go); every watcher on Store.Close. A
// Watch call waiting for its first state gets the error instead, and also
// when a read fails or Redis refuses the subscription; through a
// connection replaced it waits, for as long as Watch waits.
type fanout struct {
	s      *Store
	hub    *hub
	ctx    context.Context // done once the fan-out is closed
	cancel context.CancelFunc
	wake   chan struct{} // wakes the reader; holds one signal
	done   chan struct{} // closed when the reader returns

	mu     sync.Mutex
	closed bool
	topics map[string]*topic // by channel name
	dirty  []*topic          // the topics marked dirty, each once, that the reader has not taken
}

// topic is one watched task and its watchers. Its fields are guarded by
// the fan-out's mu.
type topic struct {
	id, channel string
	watchers    map[*watcher]struct{} // at least one: the topic is dropped with its last

	dirty bool // the task may have changed since it was last read: read it (it is in the fan-out's dirty)
	// The last state read, once known: its version, the version last
	// announced (quiet writes do not change it) and its incarnation.
	known       bool
	version     int64
	announced   int64
	incarnation string

	// fresh is when the task was last read, or checked and found as read:
	// the watchers' state was the stored one then. A topic whose fresh is
	// older than the health interval plus the store's timeout ends.
	fresh time.Time
}

// newFanout returns a fan-out of s, with its hub, their goroutines started.
func newFanout(s *Store) *fanout {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fanout{
		s: s, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1), done: make(chan struct{}),
		topics: make(map[string]*topic),
	}
	f.hub = newHub(s, f)
	go f.read()
	return f
}

// join adds w, a watcher of task id whose watch ends with ctx, and asks
// for a read that will send w its first state. It reports false if f is
// closed.
func (f *fanout) join(ctx context.Context, id string, w *watcher) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	channel := f.s.keys.events(id)
	t := f.topics[channel]
	if t == nil {
		t = &topic{id: id, channel: channel, watchers: make(map[*watcher]struct{})}
		f.topics[channel] = t
		f.hub.subscribe(channel)
	}
	t.watchers[w] = struct{}{}
	w.f, w.t = f, t
	w.stop = context.AfterFunc(ctx, func() {
		f.leave(w, wrap(fmt.Sprintf("watch %q", id), ctx.Err()))
	})
	f.markDirty(t)
	return true
}

// leave ends w, for err, unless it has ended.
func (f *fanout) leave(w *watcher, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !w.ended {
		f.end(w, err)
	}
}

// shutdown ends every watch, a Watch call waiting for its first state with
// err, and waits until the goroutines of f and its hub have returned.
func (f *fanout) shutdown(err error) {
	f.mu.Lock()
	for _, t := range f.topics {
		for w := range t.watchers {
			f.end(w, err)
		}
	}
	f.mu.Unlock()
	<-f.done
	f.hub.wait()
}

// end ends watcher w: one waiting for its first state gets err (not nil)
// as the outcome of its Watch call, any other has its channel closed. The
// topic is dropped with its last watcher. f.mu is held.
func (f *fanout) end(w *watcher, err error) {
	w.ended = true
	w.stop()
	delete(w.t.watchers, w)
	if w.pending {
		w.pending = false
		w.first <- err
	} else {
		close(w.ch)
	}
	if len(w.t.watchers) == 0 {
		f.drop(w.t)
	}
}

// drop removes topic t, which has no watcher left, and unsubscribes its
// channel. f closes with its last topic, and its hub with it. f.mu is
// held.
func (f *fanout) drop(t *topic) {
	delete(f.topics, t.channel)
	f.hub.unsubscribe(t.channel)
	if len(f.topics) == 0 {
		f.closed = true
		f.cancel()
		f.hub.close()
	}
}

// markDirty asks the reader for a read of t's task. f.mu is held.
func (f *fanout) markDirty(t *topic) {
	f.setDirty(t)
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// setDirty marks t dirty, for the reader's next read. f.mu is held.
func (f *fanout) setDirty(t *topic) {
	if !t.dirty {
		t.dirty = true
		f.dirty = append(f.dirty, t)
	}
}

// The hub tells the fan-out what comes on its connection through the
// methods below, called without the hub's mu held.

// confirmed tells f that Redis confirmed the subscription to channel: its
// task is read again.
func (f *fanout) confirmed(channel string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t := f.topics[channel]; t != nil {
		f.markDirty(t)
	}
}

// notified tells f that a change was published on channel, as payload (a
// notice): its task is read again unless the last read was of the version
// and incarnation announced. A payload that is not a notice is read too.
func (f *fanout) notified(channel, payload string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.topics[channel]
	if t == nil {
		return
	}
	var n notice
	if json.Unmarshal([]byte(payload), &n) == nil && t.known && n.Version == t.version && n.Incarnation == t.incarnation {
		return
	}
	f.markDirty(t)
}

// refused tells f that Redis answered a subscription to channels with an
// error, err: the Watch calls waiting for their first state on those
// channels fail with it.
func (f *fanout) refused(channels []string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, channel := range channels {
		t := f.topics[channel]
		if t == nil {
			continue
		}
		for w := range t.watchers {
			if w.pending {
				f.end(w, wrap(fmt.Sprintf("watch %q: subscribe", t.id), err))
			}
		}
	}
}

// settle hands r, the outcome of a read of t's task made at start, to t's
// watchers, and reports whether to read again after a pause (Redis was
// unavailable). f.mu is held, and t is one of f's topics.
func (f *fanout) settle(t *topic, start time.Time, r taskRead) (retry bool) {
	if r.err != nil {
		return f.readFailed(t, r.err)
	}
	t.known, t.fresh = true, start
	t.version, t.announced, t.incarnation = r.st.Version, r.announced, r.st.Incarnation
	for w := range t.watchers {
		f.offer(w, r.st)
	}
	return false
}

// offer sends st to w if it is w's first state or newer than its last, and
// ends w after a terminal state, or if st is of an older version or of
// another incarnation: the task w watched is gone. f.mu is held.
func (f *fanout) offer(w *watcher, st store.State) {
	switch {
	case w.pending:
		w.pending = false
		w.send(st.Clone())
		w.first <- nil
	case st.Incarnation != w.incarnation || st.Version < w.last:
		f.end(w, nil)
		return
	case st.Version > w.last:
		w.send(st.Clone())
	}
	if st.Status.Terminal() {
		f.end(w, nil)
	}
}

// readFailed acts on a read of t's task that failed with err: the Watch
// calls waiting for their first state fail with err, and the other
// watches end unless Redis was unavailable (but the client is not
// closed): the read is then tried again, which readFailed reports, until
// the topic ends as stale. f.mu is held.
func (f *fanout) readFailed(t *topic, err error) (retry bool) {
	for w := range t.watchers {
		if w.pending {
			f.end(w, err)
		}
	}
	if f.topics[t.channel] != t { // dropped with its last watcher
		return false
	}
	if errors.Is(err, store.ErrUnavailable) && !errors.Is(err, redis.ErrClosed) {
		f.setDirty(t)
		return true
	}
	for w := range t.watchers {
		f.end(w, nil)
	}
	return false
}
