package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskstatus/taskstatus/store"
)

// This file keeps the hub's connection alive. A pub/sub connection that
// went silent looks exactly like one on which nothing is published: the
// server may be gone while the client's side of the connection stays open
// (half-open), and notifications are then lost without an error. So:
//
//   - twice per health interval, the subscriber asks for a reply (PING)
//     unless one is due already (a PING, or the confirmation of a
//     SUBSCRIBE); a reply not come within the interval makes the
//     connection quiet;
//   - a connection that is quiet, that fails, or whose call had to be left
//     to finish alone, is replaced by a new one, which subscribes to every
//     channel again: every topic then reads its task once Redis confirms
//     it (fanout.go), so what was missed is delivered. Replacements go on,
//     after a pause that grows, as long as anything is watched: the
//     watches end on their own if their tasks cannot be read either
//     (reader.go).
//
// An error reply (a SUBSCRIBE refused) leaves the connection as it is.

// errQuiet is the cause of the replacement of a quiet connection.
var errQuiet = fmt.Errorf("%w: no reply on the pub/sub connection within the health interval", store.ErrUnavailable)

// expectReply notes that a reply is due on the current connection from
// now, unless one is due already. h.mu is held.
func (h *hub) expectReply(now time.Time) {
	if h.asked.IsZero() {
		h.asked = now
	}
}

// heard notes that something came on the current connection: it lives.
// h.mu is held.
func (h *hub) heard() {
	h.asked, h.failing = time.Time{}, false
}

// checkHealth asks for a reply on the connection if none is due, and
// replaces it if one due has not come within the health interval.
func (h *hub) checkHealth() {
	h.mu.Lock()
	ps, gen := h.ps, h.gen
	now := time.Now()
	due := !h.asked.IsZero()
	quiet := due && now.Sub(h.asked) >= h.s.health
	h.expectReply(now)
	h.mu.Unlock()
	switch {
	case quiet:
		h.replace(gen, errQuiet)
	case !due:
		ctx, cancel := context.WithTimeout(h.ctx, h.s.timeout)
		defer cancel()
		if err := exec(ctx, false, func(ctx context.Context) error { return ps.Ping(ctx) }); err != nil {
			h.replace(gen, err)
			return
		}
		h.opened(gen)
	}
}

// failed acts on err, the failure of a receive on connection gen, and
// reports whether gen was the current connection.
func (h *hub) failed(gen uint64, err error) bool {
	if _, ok := errors.AsType[redis.Error](err); ok {
		return h.refuse(gen, err)
	}
	return h.replace(gen, err)
}

// refuse acts on an error reply, err, on connection gen: it answers the
// SUBSCRIBE of a channel not confirmed yet, and which one cannot be told,
// so each of those is sent again, and the fan-out is told. It reports
// whether gen was the current connection.
func (h *hub) refuse(gen uint64, err error) bool {
	var refused []string
	h.mu.Lock()
	if gen != h.gen {
		h.mu.Unlock()
		return false
	}
	h.heard()
	for channel, st := range h.subs {
		if st == subscribing {
			h.subs[channel] = toSubscribe
			refused = append(refused, channel)
		}
	}
	h.mu.Unlock()
	h.poke()
	h.f.refused(refused, err)
	return true
}

// replace replaces connection gen, which failed for cause, by a new one
// that subscribes to every channel wanted (each topic reads its task once
// Redis confirms it). It logs the first failure of connections failing in
// a row. It reports whether gen was the current connection: if not, it
// was replaced already.
func (h *hub) replace(gen uint64, cause error) bool {
	h.mu.Lock()
	if gen != h.gen || h.ctx.Err() != nil {
		h.mu.Unlock()
		return false
	}
	old := h.ps
	h.ps, h.gen, h.open = h.s.client.Subscribe(h.ctx), h.gen+1, false // no I/O: the subscriber opens it
	for channel, st := range h.subs {
		if st == toUnsubscribe {
			delete(h.subs, channel)
		} else {
			h.subs[channel] = toSubscribe
		}
	}
	h.asked = time.Time{}
	first := !h.failing
	h.failing = true
	h.mu.Unlock()

	discard(old)
	h.poke()
	if first {
		h.s.logger.Warn("redisstore: replacing the watches' pub/sub connection", slog.Any("error", cause))
	}
	return true
}

// discard closes ps, in a goroutine of its own: closing waits for a call
// that is opening a connection on ps, which ends at its deadline.
func discard(ps *redis.PubSub) {
	go func() { _ = ps.Close() }()
}
