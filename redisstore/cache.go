package redisstore

import (
	"maps"

	"github.com/taskstatus/taskstatus/internal/statecache"
)

// hashCache keeps the state a Store decoded last of each task, with what
// it decoded it from (see package statecache): the state field of a hash
// in the JSON form, or the fields of one in the compact form (see Stored
// form in the package doc).
type hashCache = statecache.Cache[decodedFrom]

// decodedFrom is what a state was decoded from: a state field, or the
// fields of a hash in the compact form (and then state is "").
type decodedFrom struct {
	state  string
	fields map[string]string // never changed
}

// Same reports whether o is the same state field, or the same fields.
func (d decodedFrom) Same(o decodedFrom) bool {
	return d.state == o.state && (d.fields == nil) == (o.fields == nil) && maps.Equal(d.fields, o.fields)
}

// Size returns the bytes of the state field, or of the fields and values.
func (d decodedFrom) Size() int {
	n := len(d.state)
	for k, v := range d.fields {
		n += len(k) + len(v)
	}
	return n
}
