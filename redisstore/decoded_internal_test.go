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

// decodedTask returns the JSON of a running task id with a step and a
// result, and the state it decodes to.
func decodedTask(t *testing.T, id string, version int64) (string, store.State) {
	t.Helper()
	at := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	st := store.State{
		ID: id, Status: store.StatusRunning, CreatedAt: at, UpdatedAt: at, Attempt: 1, Version: version,
		Steps:  []store.Step{{Name: "a", Status: store.StepRunning, StartedAt: at, Attempt: 1}},
		Result: map[string]json.RawMessage{"n": json.RawMessage(`1`)},
	}
	data, err := encodeState(st)
	require.NoError(t, err)
	return string(data), st
}

// TestDecodedStatesServeCopies checks that a state decoded from the same
// bytes again comes from what was kept, as a copy the caller may change,
// and that other bytes are decoded.
func TestDecodedStatesServeCopies(t *testing.T) {
	var c decodedStates
	data, want := decodedTask(t, "doc-1", 1)
	first, err := c.decode("doc-1", data)
	require.NoError(t, err)
	require.True(t, want.Equal(first), "decoded %+v", first)

	first.Steps[0].Status = store.StepFailed
	first.Result["n"] = json.RawMessage(`2`)
	second, err := c.decode("doc-1", data)
	require.NoError(t, err)
	require.True(t, want.Equal(second), "a change to a state returned reached the one kept: %+v", second)
	second.Steps[0].Name = "changed"
	third, err := c.decode("doc-1", data)
	require.NoError(t, err)
	require.True(t, want.Equal(third), "a change to a copy returned reached the one kept: %+v", third)

	// The kept state is served for the same bytes, and only for them.
	c.keep("doc-1", decodedState{data: data, st: store.State{ID: "kept"}})
	kept, err := c.decode("doc-1", data)
	require.NoError(t, err)
	require.Equal(t, "kept", kept.ID, "the same bytes must be served from what was kept")
	newer, v2 := decodedTask(t, "doc-1", 2)
	got, err := c.decode("doc-1", newer)
	require.NoError(t, err)
	require.True(t, v2.Equal(got), "other bytes must be decoded: got %+v", got)

	_, err = c.decode("doc-1", "{")
	require.ErrorIs(t, err, store.ErrCorrupt)
	got, err = c.decode("doc-1", newer)
	require.NoError(t, err)
	require.True(t, v2.Equal(got), "an error must not drop or change what was kept: got %+v", got)
}

// TestDecodedStatesBounded checks that the JSON kept stays within
// maxDecodedBytes however many tasks are read, and that JSON larger than
// maxDecodedJSON is not kept.
func TestDecodedStatesBounded(t *testing.T) {
	var c decodedStates
	data, _ := decodedTask(t, "doc-0", 1)
	n := 2 * maxDecodedBytes / len(data)
	for i := range n {
		id := fmt.Sprintf("doc-%d", i)
		data, _ := decodedTask(t, id, 1)
		_, err := c.decode(id, data)
		require.NoError(t, err)
		require.LessOrEqual(t, c.size, maxDecodedBytes)
	}
	require.Greater(t, c.size, maxDecodedBytes/2, "the bound must be used")
	sum := 0
	for _, e := range c.entries {
		sum += len(e.data)
	}
	require.Equal(t, sum, c.size, "size must count the JSON kept")

	var big decodedStates
	_, st := decodedTask(t, "doc-big", 1)
	st.ErrorMessage = strings.Repeat("x", maxDecodedJSON)
	st.Status = store.StatusFailed
	st.CompletedAt = st.UpdatedAt
	st.Steps[0].Status = store.StepFailed
	st.Steps[0].CompletedAt = st.UpdatedAt
	large, err := encodeState(st)
	require.NoError(t, err)
	_, err = big.decode("doc-big", string(large))
	require.NoError(t, err)
	require.Empty(t, big.entries, "JSON larger than maxDecodedJSON must not be kept")
}
