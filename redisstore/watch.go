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

// This file implements Watch. All the watches of a Store share one hub:
//
//   - one redis.PubSub, so one connection, however many watches and tasks;
//   - one receiver goroutine, the only one that reads from it;
//   - one subscriber goroutine, the only one that sends SUBSCRIBE and
//     UNSUBSCRIBE on it, so that they reach Redis in the order they were
//     decided, and no network call is made while mu is held;
//   - one topic per watched task: its channel, subscribed once however many
//     watchers follow it, and those watchers.
//
// The hub is created by the first Watch and closed (its connection too,
// its goroutines end) as soon as the last watch ends: a Store has no Close
// method, so a hub kept while nothing is watched would be a connection and
// two goroutines its user could never free. A watch after that creates a
// new hub.
//
// One mutex, watching.mu, guards the hub pointer and every hub, topic and
// watcher field that changes; it is never held across network I/O. Sends
// on a watcher's channel are made under it and never block: the channel
// holds one state, and a newer one replaces a state the reader has not
// taken (latest wins), so a slow reader holds up neither the receiver nor
// other watchers.
//
// Subscribe, then read. A topic is subscribed once Redis has confirmed its
// SUBSCRIBE on the hub's connection; until then nothing reads the task, so
// every change made after a read is announced. The receiver correlates the
// confirmations with topics by channel name. A confirmation, whether of
// the hub's own SUBSCRIBE or of the ones go-redis sends again after a
// reconnect, always makes the topic re-read the task: it may follow a time
// during which Redis was not subscribed (a lost connection, or an
// UNSUBSCRIBE of the same channel by a topic that has just ended).
//
// Reads are made by the topic, not by each watcher: one goroutine per
// topic, running only while a read is wanted, reads the task and hands the
// state to every watcher of the topic whose last version is lower, and to
// the watchers that wait for their first state. Reads of one topic never
// overlap, so their results never go back in time unless the task did
// (expired, deleted, replaced by a new task of the same id). A notice of a
// version every watcher has already got is ignored. A topic whose task has
// a time to live re-reads it when that ends, to close its watches if the
// task expired.
//
// Failures. When the connection fails, go-redis reconnects and sends
// SUBSCRIBE again for every channel: every topic waits for its new
// confirmation, which makes it re-read its task, so that changes made
// while the connection was down are delivered. The receiver opens the
// connection, when it has none, within the store's timeout (connect). If
// the connection fails for longer than the store's timeout, every watch
// ends. Watches still waiting for their first state fail at once with the
// error, as does one that gets none within the store's timeout. Reads that
// fail as unavailable are retried for the store's timeout, then end the
// topic's watches; any other read error ends them at once.

// watching is the part of a Store that serves Watch.
type watching struct {
	mu  sync.Mutex
	hub *hub // nil while nothing is watched
}

// hub is the pub/sub connection that the watches of a Store share, and
// what it serves. topics is guarded by mu; the other fields do not change.
type hub struct {
	s      *Store
	mu     *sync.Mutex // &s.watching.mu
	ps     *redis.PubSub
	ctx    context.Context // done once the hub is closed
	cancel context.CancelFunc
	kick   chan struct{} // wakes the subscriber; holds one signal

	topics map[string]*topic // by channel name
}

// topic is one task that is watched, and its watchers. A topic always has
// at least one watcher: it is dropped with its last.
type topic struct {
	channel, id string
	watchers    map[*watcher]struct{}

	requested  bool // the subscriber has sent SUBSCRIBE for it
	subscribed bool // Redis confirmed the subscription on the current connection
	dirty      bool // the task may have changed since the last read: read it
	reading    bool // a goroutine reads the task for the topic
	gone       bool // dropped from the hub

	version      int64       // of the last state read
	expiry       *time.Timer // re-reads the task when its time to live ends
	failingSince time.Time   // of the reads failing in a row, or zero
}

// watcher is one Watch call. Its fields are guarded by the hub's mu.
type watcher struct {
	h     *hub
	t     *topic
	ch    chan store.State
	first chan error  // receives, once, nil when the first state is sent or why there is none
	stop  func() bool // forgets the context.AfterFunc that ends the watch with its ctx

	pending bool  // waiting for its first state
	done    bool  // ended: no longer in t.watchers
	last    int64 // the version last sent on ch
}

// The pause between attempts after a failure grows from minBackoff to
// maxBackoff.
const (
	minBackoff = 10 * time.Millisecond
	maxBackoff = 500 * time.Millisecond
)

// expirySlack is how long after a task's time to live should have ended a
// topic re-reads it to see whether it is gone.
const expirySlack = 10 * time.Millisecond

// Watch implements [store.Watcher]. It subscribes to the task's channel,
// waits for Redis to confirm the subscription, and only then reads the
// current state, so that no change made after the read is missed. Each
// notification then makes it re-read the task and send the state if its
// version is newer than the last one sent. Watch waits at most the store's
// timeout (see [WithTimeout]) for the first state.
//
// The channel is also closed when the task expires (the task is re-read
// when its time to live ends), is deleted, or is replaced by a new task of
// the same id. If the connection is lost, it is opened again, every
// watched task is re-read and watching goes on; if it cannot be within the
// store's timeout, every watch's channel is closed. A Watch call still
// waiting for its first state when the connection fails returns the error.
//
// All the watches of a Store share one pub/sub connection, opened by the
// first and closed when the last ends, and subscribe to each task's
// channel once however many follow it; one read of the task after a
// notification serves them all. A watch holds no goroutine and no
// connection of its own.
func (s *Store) Watch(ctx context.Context, id string) (<-chan store.State, error) {
	if err := s.check(ctx, "watch", id); err != nil {
		return nil, err
	}
	w := &watcher{ch: make(chan store.State, 1), first: make(chan error, 1), pending: true}
	s.join(ctx, w, id)

	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-w.first:
	case <-timer.C:
		w.h.mu.Lock()
		if w.pending {
			w.h.end(w, wrap(fmt.Sprintf("watch %q: no state within %v", id, s.timeout), context.DeadlineExceeded))
		}
		w.h.mu.Unlock()
		err = <-w.first
	}
	if err != nil {
		return nil, err
	}
	return w.ch, nil
}

// join adds w to the topic of task id, creating the hub and the topic if
// need be, and asks for a read that will send w its first state.
func (s *Store) join(ctx context.Context, w *watcher, id string) {
	s.watching.mu.Lock()
	defer s.watching.mu.Unlock()
	h := s.watching.hub
	if h == nil {
		h = s.newHub()
		s.watching.hub = h
	}
	channel := eventsChannel(s.prefix, id)
	t := h.topics[channel]
	if t == nil {
		t = &topic{channel: channel, id: id, watchers: make(map[*watcher]struct{})}
		h.topics[channel] = t
		h.poke()
	}
	t.watchers[w] = struct{}{}
	w.h, w.t = h, t
	w.stop = context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if !w.done {
			h.end(w, wrap(fmt.Sprintf("watch %q", id), ctx.Err()))
		}
	})
	h.markDirty(t)
}

// newHub returns a new hub of s, its goroutines started. It does no I/O:
// the connection is opened by the first receive or subscription.
func (s *Store) newHub() *hub {
	ctx, cancel := context.WithCancel(context.Background())
	h := &hub{
		s: s, mu: &s.watching.mu, ps: s.client.Subscribe(ctx), ctx: ctx, cancel: cancel,
		kick: make(chan struct{}, 1), topics: make(map[string]*topic),
	}
	go h.receive()
	go h.subscribe()
	return h
}

// poke wakes the subscriber: the topics have changed.
func (h *hub) poke() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// subscribe is the subscriber goroutine. Each time it is woken, it sends
// SUBSCRIBE for the topics that have not asked for it yet and UNSUBSCRIBE
// for the channels whose topic is gone. Errors are left to the receiver,
// which sees the same failure: go-redis keeps a channel it failed to
// subscribe to in its list and subscribes to it again when it reconnects.
// The subscriber closes the PubSub when the hub closes.
func (h *hub) subscribe() {
	defer func() { _ = h.ps.Close() }()
	asked := make(map[string]bool) // channels subscribed to and not since unsubscribed
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-h.kick:
		}
		var sub, unsub []string
		h.mu.Lock()
		for channel, t := range h.topics {
			if !t.requested {
				t.requested = true
				sub = append(sub, channel)
			}
		}
		for channel := range asked {
			if h.topics[channel] == nil {
				unsub = append(unsub, channel)
				delete(asked, channel)
			}
		}
		h.mu.Unlock()
		ctx, cancel := context.WithTimeout(h.ctx, h.s.timeout)
		if len(sub) > 0 {
			for _, channel := range sub {
				asked[channel] = true
			}
			_ = h.ps.Subscribe(ctx, sub...)
		}
		if len(unsub) > 0 {
			_ = h.ps.Unsubscribe(ctx, unsub...)
		}
		cancel()
	}
}

// receive is the receiver goroutine: it reads the PubSub until the hub
// closes. A confirmation makes its topic subscribed and re-read; a notice
// makes it re-read unless every watcher has its version. After a failure it
// pauses and goes on (go-redis reconnects and subscribes again); once
// failures have lasted longer than the store's timeout it ends every
// watch.
func (h *hub) receive() {
	var failingSince time.Time
	backoff := minBackoff
	connected := false // since the last failure
	for {
		var msg any
		var err error
		if !connected {
			err = h.connect()
			connected = err == nil
		}
		if err == nil {
			msg, err = h.ps.Receive(h.ctx)
		}
		if h.ctx.Err() != nil {
			return
		}
		if err == nil {
			failingSince, backoff = time.Time{}, minBackoff
			h.handle(msg)
			continue
		}
		connected = false
		now := time.Now()
		if failingSince.IsZero() {
			failingSince = now
		}
		over := now.Sub(failingSince) > h.s.timeout || errors.Is(err, redis.ErrClosed)
		h.mu.Lock()
		if over {
			h.endAll(err)
		} else {
			h.lost(err)
		}
		h.mu.Unlock()
		if over || !sleep(h.ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// connect has the PubSub open its connection if it has none, within the
// store's timeout, and sends a PING on it (its answer is ignored). Receive,
// whose context has no deadline so that it can wait for notices, would
// otherwise open it without that bound, and a server that accepts
// connections but does not answer would hold the hub up to the client's
// own timeouts.
func (h *hub) connect() error {
	ctx, cancel := context.WithTimeout(h.ctx, h.s.timeout)
	defer cancel()
	return h.ps.Ping(ctx)
}

// handle acts on a message of the PubSub.
func (h *hub) handle(msg any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch msg := msg.(type) {
	case *redis.Subscription:
		if t := h.topics[msg.Channel]; t != nil && msg.Kind == "subscribe" {
			t.subscribed = true
			t.failingSince = time.Time{} // give its reads the store's timeout again
			h.markDirty(t)
		}
	case *redis.Message:
		// Version 0 announces a deletion, a lower version a new task of
		// the same id: both end the watches once re-read. A read in
		// progress may have started before the change.
		if t := h.topics[msg.Channel]; t != nil && (t.reading || noticeVersion(msg.Payload) != t.version) {
			h.markDirty(t)
		}
	}
}

// lost acts on a failure of the PubSub. After a network error go-redis
// reconnects and subscribes to every channel again: every topic waits for
// its new confirmation. An error reply, or a message go-redis could not
// parse, leaves the connection as it was; it answers the SUBSCRIBE of a
// topic not confirmed yet, and since which one cannot be told, each of
// those is sent again. Either way, the watches of the topics not
// subscribed that have not sent their first state fail with err.
func (h *hub) lost(err error) {
	reconnect := reconnects(err)
	for _, t := range h.topics {
		switch {
		case reconnect:
			t.subscribed = false
		case t.subscribed:
			continue
		default:
			t.requested = false
		}
		for w := range t.watchers {
			if w.pending {
				h.end(w, wrap(fmt.Sprintf("watch %q: subscribe", t.id), err))
			}
		}
	}
	if !reconnect {
		h.poke()
	}
}

// reconnects reports whether go-redis reconnects, and so subscribes again,
// after the PubSub failed with err: it does after network errors, which
// classify finds unavailable, but not after an error reply.
func reconnects(err error) bool {
	var reply redis.Error
	return !errors.As(err, &reply) && errors.Is(classify(err), store.ErrUnavailable)
}

// endAll ends every watch: the PubSub failed with err for good. The hub
// closes with its last topic.
func (h *hub) endAll(err error) {
	for _, t := range h.topics {
		for w := range t.watchers {
			h.end(w, wrap(fmt.Sprintf("watch %q", t.id), err))
		}
	}
}

// markDirty asks for a read of t's task, and starts the topic's reader
// unless it runs or t is not subscribed yet (its confirmation will start
// it).
func (h *hub) markDirty(t *topic) {
	t.dirty = true
	if t.subscribed && !t.reading && !t.gone {
		t.reading = true
		go h.refresh(t)
	}
}

// refresh is the reader of topic t: it reads the task as long as a read is
// wanted and t is subscribed, and hands each result to the watchers.
func (h *hub) refresh(t *topic) {
	backoff := minBackoff
	for {
		h.mu.Lock()
		if t.gone || !t.dirty || !t.subscribed {
			t.reading = false
			h.mu.Unlock()
			return
		}
		t.dirty = false
		h.mu.Unlock()

		st, ttl, err := h.read(t.id)

		h.mu.Lock()
		retry := h.deliver(t, st, ttl, err)
		h.mu.Unlock()
		if !retry {
			backoff = minBackoff
			continue
		}
		if !sleep(h.ctx, backoff) {
			h.mu.Lock()
			t.reading = false
			h.mu.Unlock()
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// read returns task id's state and how long it has to live (0 if it does
// not expire), in one round trip.
func (h *hub) read(id string) (store.State, time.Duration, error) {
	ctx, cancel := context.WithTimeout(h.ctx, h.s.timeout)
	defer cancel()
	key := taskKey(h.s.prefix, id)
	var fields *redis.MapStringStringCmd
	var ttl *redis.DurationCmd
	_, err := h.s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		fields = p.HGetAll(ctx, key)
		ttl = p.PTTL(ctx, key)
		return nil
	})
	if err != nil {
		return store.State{}, 0, wrap(fmt.Sprintf("watch %q", id), err)
	}
	st, err := h.s.decode("watch", id, fields.Val())
	if err != nil {
		return store.State{}, 0, err
	}
	return st, max(ttl.Val(), 0), nil
}

// deliver hands the outcome of a read of t's task to its watchers. A
// watcher waiting for its first state gets it, or the error. The others
// get the state if it is newer than their last, and are ended after a
// terminal state, if the task is gone or was replaced (an older version),
// or if the read failed for another reason than a passing unavailability.
// deliver reports whether to read again after a pause: reads have failed
// for less than the store's timeout.
func (h *hub) deliver(t *topic, st store.State, ttl time.Duration, err error) (retry bool) {
	if t.gone {
		return false
	}
	if err != nil {
		for w := range t.watchers {
			if w.pending {
				h.end(w, err)
			}
		}
		if t.gone {
			return false
		}
		if errors.Is(err, store.ErrUnavailable) && !errors.Is(err, redis.ErrClosed) {
			now := time.Now()
			if t.failingSince.IsZero() {
				t.failingSince = now
			}
			if now.Sub(t.failingSince) <= h.s.timeout {
				t.dirty = true
				return true
			}
		}
		for w := range t.watchers {
			h.end(w, nil)
		}
		return false
	}

	t.failingSince = time.Time{}
	t.version = st.Version
	if t.expiry != nil {
		t.expiry.Stop()
		t.expiry = nil
	}
	if ttl > 0 {
		t.expiry = time.AfterFunc(ttl+expirySlack, func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.markDirty(t)
		})
	}
	for w := range t.watchers {
		switch {
		case w.pending:
			w.send(st)
			w.pending = false
			w.first <- nil
		case st.Version > w.last:
			w.send(st)
		case st.Version < w.last:
			h.end(w, nil) // a new task of the same id
			continue
		}
		if st.Status.Terminal() {
			h.end(w, nil)
		}
	}
	return false
}

// end ends watcher w: a pending one gets err as the outcome of its Watch
// call, any other has its channel closed. The topic is dropped with its
// last watcher.
func (h *hub) end(w *watcher, err error) {
	w.done = true
	w.stop()
	t := w.t
	delete(t.watchers, w)
	if w.pending {
		w.pending = false
		w.first <- err
	} else {
		close(w.ch)
	}
	if len(t.watchers) == 0 {
		h.drop(t)
	}
}

// drop removes topic t, which has no watcher left; the subscriber
// unsubscribes from its channel. The hub closes with its last topic.
func (h *hub) drop(t *topic) {
	t.gone = true
	if t.expiry != nil {
		t.expiry.Stop()
	}
	delete(h.topics, t.channel)
	if len(h.topics) > 0 {
		h.poke()
		return
	}
	if h.s.watching.hub == h {
		h.s.watching.hub = nil
	}
	h.cancel() // the subscriber closes the PubSub, the receiver returns
}

// send puts st on the channel, replacing a state the reader has not taken:
// the reader gets the latest state and the sender never waits for it.
// Sends are made under the hub's mu, so no other can fill the channel
// between the two steps.
func (w *watcher) send(st store.State) {
	select {
	case <-w.ch:
	default:
	}
	w.ch <- st
	w.last = st.Version
}

// noticeVersion returns the version a notice announces, or -1 if payload is
// not a notice: not ours to judge, so worth a re-read.
func noticeVersion(payload string) int64 {
	var n notice
	if json.Unmarshal([]byte(payload), &n) != nil {
		return -1
	}
	return n.Version
}

// sleep waits for d or until ctx is done, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
