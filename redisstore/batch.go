package redisstore

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file sends the commands of calls made at once together, in one
// pipeline: one round trip, and one read and one write on the socket
// each side, for many calls. Redis answers a pipeline of 16 writes in
// about the time of 12 sent one by one, and the client spends less too.
//
// A call that finds fewer than two pipelines in flight and none queued
// sends its command at once, from its own goroutine: a call alone waits
// for no timer and no other call. Otherwise it queues. The queue goes in
// a pipeline of its own, sent by a goroutine that lives while calls
// queue, as soon as it may: while fewer than two pipelines are in flight,
// whatever its size; beyond two, up to maxSending, only once it holds
// fullBatch calls. So a call waits at most for the pipelines in flight to
// be answered. On a cluster, go-redis splits a pipeline by node, one
// round trip per node.
//
// Why the two kinds of place: with any pipeline free to go in either of
// two places, 128 tasks written at once made pipelines of very uneven
// size. Just after an answer few calls are queued, since those it
// answered are still making their next writes: half the pipelines (1,033
// of 2,223 in 50,000 writes) held one call and took a place while another
// held up to 127. Redis then waited for the client a quarter of the time,
// and the tracker made 0.76x the writes of the pipelined ceiling; with six
// more places for pipelines of at least 16, 0.95x (medians of 7 runs in
// turns; BENCHMARKS.md, "Pipelines of at least 16 beyond two"). A few
// tasks at once still get the two places as before.

// Bounds of the pipelines in flight: a Store has at most maxSending; beyond
// freeSending, one goes only with at least fullBatch calls.
const (
	maxSending  = 8
	freeSending = 2
	fullBatch   = 16
)

// mayGo reports whether n queued calls may go in a pipeline while sending
// pipelines are in flight.
func mayGo(sending, n int) bool {
	return n > 0 && (sending < freeSending || sending < maxSending && n >= fullBatch)
}

// batcher queues the commands of concurrent calls and sends them in
// pipelines.
type batcher struct {
	client  redis.UniversalClient
	direct  bool          // client ends commands when their context does (deadline.go)
	timeout time.Duration // of a pipeline sent for queued calls

	mu      sync.Mutex
	queue   []*queued // in the order the calls came
	sending int       // pipelines in flight
}

// queued is one call's command. For a script, cmd is set when it is sent:
// its EVALSHA, replaced by its EVAL if the server lacks the script.
type queued struct {
	ctx    context.Context // the call's
	script *redis.Script   // the script to run, or nil for cmd
	keys   []string        // the script's
	args   []any           // the script's
	cmd    redis.Cmder
	done   chan struct{} // closed once cmd has its reply or error, if the call queued
}

// run sends script with keys and args, alone or with the commands of
// other calls, and returns its command, answered, or ctx's error if ctx
// ended first.
func (b *batcher) run(ctx context.Context, script *redis.Script, keys []string, args ...any) (*redis.Cmd, error) {
	q := &queued{ctx: ctx, script: script, keys: keys, args: args}
	if err := b.do(q); err != nil {
		return nil, err
	}
	return q.cmd.(*redis.Cmd), nil
}

// process sends cmd, alone or with the commands of other calls, and
// returns once it has its reply, or ctx's error if ctx ended first.
func (b *batcher) process(ctx context.Context, cmd redis.Cmder) error {
	return b.do(&queued{ctx: ctx, cmd: cmd})
}

// do sends q's command and waits for its reply, or for the end of q.ctx.
func (b *batcher) do(q *queued) error {
	b.mu.Lock()
	if len(b.queue) == 0 && mayGo(b.sending, 1) {
		b.sending++
		b.mu.Unlock()
		err := exec(q.ctx, b.direct, func(ctx context.Context) error {
			b.send(ctx, []*queued{q})
			return nil
		})
		b.sent()
		return err
	}
	q.done = make(chan struct{})
	b.queue = append(b.queue, q)
	if mayGo(b.sending, len(b.queue)) {
		b.sending++
		go b.drain()
	}
	b.mu.Unlock()
	select {
	case <-q.done:
		return nil
	case <-q.ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, other := range b.queue {
		if other == q { // not sent: it never will be
			b.queue = append(b.queue[:i], b.queue[i+1:]...)
			break
		}
	}
	return q.ctx.Err()
}

// sent ends a pipeline a call sent itself: the calls queued meanwhile go
// next in its place, if they may.
func (b *batcher) sent() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !mayGo(b.sending-1, len(b.queue)) {
		b.sending--
		return
	}
	go b.drain()
}

// drain sends the queued calls, all those queued at once in one pipeline,
// while they may go in its place, and then gives the place up.
func (b *batcher) drain() {
	for {
		b.mu.Lock()
		if !mayGo(b.sending-1, len(b.queue)) {
			b.sending--
			b.mu.Unlock()
			return
		}
		batch := b.queue
		b.queue = nil
		b.mu.Unlock()
		// The calls have deadlines of their own, and wait for the
		// pipeline no longer; it ends by the store's timeout.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), b.timeout)
		b.send(ctx, batch)
		cancel()
		for _, q := range batch {
			close(q.done)
		}
	}
}

// send sends the commands of batch in one pipeline. The scripts the
// server lacks are sent again with their text, which caches them.
func (b *batcher) send(ctx context.Context, batch []*queued) {
	p := b.client.Pipeline()
	for _, q := range batch {
		if q.script != nil {
			q.cmd = q.script.EvalSha(q.ctx, p, q.keys, q.args...)
		} else {
			_ = p.Process(q.ctx, q.cmd)
		}
	}
	_, _ = p.Exec(ctx) // each command has its own error
	var missing []*queued
	for _, q := range batch {
		if q.script != nil && redis.HasErrorPrefix(q.cmd.Err(), "NOSCRIPT") {
			missing = append(missing, q)
		}
	}
	if len(missing) == 0 {
		return
	}
	p = b.client.Pipeline()
	for _, q := range missing {
		q.cmd = q.script.Eval(q.ctx, p, q.keys, q.args...)
	}
	_, _ = p.Exec(ctx)
}
