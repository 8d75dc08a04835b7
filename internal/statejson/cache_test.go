package statejson

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
)

// cachedTask returns the JSON of a running task id with a step and a
// result, and the state it decodes to.
func cachedTask(t *testing.T, id string, version int64) (string, store.State) {
	t.Helper()
	at := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	st := store.State{
		ID: id, Status: store.StatusRunning, CreatedAt: at, UpdatedAt: at, Attempt: 1, Version: version,
		Steps:  []store.Step{{Name: "a", Status: store.StepRunning, StartedAt: at, Attempt: 1}},
		Result: map[string]json.RawMessage{"n": json.RawMessage(`1`)},
	}
	data, err := Encode(st)
	require.NoError(t, err)
	return string(data), st
}

// TestCacheServesCopies checks that a state decoded from the same bytes
// again comes from what was kept, as a copy the caller may change, and
// that other bytes are decoded.
func TestCacheServesCopies(t *testing.T) {
	var c Cache
	data, want := cachedTask(t, "doc-1", 1)
	first, err := c.Decode("doc-1", data)
	require.NoError(t, err)
	require.True(t, want.Equal(first), "decoded %+v", first)

	first.Steps[0].Status = store.StepFailed
	first.Result["n"] = json.RawMessage(`2`)
	second, err := c.Decode("doc-1", data)
	require.NoError(t, err)
	require.True(t, want.Equal(second), "a change to a state returned reached the one kept: %+v", second)
	second.Steps[0].Name = "changed"
	third, err := c.Decode("doc-1", data)
	require.NoError(t, err)
	require.True(t, want.Equal(third), "a change to a copy returned reached the one kept: %+v", third)

	// The kept state is served for the same bytes, and only for them.
	var other Cache
	_, err = other.states.Decode("doc-1", jsonText(data), func() (store.State, error) { return store.State{ID: "kept"}, nil })
	require.NoError(t, err)
	kept, err := other.Decode("doc-1", data)
	require.NoError(t, err)
	require.Equal(t, "kept", kept.ID, "the same bytes must be served from what was kept")
	newer, v2 := cachedTask(t, "doc-1", 2)
	got, err := c.Decode("doc-1", newer)
	require.NoError(t, err)
	require.True(t, v2.Equal(got), "other bytes must be decoded: got %+v", got)

	_, err = c.Decode("doc-1", "{")
	require.ErrorIs(t, err, store.ErrCorrupt)
	got, err = c.Decode("doc-1", newer)
	require.NoError(t, err)
	require.True(t, v2.Equal(got), "an error must not drop or change what was kept: got %+v", got)
}
