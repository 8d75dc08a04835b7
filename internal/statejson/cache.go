package statejson

import (
	"github.com/taskstatus/taskstatus/internal/statecache"
	"github.com/taskstatus/taskstatus/store"
)

// Cache decodes states as [Decode] does, and keeps the state it decoded
// last of each task, with the JSON it came from (see package statecache):
// a read that finds the same JSON again gets a copy of that state instead
// of decoding it once more.
//
// The zero Cache is ready to use. Its methods are safe for concurrent
// use.
type Cache struct {
	states statecache.Cache[jsonText]
}

// jsonText is the JSON a state was decoded from.
type jsonText string

// Same reports whether o is the same JSON.
func (t jsonText) Same(o jsonText) bool { return t == o }

// Size returns the bytes of the JSON.
func (t jsonText) Size() int { return len(t) }

// Decode returns what [Decode] returns for data, the JSON of task id as a
// store read it: a copy of the state kept if it was decoded from the same
// bytes, or else the state Decode returns, which it keeps. The caller
// owns the state.
func (c *Cache) Decode(id, data string) (store.State, error) {
	return c.states.Decode(id, jsonText(data), func() (store.State, error) { return Decode([]byte(data)) })
}
