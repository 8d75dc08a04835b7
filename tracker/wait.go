package tracker

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// maxWaiting is how many Runs at most keep changes that wait for the store
// to answer: beyond, the changes of the Run that has waited longest are
// dropped, and the error handler told.
const maxWaiting = 10_000

// The pause between the background attempts to write kept changes grows
// from minPause to maxPause while the store does not answer.
const (
	minPause = 50 * time.Millisecond
	maxPause = time.Second
)

// waiting holds the Runs whose changes wait for the store to answer, and
// writes them in the background: one goroutine, started when the first
// Run begins to wait and ended when none is left. Lock order: a Run's mu,
// then waiting.mu.
type waiting struct {
	t      *Tracker
	ctx    context.Context // ended when Close gives up: stops the writes in flight
	cancel context.CancelFunc
	hurry  chan struct{} // ends the writer's pause; holds one signal

	mu      sync.Mutex
	runs    map[*Run]uint64 // the order in which they began to wait
	order   uint64          // of the last Run that began to wait
	active  bool            // the writer goroutine runs
	closed  bool            // Close was called: keep nothing more
	emptied chan struct{}   // closed, and nil, once runs is empty after Close
}

func newWaiting(t *Tracker) *waiting {
	ctx, cancel := context.WithCancel(context.Background())
	return &waiting{t: t, ctx: ctx, cancel: cancel, hurry: make(chan struct{}, 1), runs: make(map[*Run]uint64)}
}

// add makes r, which does not wait, wait; it reports false if nothing may
// begin to wait any more. r.mu is held.
func (q *waiting) add(r *Run) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.order++
	q.runs[r] = q.order
	if !q.active {
		q.active = true
		go q.write()
	}
	return true
}

// remove forgets r, which no longer waits. r.mu is held.
func (q *waiting) remove(r *Run) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.runs, r)
}

// write is the writer goroutine: it writes the kept changes of each Run,
// those that have waited longest first, pausing while the store does not
// answer.
func (q *waiting) write() {
	pause := minPause
	timer := time.NewTimer(pause)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
		case <-q.hurry:
		}
		runs := q.oldestFirst()
		if runs == nil {
			return
		}
		for len(runs) > maxWaiting {
			runs[0].giveUp(fmt.Errorf("%w: dropped, more than %d tasks wait for the store", store.ErrUnavailable, maxWaiting))
			runs = runs[1:]
		}
		pause = minPause
		for _, r := range runs {
			if q.flush(r) != nil {
				pause = min(2*pause, maxPause) // the store still fails: the others would too
				break
			}
		}
		timer.Reset(pause)
	}
}

// oldestFirst returns the waiting Runs, those that have waited longest
// first, or nil if none is left, which ends the writer.
func (q *waiting) oldestFirst() []*Run {
	q.mu.Lock()
	if len(q.runs) == 0 {
		q.active = false
		if q.emptied != nil {
			close(q.emptied)
			q.emptied = nil
		}
		q.mu.Unlock()
		return nil
	}
	runs := slices.SortedFunc(maps.Keys(q.runs), func(a, b *Run) int { return cmp.Compare(q.runs[a], q.runs[b]) })
	q.mu.Unlock()
	return runs
}

// flush writes r's kept changes, and forgets r once none is left. It
// returns the error of a store that still does not answer.
func (q *waiting) flush(r *Run) error {
	t := q.t
	r.mu.Lock()
	expired := !r.waitSince.IsZero() && t.ttl > 0 && time.Since(r.waitSince) > t.ttl
	busy := r.writing
	if !expired && !busy {
		r.writing = true
	}
	r.mu.Unlock()
	switch {
	case expired:
		r.giveUp(fmt.Errorf("%w: dropped, the store did not answer within the tasks' time to live, %v", store.ErrUnavailable, t.ttl))
		return nil
	case busy:
		return nil // its own caller writes it
	}
	ctx, cancel := context.WithTimeout(q.ctx, t.timeout)
	defer cancel()
	return r.flush(ctx, time.Time{}) // which ends the wait once nothing is left
}

// Close writes the changes that wait for the store to answer, until ctx
// is done, and then drops those left, telling the error handler. From then
// on, changes that the store does not take are dropped rather than kept.
// It returns ctx's error if changes were dropped.
//
// Close does not wait for Runs still going: stop the work first (see
// [github.com/taskstatus/taskstatus/pipeline.Runner.Shutdown]).
func (t *Tracker) Close(ctx context.Context) error {
	q := t.waiting
	q.mu.Lock()
	q.closed = true
	emptied := make(chan struct{})
	if q.active {
		q.emptied = emptied
	} else {
		close(emptied)
	}
	q.mu.Unlock()
	q.wake()

	select {
	case <-emptied:
		return nil
	case <-ctx.Done():
	}
	q.cancel()
	q.mu.Lock()
	runs := slices.Collect(maps.Keys(q.runs))
	q.mu.Unlock()
	for _, r := range runs {
		r.giveUp(fmt.Errorf("%w: dropped, the tracker closed before the store answered: %w", store.ErrUnavailable, context.Cause(ctx)))
	}
	q.wake()
	<-emptied
	return ctx.Err()
}

// wake ends the writer's pause.
func (q *waiting) wake() {
	select {
	case q.hurry <- struct{}{}:
	default:
	}
}
