package redisstore

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/taskstatus/taskstatus/internal/statejson"
	"github.com/taskstatus/taskstatus/store"
)

// The fields of a task's hash that Go reads. putScript writes them, and
// one more, writes, that only the script reads (see the package doc).
const (
	fieldVersion     = "version"   // the version, in decimal
	fieldIncarnation = "inc"       // the incarnation; absent in hashes of earlier releases: ""
	fieldState       = "state"     // the JSON of the store.State
	fieldAnnounced   = "announced" // the version last published; absent in hashes of earlier releases: the version
)

// notice is the message published on a task's channel after each change
// that is not quiet. Version 0 means the task was deleted.
type notice struct {
	ID          string `json:"id"`
	Version     int64  `json:"version"`
	Incarnation string `json:"incarnation,omitempty"`
}

// encode returns n as JSON.
func (n notice) encode() []byte {
	b, _ := json.Marshal(n) // a string and an integer always encode
	return b
}

// writeToken returns the form in which putScript keeps write id id among
// a task's latest write ids, separated by spaces: id itself if it is
// printable ASCII without spaces and does not start with '~', which most
// ids are, or else '~' and the hexadecimal of its bytes. "" stays "": a
// write without an id is never recognised.
func writeToken(id string) string {
	if strings.HasPrefix(id, "~") || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return "~" + hex.EncodeToString([]byte(id))
	}
	return id
}

// encodeState returns the JSON stored for st, with its times in UTC.
func encodeState(st store.State) ([]byte, error) {
	return statejson.Encode(st)
}

// decodeState returns the state stored in the fields of task id's hash,
// in either form (see Stored form in the package doc), decoded through c.
// An error wraps store.ErrCorrupt and says what is wrong. Unknown fields,
// in the hash or in the JSON, are ignored.
func decodeState(c *hashCache, id string, fields map[string]string) (store.State, error) {
	rawVersion, ok := fields[fieldVersion]
	if !ok {
		return store.State{}, fmt.Errorf("%w: no %s field", store.ErrCorrupt, fieldVersion)
	}
	version, err := strconv.ParseInt(rawVersion, 10, 64)
	if err != nil {
		return store.State{}, fmt.Errorf("%w: %s field %q is not an integer", store.ErrCorrupt, fieldVersion, rawVersion)
	}
	var st store.State
	if raw, ok := fields[fieldState]; ok {
		if st, err = decodeStateField(c, id, raw); err == nil {
			err = agrees(st, version, fields[fieldIncarnation])
		}
	} else if _, ok := fields[fieldStatus]; ok {
		st, err = c.Decode(id, decodedFrom{fields: fields}, func() (store.State, error) {
			return decodeCompact(id, version, fields)
		})
	} else {
		err = fmt.Errorf("%w: neither a %s nor a %s field", store.ErrCorrupt, fieldState, fieldStatus)
	}
	if err != nil {
		return store.State{}, err
	}
	if _, err := announcedVersion(fields, st.Version); err != nil {
		return store.State{}, err
	}
	return st, nil
}

// decodeStateField returns the state that task id's state field, raw,
// holds, decoded through c. An error wraps store.ErrCorrupt: the field is
// not a state, or is another task's.
func decodeStateField(c *hashCache, id, raw string) (store.State, error) {
	return c.Decode(id, decodedFrom{state: raw}, func() (store.State, error) {
		st, err := statejson.Decode([]byte(raw))
		switch {
		case err != nil:
			return store.State{}, fmt.Errorf("%s field: %w", fieldState, err)
		case st.ID != id:
			return store.State{}, fmt.Errorf("%w: the state is of task %q", store.ErrCorrupt, st.ID)
		}
		return st, nil
	})
}

// agrees returns an error wrapping store.ErrCorrupt unless st, decoded
// from a state field, has the version and incarnation of the hash's
// version and inc fields.
func agrees(st store.State, version int64, inc string) error {
	switch {
	case st.Version != version:
		return fmt.Errorf("%w: %s field is %d but the state has version %d",
			store.ErrCorrupt, fieldVersion, version, st.Version)
	case st.Incarnation != inc:
		return fmt.Errorf("%w: %s field is %q but the state has incarnation %q",
			store.ErrCorrupt, fieldIncarnation, inc, st.Incarnation)
	}
	return nil
}

// announcedVersion returns the version last published of the task whose
// hash has fields and whose state has version: that of the announced
// field, or version in a hash of an earlier release, which published every
// write. An error wraps store.ErrCorrupt.
func announcedVersion(fields map[string]string, version int64) (int64, error) {
	raw, ok := fields[fieldAnnounced]
	if !ok {
		return version, nil
	}
	announced, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || announced < 0 || announced > version {
		return 0, fmt.Errorf("%w: %s field %q is not a version up to %d", store.ErrCorrupt, fieldAnnounced, raw, version)
	}
	return announced, nil
}
