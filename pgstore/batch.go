package pgstore

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskstatus/taskstatus/store"
)

// This file sends the updates of Puts made at once together, in one
// statement (updateBatchSQL): one round trip and one commit for many
// writes, where the server's CPU, which is what bounds writes, spends
// less a write than on a statement of its own (opening the tables and
// their indexes, planning, committing).
//
// A call that finds nothing in flight sends its update at once, from its
// own goroutine: a call alone waits for no timer and no other call. While
// maxSending statements are in flight, calls queue; as soon as one ends,
// the queued go in the next, sent by a goroutine that lives while calls
// queue. Creations (Prev 0) and the writes of a TxStore are sent alone.

// maxSending is how many statements of updates a Store has in flight at
// most, each on a connection of the pool. In BenchmarkWrite (32 tasks),
// one made the most writes a second (1.78 times the floor, against 1.42
// with two and 1.24 with three, medians of 9 interleaved rounds): the
// fewer statements, the more writes each. Two are kept all the same, so
// that updates go on while a statement waits, on a row lock another
// transaction holds or on a slow commit.
const maxSending = 2

// maxBatch is how many writes one statement makes at most.
const maxBatch = 64

// errAlone is the outcome of a write that is to be sent again alone: its
// statement failed with an error that any of its writes may have caused,
// so that only the write at fault fails; or it did not apply, and alone
// it waits for a lock another transaction holds on its task, or finds out
// whether it is a resend or a conflict.
var errAlone = errors.New("pgstore: a write of the batch is to be sent alone")

// batcher queues the updates of concurrent calls and sends them together.
type batcher struct {
	pool    *pgxpool.Pool
	q       *queries
	timeout time.Duration // of a statement sent for queued calls

	mu      sync.Mutex
	queue   []*pending // in the order the calls came
	sending int        // statements in flight
	closed  bool
	drains  sync.WaitGroup // the goroutines that send queued calls
}

// pending is one call's update, and its outcome once sent.
type pending struct {
	ctx     context.Context // the call's
	row     *row
	applied bool
	err     error         // of its statement, errAlone, or errClosed
	done    chan struct{} // closed once applied and err are set, if the call queued
}

// update makes r, an update (Prev > 0), alone or with the updates of
// other calls, and reports whether it applied. It returns errAlone if r is
// to be made alone, and ctx's error if ctx ends first.
func (b *batcher) update(ctx context.Context, r *row) (bool, error) {
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return false, errClosed
	case b.sending < maxSending && len(b.queue) == 0:
		b.sending++
		b.mu.Unlock()
		applied, err := writeRow(ctx, b.pool, b.q.update, r)
		b.sent()
		return applied, err
	}
	p := &pending{ctx: ctx, row: r, done: make(chan struct{})}
	b.queue = append(b.queue, p)
	if b.sending < maxSending {
		b.sending++
		b.drains.Go(b.drain)
	}
	b.mu.Unlock()
	select {
	case <-p.done:
		return p.applied, p.err
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if i := slices.Index(b.queue, p); i >= 0 { // not sent: it never will be
		b.queue = slices.Delete(b.queue, i, i+1)
	}
	return false, ctx.Err()
}

// sent ends a statement a call sent itself: the calls queued meanwhile go
// next.
func (b *batcher) sent() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 {
		b.sending--
		return
	}
	b.drains.Go(b.drain)
}

// drain sends the queued calls, a batch at a time, until none is left,
// and then gives its place among the statements in flight up.
func (b *batcher) drain() {
	for {
		b.mu.Lock()
		batch := b.take()
		if len(batch) == 0 {
			b.sending--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.send(batch)
		for _, p := range batch {
			close(p.done)
		}
	}
}

// take removes the next batch from the queue and returns it: the first
// queued update of each task, maxBatch at most. An update of a task
// already in the batch stays queued, in its place, for a later one: in
// one statement, two updates of a task would be one join, of which
// PostgreSQL applies either.
func (b *batcher) take() []*pending {
	var batch []*pending
	rest := b.queue[:0]
	ids := make(map[string]bool)
	for _, p := range b.queue {
		if len(batch) == maxBatch || ids[p.row.id] {
			rest = append(rest, p)
			continue
		}
		ids[p.row.id] = true
		batch = append(batch, p)
	}
	clear(b.queue[len(rest):])
	b.queue = rest
	return batch
}

// send makes the updates of batch in one statement, and sets each one's
// outcome. If the statement fails because the server cannot answer, each
// gets its error; if it fails otherwise, each gets errAlone, and so does
// each write that it did not apply.
func (b *batcher) send(batch []*pending) {
	// The calls have deadlines of their own, and wait for the statement
	// no longer; it ends by the store's timeout.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), b.timeout)
	defer cancel()
	if len(batch) == 1 {
		batch[0].applied, batch[0].err = writeRow(ctx, b.pool, b.q.update, batch[0].row)
		return
	}
	cols := columns{labels: []string{}} // not nil, which pgx sends as NULL
	for _, p := range batch {
		cols.add(p.row)
	}
	applied, err := updateBatch(ctx, b.pool, b.q.updateBatch, &cols)
	if err != nil && !errors.Is(classify(err), store.ErrUnavailable) {
		err = errAlone
	}
	for i, p := range batch {
		p.applied, p.err = applied[i], err
		if err == nil && !applied[i] {
			p.err = errAlone
		}
	}
}

// updateBatch runs sql, updateBatchSQL, with the rows of cols on pool,
// and reports which of them applied.
func updateBatch(ctx context.Context, pool *pgxpool.Pool, sql string, cols *columns) ([]bool, error) {
	applied := make([]bool, len(cols.id))
	rows, err := pool.Query(ctx, sql, cols.args()...)
	if err != nil {
		return applied, err
	}
	ords, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return applied, err
	}
	for _, ord := range ords {
		applied[ord-1] = true
	}
	return applied, nil
}

// close makes the queued calls and every later one return errClosed, and
// waits for the statements sent for queued calls to end.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	for _, p := range b.queue {
		p.err = errClosed
		close(p.done)
	}
	b.queue = nil
	b.mu.Unlock()
	b.drains.Wait()
}

// columns are the arguments of updateBatchSQL: an array of each of the
// rows' values.
type columns struct {
	id, status, kind, state  []string
	prev, version, createdNS []int64
	inc, writeID             [][]byte
	labelsFirst, labelsLast  []int32
	labels                   []string // of every row, in turn
	leaseNS                  []*int64
	expires                  []*time.Time
	announce                 []bool
	at                       []time.Time
}

// add appends r's values.
func (c *columns) add(r *row) {
	c.id = append(c.id, r.id)
	c.prev = append(c.prev, r.prev)
	c.version = append(c.version, r.version)
	c.inc = append(c.inc, r.inc)
	c.status = append(c.status, r.status)
	c.kind = append(c.kind, r.kind)
	c.labelsFirst = append(c.labelsFirst, int32(len(c.labels)+1))
	c.labels = append(c.labels, r.labels...)
	c.labelsLast = append(c.labelsLast, int32(len(c.labels)))
	c.createdNS = append(c.createdNS, r.createdNS)
	c.leaseNS = append(c.leaseNS, r.leaseNS)
	c.expires = append(c.expires, r.expires)
	c.state = append(c.state, r.state)
	c.announce = append(c.announce, r.announce)
	c.writeID = append(c.writeID, r.writeID)
	c.at = append(c.at, r.at)
}

// args returns the arguments of updateBatchSQL.
func (c *columns) args() []any {
	return []any{
		c.id, c.prev, c.version, c.inc, c.status, c.kind, c.labelsFirst, c.labelsLast,
		c.createdNS, c.leaseNS, c.expires, c.state, c.announce, c.writeID, c.at,
		c.labels, store.MinWriteIDs,
	}
}
