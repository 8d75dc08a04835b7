package memstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

var (
	_ store.Store   = (*Store)(nil)
	_ store.Watcher = (*Store)(nil)
	_ store.Lister  = (*Store)(nil)
)

// numShards is the number of independently locked parts of a Store, so
// that writers of different tasks rarely wait for each other.
const numShards = 32

// sweepBatch is the most expired tasks a sweep removes under one lock hold.
const sweepBatch = 256

// errClosed is returned by every method after Close.
var errClosed = fmt.Errorf("memstore: closed: %w", store.ErrUnavailable)

// Store is an in-memory [store.Store] and [store.Watcher]. Its methods are
// safe for concurrent use. The zero value is not usable: call [New].
type Store struct {
	now      func() time.Time // the clock of WithClock, or nil
	start    time.Time        // when New was called, for the default clock
	maxTasks int
	sweep    time.Duration

	seed   maphash.Seed
	shards [numShards]shard
	count  atomic.Int64 // tasks held, expired or not

	// idx orders and counts the tasks for List and Count (index.go). Its
	// lock is taken after a shard's; a write holds both while it sets a
	// task's state.
	idxMu sync.RWMutex
	idx   *index

	closeOnce sync.Once
	stop      chan struct{} // closed by Close to end the sweeper
	done      chan struct{} // closed by the sweeper when it ends
}

type shard struct {
	mu     sync.RWMutex
	closed bool // set by Close, under mu: nothing more is held
	tasks  map[string]*entry
	expiry expiryHeap
}

// entry is one task held by a shard. Its state is st, and for an ended
// task kept in the smaller form of ended.go, the steps, result and error
// details in ended: read it with entry.state.
type entry struct {
	st    store.State // the store's own copy; set under the index's lock too
	ended *ended      // nil, or st's Steps, Result and ErrorDetails; set with st
	index int         // position in the shard's expiry heap
	// Guarded by the index's lock (index.go):
	next []*entry // its links in the skip lists (entry.links)
	// writes holds hashes of the ids of the task's latest writes, to
	// recognise a resend (see store.Write): that of version v at v modulo
	// its length, so that it holds the last ones.
	writes [store.MinWriteIDs]uint64
	// watchers of the task; nil when there are none.
	watchers map[*watcher]struct{}
}

// watcher is one Watch call. Its channel has room for one state; a send
// replaces an unread state with the newer one, so writers never wait.
// All fields are guarded by the lock of the shard that holds the task.
type watcher struct {
	ch     chan store.State
	closed bool
	stop   func() bool // unregisters the context.AfterFunc
}

// Option configures a Store.
type Option func(*Store) error

// WithClock sets the clock that decides expiry. The default is the
// monotonic clock of time.Now, so that expiry follows elapsed time even if
// the wall clock is set.
func WithClock(now func() time.Time) Option {
	return func(s *Store) error {
		if now == nil {
			return errors.New("memstore: WithClock: nil clock")
		}
		s.now = now
		return nil
	}
}

// WithMaxTasks limits the store to n tasks: a new task beyond the limit
// evicts the task that expires soonest. The default, 0, is no limit.
func WithMaxTasks(n int) Option {
	return func(s *Store) error {
		if n < 0 {
			return fmt.Errorf("memstore: WithMaxTasks(%d): negative", n)
		}
		s.maxTasks = n
		return nil
	}
}

// WithSweepInterval sets how often expired tasks are removed from memory.
// The default is one second.
func WithSweepInterval(d time.Duration) Option {
	return func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("memstore: WithSweepInterval(%v): not positive", d)
		}
		s.sweep = d
		return nil
	}
}

// New returns an empty Store and starts its sweeper. Call Close to stop it.
func New(opts ...Option) (*Store, error) {
	s := &Store{
		start: time.Now(),
		sweep: time.Second,
		seed:  maphash.MakeSeed(),
		idx:   newIndex(),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	for _, opt := range opts {
		if err := opt(s); err != nil {
			return nil, err
		}
	}
	for i := range s.shards {
		s.shards[i].tasks = make(map[string]*entry)
	}
	go s.sweeper()
	return s, nil
}

// Close stops the sweeper and closes every watch channel, including those
// of Watch calls under way. Later calls of any method report an error
// wrapping store.ErrUnavailable. Close is idempotent and always returns
// nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		for i := range s.shards {
			sh := &s.shards[i]
			sh.mu.Lock()
			sh.closed = true
			for _, e := range sh.tasks {
				e.closeWatchers()
			}
			sh.mu.Unlock()
		}
	})
	return nil
}

// Len returns the number of tasks held, including expired tasks the sweep
// has not yet removed.
func (s *Store) Len() int {
	return int(s.count.Load())
}

// check reports why a call for id cannot proceed, if it cannot.
func (s *Store) check(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	if err := store.ValidateID(id); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	return nil
}

// clock returns the time that decides expiry, in nanoseconds: by default
// on the monotonic clock since New, which wall-clock steps do not move;
// with WithClock, Unix time.
func (s *Store) clock() int64 {
	if s.now == nil {
		return int64(time.Since(s.start))
	}
	return s.now().UnixNano()
}

func (s *Store) shard(id string) *shard {
	return &s.shards[maphash.String(s.seed, id)%numShards]
}

// live returns the unexpired entry of id, or nil.
func (sh *shard) live(id string, now int64) *entry {
	e := sh.tasks[id]
	if e == nil || sh.expiry[e.index].at <= now {
		return nil
	}
	return e
}

// Get implements [store.Store].
func (s *Store) Get(ctx context.Context, id string) (store.State, error) {
	if err := s.check(ctx, id); err != nil {
		return store.State{}, err
	}
	now := s.clock()
	sh := s.shard(id)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if sh.closed {
		return store.State{}, errClosed
	}
	e := sh.live(id, now)
	if e == nil {
		return store.State{}, fmt.Errorf("memstore: get %q: %w", id, store.ErrNotFound)
	}
	return e.state(), nil
}

// state returns a copy of e's state that the caller owns. The shard's
// lock or the index's is held.
func (e *entry) state() store.State {
	st := e.st.Clone()
	if e.ended != nil {
		e.ended.restore(&st)
	}
	return st
}

// Put implements [store.Store].
func (s *Store) Put(ctx context.Context, w store.Write) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	if err := w.Validate(); err != nil {
		return fmt.Errorf("memstore: put: %w", err)
	}
	writeID := s.writeID(w.ID)
	now := s.clock()
	at := int64(math.MaxInt64)
	if w.TTL > 0 {
		at = now + int64(w.TTL)
	}

	id := w.State.ID
	sh := s.shard(id)
	sh.mu.Lock()
	if sh.closed {
		sh.mu.Unlock()
		return errClosed
	}
	e := sh.tasks[id]
	if e != nil && sh.expiry[e.index].at <= now {
		s.remove(sh, e)
		s.count.Add(-1)
		e = nil
	}
	if err := e.admits(w, writeID); err != nil {
		sh.mu.Unlock()
		if errors.Is(err, errResent) {
			return nil
		}
		return fmt.Errorf("memstore: put %q version %d: %w", id, w.State.Version, err)
	}
	st, end := e.copyOf(w.State)
	added := e == nil
	s.idxMu.Lock()
	if added {
		e = &entry{st: st, ended: end}
		sh.tasks[st.ID] = e
		sh.expiry.push(e, at)
		s.idx.add(e)
	} else {
		sh.expiry.update(e.index, at)
		s.idx.set(e, st)
		e.ended = end
	}
	s.idxMu.Unlock()
	if writeID != 0 {
		e.writes[st.Version%int64(len(e.writes))] = writeID
	}
	if !w.Quiet {
		e.notify()
	}
	sh.mu.Unlock()

	if added {
		if n := s.count.Add(1); s.maxTasks > 0 && n > int64(s.maxTasks) {
			s.evict(st.ID)
		}
	}
	return nil
}

// copyOf returns a copy of st that the store owns, e being the stored task
// or nil, as an entry's state and its ended part (see entry). An ended
// task is kept in the smaller form of ended.go when it can be.
//
// Otherwise the copy keeps e's steps if st has the same: most writes (of
// progress, result fields, a lease) leave the steps as they are, and
// copying them is most of what a write allocates. The store never changes
// a steps array it holds, so two of its states may share one. Measured
// against copying every time (process CPU, 10 interleaved runs each):
// BenchmarkPut 0.63x, the tracker's BenchmarkTransition 0.78x.
func (e *entry) copyOf(st store.State) (store.State, *ended) {
	if st.Status.Terminal() {
		if c, end, ok := compact(st); ok {
			return c, end
		}
	}
	if e == nil || !sameSteps(e.st.Steps, st.Steps) {
		return st.Clone(), nil
	}
	steps := e.st.Steps
	st.Steps = nil
	st = st.Clone()
	st.Steps = steps
	return st, nil
}

// sameSteps reports whether a and b hold the same steps, field for field:
// times compare with ==, so that a step kept is the one written, in the
// same location.
func sameSteps(a, b []store.Step) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.Name != y.Name || x.Status != y.Status || x.StartedAt != y.StartedAt ||
			x.CompletedAt != y.CompletedAt || x.Error != y.Error || x.Attempt != y.Attempt ||
			x.Progress != y.Progress || !slices.Equal(x.SubSteps, y.SubSteps) {
			return false
		}
	}
	return true
}

// errResent says that a write was applied already: a resend.
var errResent = errors.New("write applied already")

// admits reports why w cannot be applied to e, the stored task or nil:
// errResent if e applied it already, or an error wrapping ErrConflict.
// writeID is the hash of w.ID, 0 for none.
func (e *entry) admits(w store.Write, writeID uint64) error {
	var stored int64
	if e != nil {
		stored = e.st.Version
		for _, id := range e.writes {
			if writeID != 0 && id == writeID {
				return errResent
			}
		}
	}
	switch {
	case stored != w.Prev:
		return fmt.Errorf("stored version is %d, not %d: %w", stored, w.Prev, store.ErrConflict)
	case e != nil && e.st.Incarnation != w.State.Incarnation:
		return fmt.Errorf("stored incarnation is %q, not %q: %w", e.st.Incarnation, w.State.Incarnation, store.ErrConflict)
	}
	return nil
}

// writeID returns the hash by which the store remembers the write id id,
// or 0 for none. A collision of two 64-bit hashes among a task's last few
// writes is too unlikely to matter.
func (s *Store) writeID(id string) uint64 {
	if id == "" {
		return 0
	}
	return max(maphash.String(s.seed, id), 1)
}

// Delete implements [store.Store].
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := s.check(ctx, id); err != nil {
		return err
	}
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closed {
		return errClosed
	}
	if e := sh.tasks[id]; e != nil {
		s.remove(sh, e)
		s.count.Add(-1)
	}
	return nil
}

// Watch implements [store.Watcher]. It starts no goroutine: writers hand
// each state to the channel, and the context's end is noticed through
// [context.AfterFunc].
func (s *Store) Watch(ctx context.Context, id string) (<-chan store.State, error) {
	if err := s.check(ctx, id); err != nil {
		return nil, err
	}
	sh := s.shard(id)
	w := &watcher{ch: make(chan store.State, 1)}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closed {
		return nil, errClosed
	}
	e := sh.live(id, s.clock())
	if e == nil {
		return nil, fmt.Errorf("memstore: watch %q: %w", id, store.ErrNotFound)
	}
	w.ch <- e.state()
	if e.st.Status.Terminal() {
		w.closed = true
		close(w.ch)
		return w.ch, nil
	}
	if e.watchers == nil {
		e.watchers = make(map[*watcher]struct{})
	}
	e.watchers[w] = struct{}{}
	// The function runs on its own goroutine once ctx is done, so it
	// cannot run before this call releases the lock.
	w.stop = context.AfterFunc(ctx, func() {
		sh.mu.Lock()
		defer sh.mu.Unlock()
		if !w.closed {
			delete(e.watchers, w)
			w.close()
		}
	})
	return w.ch, nil
}

// notify hands the entry's state to its watchers, each a copy of its own,
// and, if the task has ended, closes them. The shard lock is held.
func (e *entry) notify() {
	for w := range e.watchers {
		select {
		case <-w.ch: // drop the unread older state
		default:
		}
		w.ch <- e.state()
	}
	if e.st.Status.Terminal() {
		e.closeWatchers()
	}
}

// closeWatchers closes and forgets every watcher of e. The shard lock is held.
func (e *entry) closeWatchers() {
	for w := range e.watchers {
		w.close()
	}
	e.watchers = nil
}

func (w *watcher) close() {
	w.closed = true
	close(w.ch)
	if w.stop != nil {
		w.stop()
	}
}

// remove drops e from sh and the index, and closes its watchers. sh's
// lock is held.
func (s *Store) remove(sh *shard, e *entry) {
	sh.expiry.remove(e.index)
	delete(sh.tasks, e.st.ID)
	s.idxMu.Lock()
	s.idx.remove(e)
	s.idxMu.Unlock()
	e.closeWatchers()
}

// evict removes tasks, soonest to expire first, until the store is within
// its limit, sparing the task just added.
func (s *Store) evict(added string) {
	start := maphash.String(s.seed, added) % numShards
	for i := uint64(0); i < numShards && s.count.Load() > int64(s.maxTasks); i++ {
		sh := &s.shards[(start+i)%numShards]
		sh.mu.Lock()
		for s.count.Load() > int64(s.maxTasks) && len(sh.expiry) > 0 {
			e := sh.expiry[0].e
			if e.st.ID == added {
				if len(sh.expiry) == 1 {
					break
				}
				e = sh.expiry.soonestChild()
			}
			s.remove(sh, e)
			s.count.Add(-1)
		}
		sh.mu.Unlock()
	}
}

// sweeper removes expired tasks every sweep interval until Close.
func (s *Store) sweeper() {
	defer close(s.done)
	tick := time.NewTicker(s.sweep)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.sweepExpired()
		}
	}
}

// sweepExpired removes every task expired by now, a batch per lock hold.
// It returns how many it removed.
func (s *Store) sweepExpired() int {
	removed := 0
	for i := range s.shards {
		sh := &s.shards[i]
		for more := true; more; {
			now := s.clock()
			sh.mu.Lock()
			n := 0
			for ; n < sweepBatch && len(sh.expiry) > 0 && sh.expiry[0].at <= now; n++ {
				s.remove(sh, sh.expiry[0].e)
			}
			more = n == sweepBatch
			sh.mu.Unlock()
			s.count.Add(int64(-n))
			removed += n
		}
	}
	return removed
}
