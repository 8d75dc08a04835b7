package redisstore

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// hub is the one pub/sub connection (a go-redis PubSub) that the topics of
// a fan-out share, however many they are, and its two goroutines:
//
//   - the subscriber, the only one that writes on the connection: it sends
//     SUBSCRIBE and UNSUBSCRIBE as topics come and go, in the order they
//     were asked for, and the PING of the health check (health.go);
//   - the receiver, the only one that reads it: it tells the fan-out of
//     each confirmed subscription and each notification.
//
// Only the subscriber opens a connection (go-redis opens one with the
// first command on a PubSub): the receiver waits until the subscriber has
// written on it. A connection that fails or goes quiet is replaced by a
// new PubSub (health.go), which subscribes to every channel again; gen
// counts the connections, so that what comes late on an old one is
// ignored. The hub never calls the fan-out with its mu held, and its
// methods that the fan-out calls (with the fan-out's mu held) take nothing
// but the hub's mu.
//
// Every network call of the hub runs in a goroutine of its own (see call),
// so that the hub's goroutines return at once when it closes: a call left
// to finish alone ends when its deadline comes, or at once when it reads a
// connection that the hub closes.
type hub struct {
	s      *Store
	f      *fanout
	ctx    context.Context // done once the hub is closed
	cancel context.CancelFunc
	kick   chan struct{} // wakes the subscriber; holds one signal
	ready  chan struct{} // wakes the receiver: the connection is open; holds one signal
	wg     sync.WaitGroup

	mu   sync.Mutex
	ps   *redis.PubSub
	gen  uint64
	open bool                // the subscriber has written on the current connection: it is open
	subs map[string]subState // by channel, on the current connection
	// health.go:
	asked   time.Time // when a reply was asked for that has not come, or zero
	failing bool      // connections have failed since something last came
}

// subState is where a channel's subscription stands on the current
// connection.
type subState uint8

const (
	toSubscribe   subState = iota // wanted; SUBSCRIBE not sent yet
	subscribing                   // SUBSCRIBE sent, not confirmed yet
	subscribed                    // confirmed: its notifications come
	toUnsubscribe                 // no longer wanted; UNSUBSCRIBE not sent yet
)

// newHub returns a hub for f, its goroutines started. It does no I/O
// itself: the goroutines open the connection.
func newHub(s *Store, f *fanout) *hub {
	ctx, cancel := context.WithCancel(context.Background())
	h := &hub{
		s: s, f: f, ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1), ready: make(chan struct{}, 1),
		ps: s.client.Subscribe(ctx), subs: make(map[string]subState),
	}
	h.wg.Add(2)
	go h.subscriber()
	go h.receiver()
	return h
}

// subscribe asks for a subscription to channel, confirmed anew even if
// the connection has it.
func (h *hub) subscribe(channel string) {
	h.mu.Lock()
	h.subs[channel] = toSubscribe
	h.mu.Unlock()
	h.poke()
}

// unsubscribe asks for channel to be unsubscribed.
func (h *hub) unsubscribe(channel string) {
	h.mu.Lock()
	h.subs[channel] = toUnsubscribe
	h.mu.Unlock()
	h.poke()
}

// confirmed reports whether Redis confirmed the subscription to channel on
// the current connection.
func (h *hub) confirmed(channel string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.subs[channel] == subscribed
}

// close ends the hub: its goroutines return, and the subscriber closes the
// connection. It does not wait for them (see wait).
func (h *hub) close() {
	h.cancel()
}

// wait waits until the hub's goroutines have returned.
func (h *hub) wait() {
	h.wg.Wait()
}

// poke wakes the subscriber.
func (h *hub) poke() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// current returns the current connection, its number, and whether it is
// open.
func (h *hub) current() (*redis.PubSub, uint64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ps, h.gen, h.open
}

// opened notes that connection gen is open, and wakes the receiver.
func (h *hub) opened(gen uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if gen == h.gen && !h.open {
		h.open = true
		select {
		case h.ready <- struct{}{}:
		default:
		}
	}
}

// subscriber is the subscriber goroutine. Woken, it sends what the
// subscriptions need; twice per health interval it checks the connection
// (health.go). It closes the connection when the hub closes.
func (h *hub) subscriber() {
	defer h.wg.Done()
	tick := time.NewTicker(h.s.health / 2)
	defer tick.Stop()
	backoff := minBackoff
	for {
		select {
		case <-h.ctx.Done():
			ps, _, _ := h.current()
			discard(ps)
			return
		case <-h.kick:
			if h.sync() {
				backoff = minBackoff
			} else if sleep(h.ctx, backoff) {
				backoff = min(2*backoff, maxBackoff)
			}
		case <-tick.C:
			h.checkHealth()
		}
	}
}

// sync sends SUBSCRIBE for the channels wanted and UNSUBSCRIBE for those no
// longer wanted. It reports false if that failed, and the connection is
// being replaced.
func (h *hub) sync() bool {
	var sub, unsub []string
	h.mu.Lock()
	ps, gen := h.ps, h.gen
	for channel, st := range h.subs {
		switch st {
		case toSubscribe:
			h.subs[channel] = subscribing
			sub = append(sub, channel)
		case toUnsubscribe:
			delete(h.subs, channel)
			unsub = append(unsub, channel)
		}
	}
	if len(sub) > 0 {
		h.expectReply(time.Now())
	}
	h.mu.Unlock()
	if len(sub)+len(unsub) == 0 {
		return true
	}

	ctx, cancel := context.WithTimeout(h.ctx, h.s.timeout)
	defer cancel()
	err := exec(ctx, false, func(ctx context.Context) error {
		if len(sub) > 0 {
			if err := ps.Subscribe(ctx, sub...); err != nil {
				return err
			}
		}
		if len(unsub) > 0 {
			return ps.Unsubscribe(ctx, unsub...)
		}
		return nil
	})
	if err != nil {
		h.replace(gen, err)
		return false
	}
	h.opened(gen)
	return true
}

// receiver is the receiver goroutine: it reads the connection, once it is
// open, until the hub closes, waiting at most the health interval for each
// message.
func (h *hub) receiver() {
	defer h.wg.Done()
	backoff := minBackoff
	for {
		ps, gen, open := h.current()
		if !open {
			select {
			case <-h.ctx.Done():
				return
			case <-h.ready:
			}
			continue
		}
		msg, err := h.receive(ps)
		switch {
		case h.ctx.Err() != nil:
			return
		case err == nil:
			backoff = minBackoff
			h.handle(gen, msg)
		case silent(err):
			// Nothing came: the health check tells whether the
			// connection lives.
		case h.failed(gen, err):
			sleep(h.ctx, backoff)
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// receive returns the next message on ps, waiting for it at most the
// health interval. A call that does not return by the store's timeout
// after that (go-redis opening a new connection after a failure, on a
// server that does not answer) is left to finish alone, and reported as
// failed.
func (h *hub) receive(ps *redis.PubSub) (any, error) {
	ctx, cancel := context.WithTimeout(h.ctx, h.s.health+h.s.timeout)
	defer cancel()
	return call(ctx, false, func(ctx context.Context) (any, error) {
		return ps.ReceiveTimeout(ctx, h.s.health)
	})
}

// silent reports whether err only says that nothing came on the
// connection within the time a receive waited.
func silent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "read" && op.Timeout()
}

// handle acts on msg, which came on connection gen: the connection lives;
// a confirmed subscription makes its topic read its task, and so does a
// notification unless the topic has its version.
func (h *hub) handle(gen uint64, msg any) {
	h.mu.Lock()
	current := gen == h.gen
	tell := current
	if current {
		h.heard()
		if sub, ok := msg.(*redis.Subscription); ok {
			tell = h.confirm(sub)
		}
	}
	h.mu.Unlock()
	if !tell {
		return
	}
	switch msg := msg.(type) {
	case *redis.Subscription:
		h.f.confirmed(msg.Channel)
	case *redis.Message:
		h.f.notified(msg.Channel, msg.Payload)
	}
}

// confirm records what sub says of a subscription on the current
// connection, and reports whether it confirms one that is wanted. A
// confirmation of an UNSUBSCRIBE sent before the channel was wanted again
// makes it wait for the confirmation of the SUBSCRIBE that follows. h.mu
// is held.
func (h *hub) confirm(sub *redis.Subscription) bool {
	st, ok := h.subs[sub.Channel]
	switch {
	case !ok:
	case sub.Kind == "subscribe" && (st == subscribing || st == subscribed):
		h.subs[sub.Channel] = subscribed
		return true
	case sub.Kind == "unsubscribe" && st == subscribed:
		h.subs[sub.Channel] = subscribing
	}
	return false
}
