package redisstore_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

// newMiniStore returns a store with the default prefix on a new miniredis
// server, and the server and client, all closed when t ends.
func newMiniStore(t *testing.T, opts ...redisstore.Option) (*redisstore.Store, *miniredis.Miniredis, *redis.Client) {
	t.Helper()
	mr := miniredis.RunT(t)
	c := newClient(t, mr.Addr())
	s, err := redisstore.New(c, opts...)
	require.NoError(t, err)
	return s, mr, c
}

// newState returns a pending task at version 1.
func newState(id string) store.State {
	at := time.Date(2025, 11, 12, 10, 0, 0, 123456789, time.UTC)
	return store.State{ID: id, Status: store.StatusPending, CreatedAt: at, UpdatedAt: at, Attempt: 1, Version: 1}
}

// next returns the state after st, changed by edit if it is not nil.
func next(st store.State, edit func(*store.State)) store.State {
	st = st.Clone()
	st.Version++
	st.UpdatedAt = st.UpdatedAt.Add(time.Millisecond)
	if edit != nil {
		edit(&st)
	}
	return st
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	c := newClient(t, "127.0.0.1:1")
	_, err := redisstore.New(nil)
	require.Error(t, err, "nil client")
	for _, opt := range []redisstore.Option{
		redisstore.WithPrefix("app{1}:"),
		redisstore.WithPrefix("app{"),
		redisstore.WithTimeout(0),
		redisstore.WithTimeout(-time.Second),
	} {
		_, err := redisstore.New(c, opt)
		require.Error(t, err)
	}
	_, err = redisstore.New(c, redisstore.WithPrefix(""), redisstore.WithTimeout(time.Millisecond))
	assert.NoError(t, err, "an empty prefix and a short timeout are valid")
}

// TestStoredForm checks the hash a task is kept in: its key, its fields,
// its JSON and its time to live.
func TestStoredForm(t *testing.T) {
	s, mr, _ := newMiniStore(t)
	ctx := t.Context()
	berlin := time.FixedZone("CET", 3600)
	st := newState("doc-123")
	st.CreatedAt = st.CreatedAt.In(berlin)
	st.Steps = []store.Step{{Name: "embed", Status: store.StepRunning, StartedAt: st.CreatedAt}}
	require.NoError(t, s.Put(ctx, st, time.Hour))

	const key = "taskstatus:{doc-123}"
	require.Equal(t, []string{key}, mr.Keys(), "the task's only key")
	fields, err := mr.HKeys(key)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"version", "state", "put_id"}, fields)
	assert.Equal(t, "1", mr.HGet(key, "version"))
	assert.NotEmpty(t, mr.HGet(key, "put_id"))
	assert.InDelta(t, time.Hour, mr.TTL(key), float64(time.Second))

	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(mr.HGet(key, "state")), &doc))
	assert.Equal(t, "doc-123", doc["id"])
	assert.Equal(t, "pending", doc["status"])
	assert.Equal(t, "2025-11-12T10:00:00.123456789Z", doc["created_at"], "times are stored in UTC with nanoseconds")
	assert.Equal(t, "2025-11-12T10:00:00.123456789Z", doc["steps"].([]any)[0].(map[string]any)["started_at"])
	assert.EqualValues(t, 1, doc["version"])

	got, err := s.Get(ctx, "doc-123")
	require.NoError(t, err)
	assert.Equal(t, time.UTC, got.CreatedAt.Location(), "times come back in UTC")
	assert.Equal(t, berlin, st.CreatedAt.Location(), "Put must not change the caller's state")
	assert.True(t, st.CreatedAt.Equal(got.CreatedAt))

	require.NoError(t, s.Put(ctx, next(st, nil), 0))
	assert.Zero(t, mr.TTL(key), "a write with ttl 0 clears the time to live")
}

func TestPutRefusesInvalidStates(t *testing.T) {
	s, mr, _ := newMiniStore(t)
	for _, tc := range []struct {
		name string
		edit func(*store.State)
	}{
		{"version 0", func(st *store.State) { st.Version = 0 }},
		{"undefined status", func(st *store.State) { st.Status = "paused" }},
		{"missing status", func(st *store.State) { st.Status = "" }},
		{"undefined step status", func(st *store.State) { st.Steps = []store.Step{{Name: "x", Status: "done"}} }},
	} {
		st := newState("doc-1")
		tc.edit(&st)
		err := s.Put(t.Context(), st, 0)
		require.Error(t, err, tc.name)
		require.NotErrorIs(t, err, store.ErrConflict, tc.name)
	}
	assert.Empty(t, mr.Keys(), "a refused state must not be written")
}

// TestCorrupt writes hashes the store cannot trust and checks that every
// read reports store.ErrCorrupt, and that a write refuses what it cannot
// compare.
func TestCorrupt(t *testing.T) {
	valid := func(edit func(map[string]any)) string {
		b, err := json.Marshal(newState("doc-1"))
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		if edit != nil {
			edit(m)
		}
		b, err = json.Marshal(m)
		require.NoError(t, err)
		return string(b)
	}
	for _, tc := range []struct {
		name   string
		fields []string // the hash; nil for a string key
		putErr bool     // whether a write must be refused too
	}{
		{"bad JSON", []string{"version", "1", "state", "{not json"}, false},
		{"JSON of another type", []string{"version", "1", "state", `["a list"]`}, false},
		{"no version field", []string{"state", valid(nil)}, true},
		{"no state field", []string{"version", "1"}, false},
		{"only unknown fields", []string{"garbage", "x"}, true},
		{"version not a number", []string{"version", "one", "state", valid(nil)}, true},
		{"version field disagrees", []string{"version", "2", "state", valid(nil)}, false},
		{"state of another task", []string{"version", "1", "state", valid(func(m map[string]any) { m["id"] = "doc-2" })}, false},
		{"undefined status", []string{"version", "1", "state", valid(func(m map[string]any) { m["status"] = "paused" })}, false},
		{"missing status", []string{"version", "1", "state", valid(func(m map[string]any) { delete(m, "status") })}, false},
		{"undefined step status", []string{"version", "1", "state", valid(func(m map[string]any) {
			m["steps"] = []any{map[string]any{"name": "x", "status": "done"}}
		})}, false},
		{"not a hash", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, mr, _ := newMiniStore(t)
			ctx := t.Context()
			const key = "taskstatus:{doc-1}"
			if tc.fields == nil {
				require.NoError(t, mr.Set(key, "garbage"))
			} else {
				mr.HSet(key, tc.fields...)
			}

			_, err := s.Get(ctx, "doc-1")
			require.ErrorIs(t, err, store.ErrCorrupt, "Get")
			t.Log(err)
			_, err = s.Watch(ctx, "doc-1")
			require.ErrorIs(t, err, store.ErrCorrupt, "Watch")
			if tc.putErr {
				require.ErrorIs(t, s.Put(ctx, next(newState("doc-1"), nil), 0), store.ErrCorrupt, "Put")
			}
			require.NoError(t, s.Delete(ctx, "doc-1"), "a corrupt task can be deleted")
			require.NoError(t, s.Put(ctx, newState("doc-1"), 0), "and created again")
		})
	}
}

// TestUnknownFieldsIgnored checks forward compatibility: fields a newer
// writer adds, to the hash or to the JSON, do not stop an older reader.
func TestUnknownFieldsIgnored(t *testing.T) {
	s, mr, _ := newMiniStore(t)
	st := newState("doc-1")
	b, err := json.Marshal(st)
	require.NoError(t, err)
	future := strings.Replace(string(b), `{`, `{"priority":{"level":3},"tags":["a"],`, 1)
	mr.HSet("taskstatus:{doc-1}", "version", "1", "state", future, "schema", "2")

	got, err := s.Get(t.Context(), "doc-1")
	require.NoError(t, err)
	assert.True(t, st.Equal(got), "got %+v", got)
	require.NoError(t, s.Put(t.Context(), next(st, nil), 0), "a task with unknown fields can be written")
}

// TestLoading checks that a server that is loading its data is reported
// unavailable, never as a missing task.
func TestLoading(t *testing.T) {
	s, mr, _ := newMiniStore(t)
	ctx := t.Context()
	st := newState("doc-1")
	require.NoError(t, s.Put(ctx, st, 0))

	mr.SetError("LOADING Redis is loading the dataset in memory")
	_, err := s.Get(ctx, "doc-1")
	require.ErrorIs(t, err, store.ErrUnavailable, "Get")
	require.NotErrorIs(t, err, store.ErrNotFound, "Get")
	require.ErrorIs(t, s.Put(ctx, next(st, nil), 0), store.ErrUnavailable, "Put")
	require.ErrorIs(t, s.Delete(ctx, "doc-1"), store.ErrUnavailable, "Delete")
	_, err = s.Watch(ctx, "doc-1")
	require.ErrorIs(t, err, store.ErrUnavailable, "Watch")

	mr.SetError("")
	got, err := s.Get(ctx, "doc-1")
	require.NoError(t, err)
	require.Equal(t, int64(1), got.Version, "nothing was written while loading")
}

// TestServerDown checks that calls on a stopped server fail as unavailable
// within the store's timeout, and succeed again once it is back.
func TestServerDown(t *testing.T) {
	const timeout = 500 * time.Millisecond
	s, mr, _ := newMiniStore(t, redisstore.WithTimeout(timeout))
	ctx := t.Context()
	st := newState("doc-1")
	require.NoError(t, s.Put(ctx, st, 0))

	mr.Close()
	for name, call := range map[string]func() error{
		"Get":    func() error { _, err := s.Get(ctx, "doc-1"); return err },
		"Put":    func() error { return s.Put(ctx, next(st, nil), 0) },
		"Delete": func() error { return s.Delete(ctx, "doc-1") },
		"Watch":  func() error { _, err := s.Watch(ctx, "doc-1"); return err },
	} {
		start := time.Now()
		err := call()
		require.ErrorIs(t, err, store.ErrUnavailable, name)
		require.Less(t, time.Since(start), timeout+2*time.Second, "%s must give up within the timeout", name)
	}

	require.NoError(t, mr.Restart())
	st = next(st, func(s *store.State) { s.Status = store.StatusRunning })
	require.NoError(t, s.Put(ctx, st, 0), "a write after the server is back")
	got, err := s.Get(ctx, "doc-1")
	require.NoError(t, err)
	require.True(t, st.Equal(got))
}
