package tracker

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
	"unsafe"

	"github.com/taskstatus/taskstatus/store"
)

// Tasks are spread over cacheShards independently locked parts, so that
// writers of different tasks rarely wait for each other.
const cacheShards = 16

// maxCached is how many idle tasks a Tracker keeps the latest state of.
// Beyond it a task's next transition reads the store first: two round
// trips instead of one, never a wrong result.
const maxCached = 10_240

// cache holds, per task being written, a lock that serializes this
// Tracker's writers of the task and the task's latest known state.
type cache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
	// free holds entries no caller uses, for reuse with their memory: a
	// task's whole lifecycle then allocates nothing in the cache.
	free sync.Pool
}

type cacheShard struct {
	cacheShardFields
	// Each shard has cache lines of its own, so that cores writing
	// neighbouring shards do not take a line from each other.
	_ [cacheLine - unsafe.Sizeof(cacheShardFields{})%cacheLine]byte
}

type cacheShardFields struct {
	mu      sync.Mutex
	entries map[string]*cacheEntry
}

// cacheLine is the size of a CPU cache line on common processors.
const cacheLine = 64

type cacheEntry struct {
	// Guarded by cacheShard.mu:
	users int  // callers holding or waiting for the entry
	held  bool // whether a caller holds the entry, or it is being handed over
	// handoff passes the entry from the caller that unlocks it to one of
	// those waiting: it holds a value while the entry is on its way.
	handoff chan struct{}

	// Guarded by holding the entry:
	st    store.State // the latest state written or read
	valid bool        // whether st may be used without reading the store
	// ctx is the context of the uncontended call that holds the entry,
	// reused from call to call (see boundedContext.reset).
	ctx boundedContext
}

func newCache() *cache {
	c := &cache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].entries = make(map[string]*cacheEntry)
	}
	return c
}

func (c *cache) shard(id string) *cacheShard {
	return &c.shards[maphash.String(c.seed, id)%cacheShards]
}

// tryLock returns the entry of id and whether the caller now holds it. If
// not, the caller must call wait before using it.
func (c *cache) tryLock(id string) (*cacheEntry, bool) {
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.entries[id]
	if e == nil {
		e = c.newEntry()
		sh.entries[id] = e
	}
	e.users++
	if e.held {
		return e, false
	}
	e.held = true
	return e, true
}

// newEntry returns an entry no caller uses, with no valid state.
func (c *cache) newEntry() *cacheEntry {
	if e, ok := c.free.Get().(*cacheEntry); ok {
		return e
	}
	return &cacheEntry{handoff: make(chan struct{}, 1)}
}

// wait waits until the caller holds e, the entry of id, or returns ctx's
// error if ctx ends first: waiting for other writers of the task counts
// against the call's timeout.
func (c *cache) wait(ctx context.Context, id string, e *cacheEntry) error {
	select {
	case <-e.handoff:
		return nil
	case <-ctx.Done():
		c.abandon(id, e)
		return ctx.Err()
	}
}

// abandon ends the wait for e, the entry of id, of a caller that gives up.
func (c *cache) abandon(id string, e *cacheEntry) {
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	select {
	case <-e.handoff:
		// The entry was handed over as the caller gave up: hand it on.
		c.unlockLocked(sh, id, e)
	default:
		e.users--
	}
}

// unlock releases e, the entry of id, which the caller holds.
func (c *cache) unlock(id string, e *cacheEntry) {
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c.unlockLocked(sh, id, e)
}

// unlockLocked releases e, which the caller holds, to a waiter if there is
// one. Otherwise it forgets e unless its state is worth keeping: known,
// not ended (more writes are expected) and within the cache's size. The
// shard's lock is held.
func (c *cache) unlockLocked(sh *cacheShard, id string, e *cacheEntry) {
	e.users--
	if e.users > 0 {
		e.handoff <- struct{}{} // never blocks: there is one holder at a time
		return
	}
	e.held = false
	keep := e.valid && !e.st.Status.Terminal() && len(sh.entries) <= maxCached/cacheShards
	if !keep {
		delete(sh.entries, id)
		// Nobody refers to e now: its state was only written to the
		// store, which keeps none of its steps, and copied for readers.
		e.st, e.valid = store.State{Steps: e.st.Steps[:0]}, false
		e.ctx.reset(context.Background(), time.Time{}) // drop the caller's context
		c.free.Put(e)
	}
}
