// Package pagetoken makes and reads the page tokens of store.Lister, and
// checks the arguments of its methods. A token is an
// opaque string naming the last task of a page and the filter it was made
// for, so that a token is refused with any other filter.
package pagetoken

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/taskstatus/taskstatus/store"
)

// Cursor is the place in a listing after which the next page starts: the
// creation time, in nanoseconds since 1970, and the id of the last task
// of a page.
type Cursor struct {
	Created int64
	ID      string
}

// Make returns the token of the page after c, for filter f.
func Make(f store.Filter, c Cursor) string {
	b := binary.BigEndian.AppendUint64(nil, fingerprint(f))
	b = binary.BigEndian.AppendUint64(b, uint64(c.Created))
	b = append(b, c.ID...)
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	return base64.RawURLEncoding.EncodeToString(b)
}

// Read returns the cursor of token, which must have been made for f. An
// error wraps store.ErrInvalidInput.
func Read(f store.Filter, token string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err == nil && len(b) > 20 && binary.BigEndian.Uint32(b[len(b)-4:]) == crc32.ChecksumIEEE(b[:len(b)-4]) {
		b = b[:len(b)-4]
	} else {
		b = nil
	}
	switch {
	case b == nil:
		return Cursor{}, fmt.Errorf("%w: page token is not one this store made", store.ErrInvalidInput)
	case binary.BigEndian.Uint64(b) != fingerprint(f):
		return Cursor{}, fmt.Errorf("%w: page token was made for another filter", store.ErrInvalidInput)
	}
	c := Cursor{Created: int64(binary.BigEndian.Uint64(b[8:])), ID: string(b[16:])}
	if store.ValidateID(c.ID) != nil {
		return Cursor{}, fmt.Errorf("%w: page token names no task", store.ErrInvalidInput)
	}
	return c, nil
}

// fingerprint is a hash of what f finds, the same for every equal filter.
func fingerprint(f store.Filter) uint64 {
	statuses := make([]string, len(f.Statuses))
	for i, s := range f.Statuses {
		statuses[i] = string(s)
	}
	slices.Sort(statuses)
	statuses = slices.Compact(statuses)
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%d\x00%d\x00%d",
		strings.Join(statuses, ","), f.Kind, f.Label.Key, f.Label.Value,
		f.CreatedAfter.UnixNano(), f.CreatedBefore.UnixNano(), f.LeaseEndedBefore.UnixNano())
	return h.Sum64()
}

// ListArgs checks the arguments of store.Lister.List and returns the page
// size (DefaultPageSize for 0) and the cursor, and whether the token gives
// one. An error wraps store.ErrInvalidInput.
func ListArgs(f store.Filter, pageSize int, pageToken string) (int, Cursor, bool, error) {
	if err := f.Validate(); err != nil {
		return 0, Cursor{}, false, err
	}
	switch {
	case pageSize == 0:
		pageSize = store.DefaultPageSize
	case pageSize < 0 || pageSize > store.MaxPageSize:
		return 0, Cursor{}, false, fmt.Errorf("%w: page size %d (1 to %d allowed)", store.ErrInvalidInput, pageSize, store.MaxPageSize)
	}
	if pageToken == "" {
		return pageSize, Cursor{}, false, nil
	}
	cur, err := Read(f, pageToken)
	return pageSize, cur, err == nil, err
}

// CountFilter reports whether f can be given to store.Lister.Count: it is
// valid and sets a kind and a label only. An error wraps
// store.ErrInvalidInput.
func CountFilter(f store.Filter) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if len(f.Statuses) > 0 || !f.CreatedAfter.IsZero() || !f.CreatedBefore.IsZero() || !f.LeaseEndedBefore.IsZero() {
		return fmt.Errorf("%w: only a kind and a label may be given", store.ErrInvalidInput)
	}
	return nil
}
