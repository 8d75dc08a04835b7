package redisstore

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
)

// cachedTask returns the fields of the hash of a task id with a step and
// a result, running (the JSON form) or succeeded (the compact form), and
// the state they hold.
func cachedTask(t *testing.T, id string, version int64, ended bool) (map[string]string, store.State) {
	t.Helper()
	at := time.Date(2026, 12, 4, 9, 30, 0, 0, time.UTC)
	st := store.State{ID: id, Status: store.StatusRunning, Kind: "document", Attempt: 1, Version: version}
	st.CreatedAt, st.UpdatedAt = at, at.Add(time.Second)
	st.Steps = []store.Step{{Name: "parse", Status: store.StepRunning, StartedAt: at, Attempt: 1}}
	st.Result = map[string]json.RawMessage{"pages": json.RawMessage(`12`)}
	if ended {
		st.Status, st.CompletedAt, st.Steps[0].Status = store.StatusSuccess, at.Add(time.Second), store.StepSuccess
		compact, ok := compactFields(st)
		require.True(t, ok)
		return compactHash(st, compact), st
	}
	data, err := encodeState(st)
	require.NoError(t, err)
	return map[string]string{fieldVersion: fmt.Sprint(version), fieldState: string(data)}, st
}

// TestCacheServesCopies checks, for both forms, that a state decoded from
// the same fields again comes from what was kept, as a copy the caller
// may change, and that other fields are decoded.
func TestCacheServesCopies(t *testing.T) {
	for _, ended := range []bool{false, true} {
		t.Run(fmt.Sprintf("ended=%v", ended), func(t *testing.T) {
			var c hashCache
			fields, want := cachedTask(t, "doc-1", 1, ended)
			first, err := decodeState(&c, "doc-1", fields)
			require.NoError(t, err)
			require.True(t, want.Equal(first), "decoded %+v", first)

			first.Steps[0].Status = store.StepFailed
			first.Result["pages"] = json.RawMessage(`2`)
			second, err := decodeState(&c, "doc-1", fields)
			require.NoError(t, err)
			require.True(t, want.Equal(second), "a change to a state returned reached the one kept: %+v", second)

			// The kept state is served for the same fields, and only for them.
			from := decodedFrom{state: fields[fieldState]}
			if ended {
				from = decodedFrom{fields: fields}
			}
			var other hashCache
			_, err = other.Decode("doc-1", from, func() (store.State, error) { return store.State{ID: "kept", Version: 1}, nil })
			require.NoError(t, err)
			same := make(map[string]string)
			for k, v := range fields {
				same[k] = strings.Clone(v)
			}
			kept, err := decodeState(&other, "doc-1", same)
			require.NoError(t, err)
			require.Equal(t, "kept", kept.ID, "the same must be served from what was kept")
			if ended { // a field the JSON form does not decode changes nothing there
				same["unknown"] = "x"
				got, err := decodeState(&other, "doc-1", same)
				require.NoError(t, err)
				require.True(t, want.Equal(got), "other fields must be decoded: got %+v", got)
			}
			newer, v2 := cachedTask(t, "doc-1", 2, ended)
			got, err := decodeState(&c, "doc-1", newer)
			require.NoError(t, err)
			require.True(t, v2.Equal(got), "other fields must be decoded: got %+v", got)

			_, err = decodeState(&c, "doc-1", map[string]string{fieldVersion: "2"})
			require.ErrorIs(t, err, store.ErrCorrupt)
			got, err = decodeState(&c, "doc-1", newer)
			require.NoError(t, err)
			require.True(t, v2.Equal(got), "an error must not drop or change what was kept: got %+v", got)
		})
	}
}
