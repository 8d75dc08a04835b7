package store_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
)

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		id    string
		valid bool
	}{
		{"doc-123", true},
		{"archon://projects/my-project/documents/doc-123", true},
		{"with space", true},
		{"ünïcödé-文書", true},
		{"...", true},
		{strings.Repeat("x", store.MaxIDLen), true},
		{"", false},
		{strings.Repeat("x", store.MaxIDLen+1), false},
		{"a{b", false},
		{"a}b", false},
		{".", false},
		{"..", false},
		{"nul\x00", false},
		{"tab\t", false},
		{"del\x7f", false},
		{"line\u2028sep", false},
		{"bad\xffutf8", false},
	} {
		err := store.ValidateID(tc.id)
		if tc.valid {
			require.NoError(t, err, "%q", tc.id)
		} else {
			require.ErrorIs(t, err, store.ErrInvalidID, "%q", tc.id)
			assert.NotContains(t, err.Error(), "\x00", "the error never quotes raw bytes")
		}
	}
}

func TestStatuses(t *testing.T) {
	terminal := map[store.Status]bool{
		store.StatusPending: false, store.StatusRunning: false,
		store.StatusSuccess: true, store.StatusFailed: true, store.StatusCanceled: true,
	}
	for s, want := range terminal {
		assert.True(t, s.Valid(), s)
		assert.Equal(t, want, s.Terminal(), s)
	}
	assert.False(t, store.Status("processing_queued").Valid())

	stepTerminal := map[store.StepStatus]bool{
		store.StepPending: false, store.StepRunning: false,
		store.StepSuccess: true, store.StepFailed: true, store.StepSkipped: true,
	}
	for s, want := range stepTerminal {
		assert.True(t, s.Valid(), s)
		assert.Equal(t, want, s.Terminal(), s)
	}
	assert.False(t, store.StepStatus("canceled").Valid())
}

func TestCloneIsDeep(t *testing.T) {
	st := store.State{
		ID:           "a",
		Steps:        []store.Step{{Name: "s", Status: store.StepRunning}},
		ErrorDetails: map[string]json.RawMessage{"k": json.RawMessage(`"v"`)},
		Result:       map[string]json.RawMessage{"n": json.RawMessage(`1`)},
	}
	c := st.Clone()
	require.True(t, st.Equal(c))
	c.Steps[0].Status = store.StepFailed
	c.ErrorDetails["k"][1] = 'x'
	c.Result["m"] = json.RawMessage(`2`)
	assert.Equal(t, store.StepRunning, st.Steps[0].Status)
	assert.JSONEq(t, `"v"`, string(st.ErrorDetails["k"]))
	assert.NotContains(t, st.Result, "m")
	assert.False(t, st.Equal(c))
}

func TestEqualComparesInstants(t *testing.T) {
	at := time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC)
	a := store.State{ID: "a", CreatedAt: at}
	b := store.State{ID: "a", CreatedAt: at.In(time.FixedZone("X", 3600))}
	assert.True(t, a.Equal(b), "the same instant in another zone is equal")
	b.Result = map[string]json.RawMessage{}
	assert.True(t, a.Equal(b), "an empty map equals a nil one")
	b.Version = 2
	assert.False(t, a.Equal(b))
}

func TestStep(t *testing.T) {
	st := store.State{Steps: []store.Step{{Name: "a"}, {Name: "b", Status: store.StepSkipped}}}
	s, ok := st.Step("b")
	require.True(t, ok)
	assert.Equal(t, store.StepSkipped, s.Status)
	_, ok = st.Step("c")
	assert.False(t, ok)
}
