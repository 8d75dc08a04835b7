package redisstore

import (
	"sync"

	"github.com/taskstatus/taskstatus/internal/statejson"
	"github.com/taskstatus/taskstatus/store"
)

// Bounds of a store's decoded states: the bytes of JSON it keeps the
// states of, and the largest JSON it keeps.
const (
	maxDecodedBytes = 4 << 20
	maxDecodedJSON  = maxDecodedBytes / 64
)

// decodedStates keeps the state of each task the store decoded last, with
// the JSON it was decoded from, so that a read that finds the same JSON
// again returns a copy of the state instead of decoding it once more: a
// task polled by many clients, or followed by many watches, is decoded
// once a version. Decoding was most of what a status GET cost beyond its
// round trip: in httpapi's BenchmarkStatusGETOnRedis, 11 runs of each
// build taken in turns on a loaded machine, the handler did 0.64×
// [0.23–1.02] the GETs/s of a bare handler that GETs the same bytes
// without this, and 0.88× [0.80–1.27] with it (median [min–max]).
type decodedStates struct {
	mu      sync.Mutex
	entries map[string]decodedState // by task id
	size    int                     // bytes of JSON in entries
}

type decodedState struct {
	data string      // the JSON
	st   store.State // decoded from data; never handed out, only copies
}

// decode returns the state whose JSON is data, read from task id's hash:
// a copy of the one kept if it was decoded from the same bytes, or else
// the state statejson.Decode returns, which it keeps. An error is
// statejson.Decode's.
func (c *decodedStates) decode(id, data string) (store.State, error) {
	c.mu.Lock()
	e, ok := c.entries[id]
	c.mu.Unlock()
	if ok && e.data == data {
		return e.st.Clone(), nil
	}
	st, err := statejson.Decode([]byte(data))
	if err != nil {
		return store.State{}, err
	}
	if len(data) <= maxDecodedJSON {
		c.keep(id, decodedState{data: data, st: st.Clone()})
	}
	return st, nil
}

// keep keeps e as task id's decoded state, in place of the one kept. It
// makes room by dropping arbitrary entries.
func (c *decodedStates) keep(id string, e decodedState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]decodedState)
	}
	if old, ok := c.entries[id]; ok {
		delete(c.entries, id)
		c.size -= len(old.data)
	}
	for other, old := range c.entries {
		if c.size+len(e.data) <= maxDecodedBytes {
			break
		}
		delete(c.entries, other)
		c.size -= len(old.data)
	}
	c.entries[id] = e
	c.size += len(e.data)
}
