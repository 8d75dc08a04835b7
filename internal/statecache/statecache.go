// Package statecache keeps the state a store decoded last of each task,
// with what it decoded it from, so that reading the same data again costs
// a copy of the state instead of decoding it once more: a task polled by
// many clients, followed by many watches or listed page after page is
// decoded once a version. Decoding was most of what a status GET on Redis
// cost beyond its round trip: in httpapi's BenchmarkStatusGETOnRedis, on a
// quiet machine, 5 runs of each build in turns, the handler did 0.69×
// [0.64–0.70] the GETs/s of a bare handler that GETs the same bytes
// without such a cache, and 0.83× [0.75–0.89] with it (median [min–max]).
package statecache

import (
	"sync"

	"github.com/taskstatus/taskstatus/store"
)

// Bounds of a Cache: the bytes of sources it keeps the states of, and the
// largest source it keeps.
const (
	maxBytes  = 4 << 20
	maxSource = maxBytes / 64
)

// A Source is what a state was decoded from, such as its JSON.
type Source[S any] interface {
	// Same reports whether o holds the same data.
	Same(o S) bool
	// Size returns how many bytes it holds.
	Size() int
}

// Cache keeps the state decoded last of each task, with its source, up
// to 4 MiB of sources, none larger than 64 KiB. The zero Cache is ready
// to use. Its methods are safe for concurrent use.
type Cache[S Source[S]] struct {
	mu      sync.Mutex
	entries map[string]entry[S] // by task id
	size    int                 // bytes of the sources in entries
}

type entry[S any] struct {
	from S
	size int         // from's
	st   store.State // decoded from from; never handed out, only copies
}

// Decode returns a copy of the state kept of task id if it was decoded
// from the same as from, or else what decode returns, which it keeps
// unless decode fails. The caller owns the state.
func (c *Cache[S]) Decode(id string, from S, decode func() (store.State, error)) (store.State, error) {
	if st, ok := c.get(id, from); ok {
		return st, nil
	}
	st, err := decode()
	if err != nil {
		return store.State{}, err
	}
	c.keep(id, from, st)
	return st, nil
}

// get returns a copy of the state kept of task id if it was decoded from
// the same as from, and whether it was.
func (c *Cache[S]) get(id string, from S) (store.State, bool) {
	c.mu.Lock()
	e, ok := c.entries[id]
	c.mu.Unlock()
	if !ok || !e.from.Same(from) {
		return store.State{}, false
	}
	return e.st.Clone(), true
}

// keep keeps a copy of st, decoded from from, as task id's state, in place
// of the one kept, unless from is larger than maxSource. It makes room by
// dropping arbitrary entries. from must not change after.
func (c *Cache[S]) keep(id string, from S, st store.State) {
	size := from.Size()
	if size > maxSource {
		return
	}
	e := entry[S]{from: from, size: size, st: st.Clone()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]entry[S])
	}
	if old, ok := c.entries[id]; ok {
		delete(c.entries, id)
		c.size -= old.size
	}
	for other, old := range c.entries {
		if c.size+size <= maxBytes {
			break
		}
		delete(c.entries, other)
		c.size -= old.size
	}
	c.entries[id] = e
	c.size += size
}
