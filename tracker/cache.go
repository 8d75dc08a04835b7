package tracker

import (
	"sync"

	"github.com/taskstatus/taskstatus/store"
)

// maxCached is how many idle tasks a Tracker keeps the latest state of.
// Beyond it a task's next transition reads the store first: two round
// trips instead of one, never a wrong result.
const maxCached = 10_000

// cache holds, per task being written, a lock that serializes this
// Tracker's writers of the task and the task's latest known state.
type cache struct {
	mu      sync.Mutex
	entries map[string]*cacheEntry
}

type cacheEntry struct {
	users int // callers holding or waiting for mu; guarded by cache.mu

	mu    sync.Mutex
	st    store.State // the latest state written or read; guarded by mu
	valid bool        // whether st may be used without reading the store
}

// lock returns the entry of id, locked.
func (c *cache) lock(id string) *cacheEntry {
	c.mu.Lock()
	e := c.entries[id]
	if e == nil {
		e = &cacheEntry{}
		c.entries[id] = e
	}
	e.users++
	c.mu.Unlock()
	e.mu.Lock()
	return e
}

// unlock releases e and forgets it when no caller needs it and its state is
// not worth keeping: unknown, ended (no more writes expected), or beyond
// the cache's size.
func (c *cache) unlock(id string, e *cacheEntry) {
	keep := e.valid && !e.st.Status.Terminal()
	e.mu.Unlock()
	c.mu.Lock()
	e.users--
	if e.users == 0 && (!keep || len(c.entries) > maxCached) {
		delete(c.entries, id)
	}
	c.mu.Unlock()
}
