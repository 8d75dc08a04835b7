package redisstore

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// The fields of a task's hash that a reader needs. putScript writes them,
// and a third, put_id, that only the script reads.
const (
	fieldVersion = "version" // the version, in decimal
	fieldState   = "state"   // the JSON of the store.State
)

// notice is the message published on a task's channel after each change.
// Version 0 means the task was deleted.
type notice struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
}

// encode returns n as JSON.
func (n notice) encode() []byte {
	b, _ := json.Marshal(n) // a string and an integer always encode
	return b
}

// encodeState returns the JSON stored for st, with its times in UTC.
func encodeState(st store.State) ([]byte, error) {
	return json.Marshal(inUTC(st))
}

// decodeState returns the state stored in the fields of task id's hash. An
// error wraps store.ErrCorrupt and says what is wrong. Unknown fields, in
// the hash or in the JSON, are ignored.
func decodeState(id string, fields map[string]string) (store.State, error) {
	rawVersion, ok := fields[fieldVersion]
	if !ok {
		return store.State{}, fmt.Errorf("%w: no %s field", store.ErrCorrupt, fieldVersion)
	}
	raw, ok := fields[fieldState]
	if !ok {
		return store.State{}, fmt.Errorf("%w: no %s field", store.ErrCorrupt, fieldState)
	}
	version, err := strconv.ParseInt(rawVersion, 10, 64)
	if err != nil {
		return store.State{}, fmt.Errorf("%w: %s field %q is not an integer", store.ErrCorrupt, fieldVersion, rawVersion)
	}
	var st store.State
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return store.State{}, fmt.Errorf("%w: %s field: %w", store.ErrCorrupt, fieldState, err)
	}
	switch {
	case st.Version != version:
		return store.State{}, fmt.Errorf("%w: %s field is %d but the state has version %d",
			store.ErrCorrupt, fieldVersion, version, st.Version)
	case st.ID != id:
		return store.State{}, fmt.Errorf("%w: the state is of task %q", store.ErrCorrupt, st.ID)
	}
	if err := st.Validate(); err != nil {
		return store.State{}, fmt.Errorf("%w: %v", store.ErrCorrupt, err) //nolint:errorlint // corrupt data, not invalid input
	}
	st = inUTC(st)
	if err := checkYears(st); err != nil {
		return store.State{}, err
	}
	return st, nil
}

// checkYears reports a time of st outside the years 0 to 9999 in UTC,
// which JSON cannot encode: a state holding one could be read but never
// written again.
func checkYears(st store.State) error {
	times := []time.Time{st.CreatedAt, st.StartedAt, st.UpdatedAt, st.CompletedAt, st.LeaseUntil}
	for _, sp := range st.Steps {
		times = append(times, sp.StartedAt, sp.CompletedAt)
	}
	for _, t := range times {
		if y := t.Year(); y < 0 || y > 9999 {
			return fmt.Errorf("%w: time %v is outside the years 0 to 9999", store.ErrCorrupt, t)
		}
	}
	return nil
}

// inUTC returns st with every time in UTC. It copies st.Steps only if a
// step's time is not already in UTC, so st keeps sharing memory otherwise.
func inUTC(st store.State) store.State {
	for _, t := range []*time.Time{&st.CreatedAt, &st.StartedAt, &st.UpdatedAt, &st.CompletedAt, &st.LeaseUntil} {
		*t = t.UTC()
	}
	copied := false
	for i, sp := range st.Steps {
		if sp.StartedAt.Location() == time.UTC && sp.CompletedAt.Location() == time.UTC {
			continue
		}
		if !copied {
			st.Steps, copied = slices.Clone(st.Steps), true
		}
		st.Steps[i].StartedAt = sp.StartedAt.UTC()
		st.Steps[i].CompletedAt = sp.CompletedAt.UTC()
	}
	return st
}
