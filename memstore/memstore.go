package memstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/taskstatus/taskstatus/store"
)

var (
	_ store.Store   = (*Store)(nil)
	_ store.Watcher = (*Store)(nil)
)

// numShards is the number of independently locked parts of a Store. A
// power of two well above the core count keeps lock contention rare.
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

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{} // closed by Close to end the sweeper
	done      chan struct{} // closed by the sweeper when it ends
}

type shard struct {
	shardFields
	// Each shard has cache lines of its own, so that cores writing
	// neighbouring shards do not take a line from each other.
	_ [cacheLine - unsafe.Sizeof(shardFields{})%cacheLine]byte
}

// cacheLine is the size of a CPU cache line on common processors.
const cacheLine = 64

type shardFields struct {
	mu     sync.RWMutex
	tasks  map[string]*entry
	expiry expiryHeap
	packed []byte // where ended tasks are packed, before their copy is kept
	// spare is the state of a task that ended, emptied, its steps array
	// kept unless a reader holds it: for the next task to start.
	spare *store.State
}

// entry is one task held by a shard. An entry of a task that has not
// ended holds its state; one of a task that has ended holds the state
// packed (see pack.go), which leaves the entry small and gives the garbage
// collector no pointers to follow.
type entry struct {
	id      string // the task's id, its key in the shard's map
	version int64
	live    *store.State // the state of a task that has not ended, or nil
	packed  string       // the state of a task that has ended
	index   int          // position in the shard's expiry heap
	// watchers of the task; nil when there are none.
	watchers map[*watcher]struct{}
	// lent is set once live's steps have been handed to a reader (Get,
	// Watch): the next write replaces them instead of overwriting them.
	// It is atomic because Get sets it under the read lock.
	lent atomic.Bool
}

// set makes st the state of e. It packs the state of an ended task.
// Otherwise it copies st's steps, so the caller keeps them, into the
// entry's own array, which it reuses unless a reader holds it; the maps are
// kept as they are: nobody changes them in place. The shard lock is held.
func (sh *shard) set(e *entry, st store.State) {
	e.version = st.Version
	if st.Status.Terminal() {
		sh.packed = pack(sh.packed[:0], &st)
		e.packed = string(sh.packed)
		if live := e.live; live != nil {
			steps := live.Steps
			if e.lent.Swap(false) {
				steps = nil
			}
			clear(steps)
			*live = store.State{Steps: steps[:0]}
			sh.spare, e.live = live, nil
		}
		return
	}
	e.packed = ""
	live := e.live
	if live == nil {
		live, sh.spare = sh.spare, nil
		if live == nil {
			live = new(store.State)
		}
	}
	steps := live.Steps
	if e.lent.Swap(false) {
		steps = nil
	}
	steps = append(steps[:0], st.Steps...)
	*live = st
	live.Steps = steps
	e.live = live
}

// view returns what a reader needs of the entry: its packed state if it
// has one, else its state, lent. The shard lock is held, for reading at
// least.
func (e *entry) view() (st store.State, packed string) {
	if e.live == nil {
		return store.State{}, e.packed
	}
	if !e.lent.Load() {
		e.lent.Store(true)
	}
	return *e.live, ""
}

// ended reports whether the task has ended.
func (e *entry) ended() bool {
	return e.live == nil
}

// state returns the entry's state for a reader. The shard lock is held,
// for reading at least.
func (e *entry) state() (store.State, error) {
	st, packed := e.view()
	if packed == "" {
		return st, nil
	}
	return unpack(packed)
}

// watcher is one Watch call. Its channel has room for one state; a send
// replaces an unread state with the newer one, so writers never wait.
// All fields are guarded by the lock of the shard that holds the task.
type watcher struct {
	ch     chan store.State
	entry  *entry
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

// Close stops the sweeper and closes every watch channel. Later calls of
// any method report an error wrapping store.ErrUnavailable. Close is
// idempotent and always returns nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		<-s.done
		for i := range s.shards {
			sh := &s.shards[i]
			sh.mu.Lock()
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
	if err := s.ready(ctx); err != nil {
		return err
	}
	if err := store.ValidateID(id); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	return nil
}

// ready reports why no call can proceed now, if none can.
func (s *Store) ready(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	return nil
}

// clock returns the time that decides expiry, in nanoseconds: by default
// on the monotonic clock since New, which wall-clock steps do not move and
// which costs half as much to read; with WithClock, Unix time.
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
	e := sh.live(id, now)
	var (
		st     store.State
		packed string
	)
	if e != nil {
		st, packed = e.view()
	}
	sh.mu.RUnlock()
	if e == nil {
		return store.State{}, fmt.Errorf("memstore: get %q: %w", id, store.ErrNotFound)
	}
	if packed != "" {
		// Unpacking reads only the immutable packed string: no lock needed.
		var err error
		if st, err = unpack(packed); err != nil {
			return store.State{}, fmt.Errorf("memstore: get %q: %w", id, err)
		}
	}
	return st, nil
}

// Put implements [store.Store].
func (s *Store) Put(ctx context.Context, st store.State, ttl time.Duration) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if err := st.Validate(); err != nil {
		return fmt.Errorf("memstore: put: %w", err)
	}
	now := s.clock()
	at := int64(math.MaxInt64)
	if ttl > 0 {
		at = now + int64(ttl)
	}

	sh := s.shard(st.ID)
	sh.mu.Lock()
	e := sh.tasks[st.ID]
	if e != nil && sh.expiry[e.index].at <= now {
		sh.remove(e)
		s.count.Add(-1)
		e = nil
	}
	var stored int64
	if e != nil {
		stored = e.version
	}
	if stored != st.Version-1 {
		sh.mu.Unlock()
		return fmt.Errorf("memstore: put %q version %d: stored version is %d: %w",
			st.ID, st.Version, stored, store.ErrConflict)
	}
	added := e == nil
	if added {
		e = &entry{id: st.ID}
		sh.tasks[st.ID] = e
		sh.expiry.push(e, at)
	} else {
		sh.expiry.update(e.index, at)
	}
	sh.set(e, st)
	e.notify()
	sh.mu.Unlock()

	if added {
		if n := s.count.Add(1); s.maxTasks > 0 && n > int64(s.maxTasks) {
			s.evict(st.ID)
		}
	}
	return nil
}

// Delete implements [store.Store].
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := s.check(ctx, id); err != nil {
		return err
	}
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.tasks[id]; e != nil {
		sh.remove(e)
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
	e := sh.live(id, s.clock())
	if e == nil {
		sh.mu.Unlock()
		return nil, fmt.Errorf("memstore: watch %q: %w", id, store.ErrNotFound)
	}
	st, err := e.state()
	if err != nil {
		sh.mu.Unlock()
		return nil, fmt.Errorf("memstore: watch %q: %w", id, err)
	}
	w.ch <- st
	if e.ended() {
		w.closed = true
		close(w.ch)
		sh.mu.Unlock()
		return w.ch, nil
	}
	if e.watchers == nil {
		e.watchers = make(map[*watcher]struct{})
	}
	e.watchers[w] = struct{}{}
	w.entry = e
	sh.mu.Unlock()

	stop := context.AfterFunc(ctx, func() {
		sh.mu.Lock()
		defer sh.mu.Unlock()
		if !w.closed {
			delete(w.entry.watchers, w)
			w.close()
		}
	})
	sh.mu.Lock()
	if w.closed {
		stop()
	} else {
		w.stop = stop
	}
	sh.mu.Unlock()
	return w.ch, nil
}

// notify hands the entry's state to its watchers and, if the task has
// ended, closes them. The shard lock is held.
func (e *entry) notify() {
	if len(e.watchers) == 0 {
		return
	}
	st, err := e.state()
	if err != nil {
		e.closeWatchers() // cannot happen: pack's output unpacks
		return
	}
	for w := range e.watchers {
		select {
		case <-w.ch: // drop the unread older state
		default:
		}
		w.ch <- st
	}
	if e.ended() {
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

// remove drops e from the shard and closes its watchers. The lock is held.
func (sh *shard) remove(e *entry) {
	sh.expiry.remove(e.index)
	delete(sh.tasks, e.id)
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
			if e.id == added {
				if len(sh.expiry) == 1 {
					break
				}
				e = sh.expiry.soonestChild()
			}
			sh.remove(e)
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
				sh.remove(sh.expiry[0].e)
			}
			more = n == sweepBatch
			sh.mu.Unlock()
			s.count.Add(int64(-n))
			removed += n
		}
	}
	return removed
}
