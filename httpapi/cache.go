package httpapi

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// rendered is a document encoded for the wire. It is shared by every
// request that serves the same document: read-only.
type rendered struct {
	body   []byte // the JSON document, on one line
	etag   string
	length string // len(body), for Content-Length
}

// render returns doc encoded as the handler serves it, from the cache
// when it was rendered before.
func (h *handler) render(doc Document) (*rendered, error) {
	if out := h.cache.get(doc); out != nil {
		return out, nil
	}
	var v any = doc
	if h.config.render != nil {
		v = h.config.render(doc)
	}
	body, err := marshal(v)
	if err != nil {
		if h.config.render == nil {
			// Only result fields and error details can fail to encode:
			// the store holds values that are not JSON.
			err = fmt.Errorf("%w: %w", store.ErrCorrupt, err)
		}
		return nil, fmt.Errorf("render task %q version %d: %w", doc.ID, doc.Version, err)
	}
	out := &rendered{body: body, etag: etag(doc.Version, doc.Abandoned), length: strconv.Itoa(len(body))}
	h.cache.put(doc, out)
	return out, nil
}

// etag returns the entity tag of the document of a task's version: "v12",
// or "v12a" if the task is judged abandoned, so that a client that has
// the document of the version is told that the task was abandoned.
func etag(version int64, abandoned bool) string {
	return `"v` + eventID(version, abandoned) + `"`
}

// eventID returns the id of the event stream's event of the document of a
// task's version: "12", or "12a" if the task is judged abandoned.
func eventID(version int64, abandoned bool) string {
	id := strconv.FormatInt(version, 10)
	if abandoned {
		id += "a"
	}
	return id
}

// Bounds of a handler's cache of renderings: the bytes of documents it
// keeps, and the largest document it keeps.
const (
	maxCacheBytes = 8 << 20
	maxCachedDoc  = maxCacheBytes / 16
)

// renderCache keeps the latest rendering of recently served tasks, so that
// the clients polling or streaming a task share one encoding of each
// document.
//
// An entry serves a document of the same task (its incarnation and
// creation time), version and verdict on abandonment. A task whose writer
// records no incarnation, deleted and created again within the same
// millisecond and with as many writes, could be served its predecessor's
// rendering, as it would be answered 304 for its predecessor's ETag.
type renderCache struct {
	mu      sync.RWMutex
	entries map[string]cacheEntry
	size    int // bytes of the documents in entries
}

type cacheEntry struct {
	incarnation string
	createdAt   time.Time
	version     int64
	abandoned   bool
	out         *rendered
}

func (c *renderCache) init() {
	c.entries = make(map[string]cacheEntry)
}

// sameTask reports whether e holds a rendering of the task doc is of.
func (e cacheEntry) sameTask(doc Document) bool {
	return e.incarnation == doc.Incarnation && e.createdAt.Equal(doc.CreatedAt)
}

// get returns the rendering of doc, or nil.
func (c *renderCache) get(doc Document) *rendered {
	c.mu.RLock()
	e, ok := c.entries[doc.ID]
	c.mu.RUnlock()
	if !ok || !e.sameTask(doc) || e.version != doc.Version || e.abandoned != doc.Abandoned {
		return nil
	}
	return e.out
}

// put keeps out as the rendering of doc, unless the cache keeps a later
// version of the same task or out is too large. It makes room by dropping
// arbitrary entries.
func (c *renderCache) put(doc Document, out *rendered) {
	if len(out.body) > maxCachedDoc {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[doc.ID]; ok {
		if e.sameTask(doc) && e.version > doc.Version {
			return
		}
		delete(c.entries, doc.ID)
		c.size -= len(e.out.body)
	}
	for id, e := range c.entries {
		if c.size+len(out.body) <= maxCacheBytes {
			break
		}
		delete(c.entries, id)
		c.size -= len(e.out.body)
	}
	c.entries[doc.ID] = cacheEntry{
		incarnation: doc.Incarnation,
		createdAt:   doc.CreatedAt,
		version:     doc.Version,
		abandoned:   doc.Abandoned,
		out:         out,
	}
	c.size += len(out.body)
}
