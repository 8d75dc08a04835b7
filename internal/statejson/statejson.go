// Package statejson encodes a store.State as the JSON a store keeps, and
// decodes it back, refusing data a store cannot trust. Stores that keep a
// task's state as one JSON document (redisstore, pgstore) share it, so
// that both keep and check the same form.
package statejson

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// Encode returns the JSON of st, with its times in UTC (RFC 3339 with
// nanoseconds).
func Encode(st store.State) ([]byte, error) {
	return json.Marshal(InUTC(st))
}

// Decode returns the state whose JSON is data, with its times in UTC.
// Unknown fields are ignored. An error wraps store.ErrCorrupt: data is not
// JSON of a state, or the state is one that [store.State.Validate] refuses
// or that holds a time JSON cannot encode, which could be read but never
// written again.
func Decode(data []byte) (store.State, error) {
	var st store.State
	if err := json.Unmarshal(data, &st); err != nil {
		return store.State{}, fmt.Errorf("%w: state: %w", store.ErrCorrupt, err)
	}
	if err := st.Validate(); err != nil {
		return store.State{}, fmt.Errorf("%w: %v", store.ErrCorrupt, err) //nolint:errorlint // corrupt data, not invalid input
	}
	st = InUTC(st)
	if err := checkYears(st); err != nil {
		return store.State{}, err
	}
	return st, nil
}

// checkYears reports a time of st outside the years 0 to 9999 in UTC,
// which JSON cannot encode.
func checkYears(st store.State) error {
	times := []time.Time{st.CreatedAt, st.StartedAt, st.UpdatedAt, st.CompletedAt, st.LeaseUntil, st.CancelRequestedAt}
	for _, sp := range st.Steps {
		times = append(times, sp.StartedAt, sp.CompletedAt)
		for _, sub := range sp.SubSteps {
			times = append(times, sub.StartedAt, sub.CompletedAt)
		}
	}
	for _, a := range st.PreviousAttempts {
		times = append(times, a.StartedAt, a.CompletedAt)
	}
	for _, t := range times {
		if y := t.Year(); y < 0 || y > 9999 {
			return fmt.Errorf("%w: time %v is outside the years 0 to 9999", store.ErrCorrupt, t)
		}
	}
	return nil
}

// InUTC returns st with every time in UTC. It copies st.Steps (and a
// step's sub-steps) and st.PreviousAttempts only if one of their times is
// not already in UTC, so st keeps sharing memory otherwise.
func InUTC(st store.State) store.State {
	for _, t := range []*time.Time{&st.CreatedAt, &st.StartedAt, &st.UpdatedAt, &st.CompletedAt, &st.LeaseUntil, &st.CancelRequestedAt} {
		*t = t.UTC()
	}
	if slices.ContainsFunc(st.PreviousAttempts, func(a store.Attempt) bool {
		return a.StartedAt.Location() != time.UTC || a.CompletedAt.Location() != time.UTC
	}) {
		st.PreviousAttempts = slices.Clone(st.PreviousAttempts)
		for i := range st.PreviousAttempts {
			st.PreviousAttempts[i].StartedAt = st.PreviousAttempts[i].StartedAt.UTC()
			st.PreviousAttempts[i].CompletedAt = st.PreviousAttempts[i].CompletedAt.UTC()
		}
	}
	copied := false
	for i, sp := range st.Steps {
		if sp.StartedAt.Location() == time.UTC && sp.CompletedAt.Location() == time.UTC && !slices.ContainsFunc(sp.SubSteps, notUTC) {
			continue
		}
		if !copied {
			st.Steps, copied = slices.Clone(st.Steps), true
		}
		st.Steps[i].StartedAt = sp.StartedAt.UTC()
		st.Steps[i].CompletedAt = sp.CompletedAt.UTC()
		if slices.ContainsFunc(sp.SubSteps, notUTC) {
			st.Steps[i].SubSteps = slices.Clone(sp.SubSteps)
			for j := range st.Steps[i].SubSteps {
				sub := &st.Steps[i].SubSteps[j]
				sub.StartedAt, sub.CompletedAt = sub.StartedAt.UTC(), sub.CompletedAt.UTC()
			}
		}
	}
	return st
}

// notUTC reports whether a time of sub is not in UTC.
func notUTC(sub store.SubStep) bool {
	return sub.StartedAt.Location() != time.UTC || sub.CompletedAt.Location() != time.UTC
}
