package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/taskstatus/taskstatus/store"
)

// rendered is a state encoded for the wire. It is shared by every request
// that serves the same version: read-only.
type rendered struct {
	body   []byte // the JSON document, on one line
	etag   string
	length string // len(body), for Content-Length
}

// render returns st encoded as the handler's document, from the cache when
// st was rendered before.
func (h *handler) render(st store.State) (*rendered, error) {
	if doc := h.cache.get(st); doc != nil {
		return doc, nil
	}
	var body []byte
	var err error
	if h.document != nil {
		body, err = json.Marshal(h.document(st))
	} else {
		body, err = appendDocument(make([]byte, 0, 1024), st, h.idField)
	}
	if err != nil {
		return nil, fmt.Errorf("render task %q version %d: %w", st.ID, st.Version, err)
	}
	doc := &rendered{body: body, etag: etag(st.Version), length: strconv.Itoa(len(body))}
	h.cache.put(st, doc)
	return doc, nil
}

// Bounds of a handler's cache of renderings: the bytes of documents it
// keeps, and the largest document it keeps.
const (
	maxCacheBytes = 8 << 20
	maxCachedDoc  = maxCacheBytes / 16
)

// renderCache keeps the latest rendering of recently served tasks, so that
// the clients polling or streaming a task share one encoding per version.
//
// An entry serves a state of the same task, version, attempt and creation
// and update times: a task deleted and created again within the same
// millisecond and with as many writes could be served its predecessor's
// rendering, as it would be answered 304 for its predecessor's ETag.
type renderCache struct {
	mu      sync.RWMutex
	entries map[string]cacheEntry
	size    int // bytes of the documents in entries
}

type cacheEntry struct {
	version   int64
	attempt   int
	createdAt time.Time
	updatedAt time.Time
	doc       *rendered
}

func (c *renderCache) init() {
	c.entries = make(map[string]cacheEntry)
}

// get returns the rendering of st, or nil.
func (c *renderCache) get(st store.State) *rendered {
	c.mu.RLock()
	e, ok := c.entries[st.ID]
	c.mu.RUnlock()
	if !ok || e.version != st.Version || e.attempt != st.Attempt ||
		!e.createdAt.Equal(st.CreatedAt) || !e.updatedAt.Equal(st.UpdatedAt) {
		return nil
	}
	return e.doc
}

// put keeps doc as the rendering of st, unless it keeps a later version
// of the same task or doc is too large. It makes room by dropping
// arbitrary entries.
func (c *renderCache) put(st store.State, doc *rendered) {
	if len(doc.body) > maxCachedDoc {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[st.ID]; ok {
		if e.createdAt.Equal(st.CreatedAt) && e.version > st.Version {
			return
		}
		delete(c.entries, st.ID)
		c.size -= len(e.doc.body)
	}
	for id, e := range c.entries {
		if c.size+len(doc.body) <= maxCacheBytes {
			break
		}
		delete(c.entries, id)
		c.size -= len(e.doc.body)
	}
	c.entries[st.ID] = cacheEntry{
		version:   st.Version,
		attempt:   st.Attempt,
		createdAt: st.CreatedAt,
		updatedAt: st.UpdatedAt,
		doc:       doc,
	}
	c.size += len(doc.body)
}

// documentField reports whether name is a field of the default document,
// which a result field of the same name cannot replace.
func documentField(name, idField string) bool {
	switch name {
	case "correlation_id", "status", "started_at", "completed_at", "error_message",
		"error_details", "pipeline_steps", "steps", "progress", "attempt", "version",
		"created_at", "updated_at", "lease_until":
		return true
	}
	return name == idField
}

// appendDocument appends the default status document of st to b, on one
// line. Its fields are, in order: the id (named idField), correlation_id,
// status, started_at, completed_at, error_message, error_details, the
// result fields by name, pipeline_steps, steps, progress, attempt,
// version, created_at, updated_at and lease_until. A result or error detail that is not
// valid JSON is reported with [store.ErrCorrupt].
func appendDocument(b []byte, st store.State, idField string) ([]byte, error) {
	var err error
	b = append(b, '{')
	b = appendString(b, idField)
	b = append(b, ':')
	b = appendString(b, st.ID)
	b = append(b, `,"correlation_id":`...)
	b = appendOptString(b, st.CorrelationID)
	b = append(b, `,"status":`...)
	b = appendString(b, string(st.Status))
	b = append(b, `,"started_at":`...)
	b = appendTime(b, st.StartedAt)
	b = append(b, `,"completed_at":`...)
	b = appendTime(b, st.CompletedAt)
	b = append(b, `,"error_message":`...)
	b = appendOptString(b, st.ErrorMessage)
	b = append(b, `,"error_details":`...)
	if len(st.ErrorDetails) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		for i, k := range slices.Sorted(maps.Keys(st.ErrorDetails)) {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendField(b, k, st.ErrorDetails[k]); err != nil {
				return nil, fmt.Errorf("error detail %q: %w", k, err)
			}
		}
		b = append(b, '}')
	}
	for _, k := range slices.Sorted(maps.Keys(st.Result)) {
		if documentField(k, idField) {
			continue
		}
		b = append(b, ',')
		if b, err = appendField(b, k, st.Result[k]); err != nil {
			return nil, fmt.Errorf("result field %q: %w", k, err)
		}
	}
	b = append(b, `,"pipeline_steps":{`...)
	for i, s := range st.Steps {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s.Name)
		b = append(b, ':')
		b = appendString(b, string(s.Status))
	}
	b = append(b, `},"steps":[`...)
	for i, s := range st.Steps {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendString(b, s.Name)
		b = append(b, `,"status":`...)
		b = appendString(b, string(s.Status))
		b = append(b, `,"started_at":`...)
		b = appendTime(b, s.StartedAt)
		b = append(b, `,"completed_at":`...)
		b = appendTime(b, s.CompletedAt)
		b = append(b, `,"error":`...)
		b = appendOptString(b, s.Error)
		b = append(b, `,"attempt":`...)
		b = strconv.AppendInt(b, int64(s.Attempt), 10)
		b = append(b, '}')
	}
	b = append(b, `],"progress":`...)
	if st.Progress == (store.Progress{}) {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"done":`...)
		b = strconv.AppendInt(b, st.Progress.Done, 10)
		b = append(b, `,"total":`...)
		b = strconv.AppendInt(b, st.Progress.Total, 10)
		b = append(b, `,"message":`...)
		b = appendString(b, st.Progress.Message)
		b = append(b, '}')
	}
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(st.Attempt), 10)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, st.Version, 10)
	b = append(b, `,"created_at":`...)
	b = appendTime(b, st.CreatedAt)
	b = append(b, `,"updated_at":`...)
	b = appendTime(b, st.UpdatedAt)
	b = append(b, `,"lease_until":`...)
	b = appendTime(b, st.LeaseUntil)
	return append(b, '}'), nil
}

// appendField appends "name":value, with value compacted onto one line.
func appendField(b []byte, name string, value json.RawMessage) ([]byte, error) {
	b = appendString(b, name)
	b = append(b, ':')
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, value); err != nil {
		return nil, fmt.Errorf("%w: %w", store.ErrCorrupt, err)
	}
	return buf.Bytes(), nil
}

// timeLayout is RFC 3339 in UTC to the millisecond, without trailing zeros
// in the fraction, as the origin service writes times:
// "2025-11-12T10:00:00Z", "2025-11-12T10:00:05.234Z".
const timeLayout = "2006-01-02T15:04:05.999Z07:00"

// appendTime appends t as a JSON string in timeLayout, or null if t is zero.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = t.UTC().Truncate(time.Millisecond).AppendFormat(b, timeLayout)
	return append(b, '"')
}

// appendOptString appends s as a JSON string, or null if s is empty.
func appendOptString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendString(b, s)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Like [encoding/json], it
// replaces invalid UTF-8 with U+FFFD and escapes control characters and
// U+2028 and U+2029, so the result is on one line.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
