package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskstatus/taskstatus/store"
)

// The pause between a watcher's attempts to reconnect grows from
// minBackoff to maxBackoff.
const (
	minBackoff = 10 * time.Millisecond
	maxBackoff = 500 * time.Millisecond
)

// expirySlack is how long after a task's time to live should have ended a
// watcher re-reads it to see whether it is gone.
const expirySlack = 10 * time.Millisecond

// watcher is one Watch call. After Watch returns, only its goroutine uses it.
type watcher struct {
	s    *Store
	id   string
	ps   *redis.PubSub
	ch   chan store.State
	last int64         // the version last sent on ch
	wait time.Duration // until the task may have expired; 0 if it never does
}

// Watch implements [store.Watcher]. It subscribes to the task's channel,
// waits for Redis to confirm the subscription, and only then reads the
// current state, so that no change made after the read is missed. Each
// notification then makes it re-read the task and send the state if its
// version is newer than the last one sent.
//
// Each call holds one connection from the client's pub/sub pool and one
// goroutine until the channel is closed. The channel is also closed when
// the task expires (the watcher re-reads it when its time to live ends), is
// deleted, or is replaced by a new task of the same id. If the connection
// is lost, the watcher reconnects, re-reads the task and goes on; if it
// cannot within the store's timeout (see [WithTimeout]), it closes the
// channel.
func (s *Store) Watch(ctx context.Context, id string) (<-chan store.State, error) {
	if err := s.check(ctx, "watch", id); err != nil {
		return nil, err
	}
	w := &watcher{s: s, id: id, ch: make(chan store.State, 1)}
	over, err := w.start(ctx)
	if err != nil {
		return nil, err
	}
	if over {
		_ = w.ps.Close()
		close(w.ch)
		return w.ch, nil
	}
	go w.run(ctx)
	return w.ch, nil
}

// start subscribes, then sends the current state. It reports whether
// watching is already over because the task has ended.
func (w *watcher) start(ctx context.Context) (over bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.s.timeout)
	defer cancel()
	w.ps = w.s.client.Subscribe(ctx, eventsChannel(w.s.prefix, w.id))
	msg, err := w.ps.Receive(ctx)
	if err == nil {
		if _, ok := msg.(*redis.Subscription); !ok {
			err = fmt.Errorf("got %T, want the subscription's confirmation", msg)
		}
	}
	if err != nil {
		_ = w.ps.Close()
		return false, wrap(fmt.Sprintf("watch %q: subscribe", w.id), err)
	}
	st, err := w.read(ctx)
	if err != nil {
		_ = w.ps.Close()
		return false, err
	}
	w.send(st)
	return st.Status.Terminal(), nil
}

// run delivers changes until watching is over, then closes the channel.
func (w *watcher) run(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { _ = w.ps.Close() }) // ends a pending receive
	defer func() {
		stop()
		_ = w.ps.Close()
		close(w.ch)
	}()

	stale := false // a change may not have been sent yet: re-read
	var failingSince time.Time
	backoff := minBackoff
	for {
		var err error
		if stale {
			var over bool
			if over, err = w.refresh(ctx); over {
				return
			}
			stale = err != nil
		}
		if err == nil {
			stale, err = w.receive(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failingSince, backoff = time.Time{}, minBackoff
			continue
		}
		if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, redis.ErrClosed) {
			return
		}
		// The connection is lost. The next receive reconnects and
		// resubscribes; changes made meanwhile are found by re-reading.
		stale = true
		if now := time.Now(); failingSince.IsZero() {
			failingSince = now
		} else if now.Sub(failingSince) > w.s.timeout {
			return
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// receive waits for the next message on the task's channel and reports
// whether the task may have changed since the last state sent.
func (w *watcher) receive(ctx context.Context) (changed bool, err error) {
	msg, err := w.ps.ReceiveTimeout(ctx, w.wait)
	if err != nil {
		var netErr net.Error
		if w.wait > 0 && errors.As(err, &netErr) && netErr.Timeout() {
			return true, nil // the time to live has ended: has the task?
		}
		return false, wrap(fmt.Sprintf("watch %q", w.id), err)
	}
	switch msg := msg.(type) {
	case *redis.Subscription:
		// A confirmation after a reconnect: changes made while the
		// connection was down were not delivered.
		return msg.Kind == "subscribe", nil
	case *redis.Message:
		// Version 0 announces a deletion, a lower version a new task of
		// the same id: both end the watch once re-read.
		return noticeVersion(msg.Payload) != w.last, nil
	}
	return false, nil
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

// refresh re-reads the task and sends its state if it is newer than the
// last one sent. It reports whether watching is over: the task ended, is
// gone, or was replaced by a new task of the same id.
func (w *watcher) refresh(ctx context.Context) (over bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.s.timeout)
	defer cancel()
	st, err := w.read(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return true, nil
	case err != nil:
		return false, err
	case st.Version < w.last:
		return true, nil
	case st.Version > w.last:
		w.send(st)
	}
	return st.Status.Terminal(), nil
}

// read returns the task's state and notes when its time to live ends, in
// one round trip.
func (w *watcher) read(ctx context.Context) (store.State, error) {
	key := taskKey(w.s.prefix, w.id)
	var fields *redis.MapStringStringCmd
	var ttl *redis.DurationCmd
	_, err := w.s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		fields = p.HGetAll(ctx, key)
		ttl = p.PTTL(ctx, key)
		return nil
	})
	if err != nil {
		return store.State{}, wrap(fmt.Sprintf("watch %q", w.id), err)
	}
	st, err := w.s.decode("watch", w.id, fields.Val())
	if err != nil {
		return store.State{}, err
	}
	w.wait = 0
	if d := ttl.Val(); d > 0 {
		w.wait = d + expirySlack
	}
	return st, nil
}

// send puts st on the channel, replacing a state the reader has not taken:
// the reader gets the latest state and the watcher never waits for it.
func (w *watcher) send(st store.State) {
	select {
	case <-w.ch:
	default:
	}
	w.ch <- st
	w.last = st.Version
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
