package tracker

import (
	"container/list"
	"sync"

	"github.com/taskstatus/taskstatus/store"
)

// defaultCacheBytes bounds the states a Tracker keeps of the tasks it
// wrote by id (see cache).
const defaultCacheBytes = 16 << 20

// cache keeps the latest state of the tasks a Tracker wrote by id, so that
// the next write of such a task, or the Start of its Run, needs no read
// first: a created task is started with one round trip. It keeps the
// states used last, within a bound on their size in memory; a state that
// is out of date (another process wrote the task since) costs a conflict
// and a read, never a wrong result.
type cache struct {
	mu      sync.Mutex
	max     int // bytes
	size    int
	entries map[string]*list.Element // of *cached, by task id
	lru     list.List                // used last at the front
}

type cached struct {
	st   store.State
	size int
}

func newCache(maxBytes int) *cache {
	return &cache{max: maxBytes, entries: make(map[string]*list.Element)}
}

// get returns the state kept of task id, if there is one. The caller must
// not change it: it may Clone it.
func (c *cache) get(id string) (store.State, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok {
		return store.State{}, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cached).st, true
}

// take returns the state kept of task id, if there is one, and forgets it.
func (c *cache) take(id string) (store.State, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok {
		return store.State{}, false
	}
	c.remove(e)
	return e.Value.(*cached).st, true
}

// put keeps st as the latest state of its task, unless a later version of
// the same incarnation is kept, and forgets the states used least recently
// beyond the bound.
func (c *cache) put(st store.State) {
	n := stateSize(st)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[st.ID]; ok {
		old := e.Value.(*cached)
		if old.st.Incarnation == st.Incarnation && old.st.Version > st.Version {
			return
		}
		c.remove(e)
	}
	if n > c.max {
		return
	}
	c.entries[st.ID] = c.lru.PushFront(&cached{st: st, size: n})
	c.size += n
	for c.size > c.max {
		c.remove(c.lru.Back())
	}
}

// drop forgets the state of task id.
func (c *cache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[id]; ok {
		c.remove(e)
	}
}

// remove forgets e. c.mu is held.
func (c *cache) remove(e *list.Element) {
	v := c.lru.Remove(e).(*cached)
	delete(c.entries, v.st.ID)
	c.size -= v.size
}

// stateSize estimates the bytes st holds in memory, with the cache's own.
func stateSize(st store.State) int {
	n := 512 + len(st.ID) + len(st.Incarnation) + len(st.CorrelationID) + len(st.ErrorMessage) +
		len(st.Progress.Message)
	for _, s := range st.Steps {
		n += 104 + len(s.Name) + len(s.Error)
	}
	for k, v := range st.ErrorDetails {
		n += 64 + len(k) + len(v)
	}
	for k, v := range st.Result {
		n += 64 + len(k) + len(v)
	}
	return n
}
