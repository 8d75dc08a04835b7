package tracker

import (
	"context"
	"sync"
	"time"
)

// bound returns ctx limited to the Tracker's timeout. Call its stop method
// when the call is done.
//
// context.WithTimeout arms a timer on every call, which costs more than a
// whole in-memory transition. The context returned here arms one only
// when the store waits on Done, which stores that block (on a network, say)
// do and in-memory stores never need to. Its Deadline reports the bound
// either way; its Err reports it once Done was asked for (until then the
// channel that would say so does not exist, and reading the clock on every
// Err would cost as much again). The tracker checks the deadline itself
// between a store's answers.
func (t *Tracker) bound(ctx context.Context) *boundedContext {
	return &boundedContext{parent: ctx, deadline: t.deadline(ctx, time.Now())}
}

// deadline returns the deadline of a call that started at start: the
// Tracker's timeout later, or ctx's deadline if that is sooner.
func (t *Tracker) deadline(ctx context.Context, start time.Time) time.Time {
	deadline := start.Add(t.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return deadline
}

// boundedContext is its parent with a deadline, whose timer is made the
// first time Done is called.
type boundedContext struct {
	parent   context.Context
	deadline time.Time

	mu      sync.Mutex
	timed   context.Context // parent with the deadline, once Done was called
	cancel  context.CancelFunc
	stopped bool
}

func (c *boundedContext) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, true // no later than the parent's
}

func (c *boundedContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timed == nil {
		c.timed, c.cancel = context.WithDeadline(c.parent, c.deadline)
		if c.stopped {
			c.cancel()
		}
	}
	return c.timed.Done()
}

func (c *boundedContext) Err() error {
	c.mu.Lock()
	timed, stopped := c.timed, c.stopped
	c.mu.Unlock()
	switch {
	case timed != nil:
		return timed.Err()
	case stopped:
		return context.Canceled
	}
	return c.parent.Err()
}

// reset makes c a new context: parent limited to deadline. A writer
// reuses the context of the task's cache entry for each call, which the
// store's contract allows: a store keeps no context after its method
// returns. Only the caller that holds c may call reset.
func (c *boundedContext) reset(parent context.Context, deadline time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.parent, c.deadline = parent, deadline
	c.timed, c.cancel, c.stopped = nil, nil, false
}

// expired reports whether the deadline has passed. Only the caller that
// holds c may call it.
func (c *boundedContext) expired() bool {
	return !time.Now().Before(c.deadline)
}

// Value looks values up in the timed context once there is one, so that
// contexts derived from this one find its cancellation and need no
// goroutine to follow it.
func (c *boundedContext) Value(key any) any {
	c.mu.Lock()
	timed := c.timed
	c.mu.Unlock()
	if timed != nil {
		return timed.Value(key)
	}
	return c.parent.Value(key)
}

func (c *boundedContext) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.cancel != nil {
		c.cancel()
	}
}
