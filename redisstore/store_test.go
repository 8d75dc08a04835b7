package redisstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
func newMiniStore(t *testing.T, opts ...redisstore.Option) (*redisstore.Store, *miniServer, *redis.Client) {
	t.Helper()
	mr := &miniServer{Miniredis: miniredis.RunT(t)}
	c := redis.NewClient(&redis.Options{Addr: mr.Addr(), Dialer: mr.dial, DisableIdentity: true, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	s, err := redisstore.New(c, opts...)
	require.NoError(t, err)
	return s, mr, c
}

// miniServer is a miniredis server whose Close and Restart stand for an
// outage of Redis. miniredis's own Restart listens before it knows its
// commands, and answers a client that connects meanwhile with "unknown
// command", which no Redis does: a miniServer refuses the connections
// of the clients that dial through it (see newMiniStore) from Close until
// Restart has returned.
type miniServer struct {
	*miniredis.Miniredis

	mu   sync.RWMutex // held for reading while a client dials
	down bool
}

// dial is the clients' dialer: it connects to addr unless the server is
// down.
func (m *miniServer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.down {
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	return new(net.Dialer).DialContext(ctx, network, addr)
}

// Close stops the server, and the dials of its clients until Restart.
func (m *miniServer) Close() {
	m.mu.Lock()
	m.down = true
	m.mu.Unlock()
	m.Miniredis.Close()
}

// Restart starts the server again, with its data, and lets its clients
// connect once it knows its commands.
func (m *miniServer) Restart() error {
	err := m.Miniredis.Restart()
	m.mu.Lock()
	m.down = false
	m.mu.Unlock()
	return err
}

// newState returns a pending task at version 1, of incarnation "inc-1".
func newState(id string) store.State {
	at := time.Date(2025, 11, 12, 10, 0, 0, 123456789, time.UTC)
	return store.State{ID: id, Incarnation: "inc-1", Status: store.StatusPending, CreatedAt: at, UpdatedAt: at, Attempt: 1, Version: 1}
}

// write returns the write of st computed from the version before it, with
// a write id of its own and no time to live.
func write(st store.State) store.Write {
	return store.Write{State: st, Prev: st.Version - 1, ID: fmt.Sprintf("w-%016x", rand.Uint64())}
}

// put writes st, computed from the version before it, with time to live
// ttl.
func put(ctx context.Context, s *redisstore.Store, st store.State, ttl time.Duration) error {
	w := write(st)
	w.TTL = ttl
	return s.Put(ctx, w)
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
		redisstore.WithHealthInterval(0),
		redisstore.WithHealthInterval(-time.Second),
		redisstore.WithLogger(nil),
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
	w := store.Write{State: st, TTL: time.Hour, ID: "w1"}
	require.NoError(t, s.Put(ctx, w))

	key := redisstore.TaskKey(redisstore.DefaultPrefix, "doc-123")
	require.Equal(t, "taskstatus:{t9}t:doc-123", key, "the task's hash is in its shard, 9")
	require.Equal(t, []string{"taskstatus:{t9}i:expiry", "taskstatus:{t9}i:pending", key}, mr.Keys(),
		"the task's hash and the two indexes of its shard that hold it")
	fields, err := mr.HKeys(key)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"version", "inc", "state", "writes", "announced", "index"}, fields)
	index := mr.HGet(key, "index")
	assert.Equal(t, "pending\n\n\n", index[8:], "8 bytes of the creation time, the status, no kind, lease or labels")
	pending, err := mr.ZMembers("taskstatus:{t9}i:pending")
	require.NoError(t, err)
	require.Len(t, pending, 1)
	entry := pending[0]
	assert.Equal(t, index[:8]+"doc-123", entry, "the entry is the 8 bytes of the creation time, then the id")
	expires, err := mr.ZScore("taskstatus:{t9}i:expiry", entry+"\n\n")
	require.NoError(t, err)
	assert.InDelta(t, float64(time.Now().Add(time.Hour).UnixMilli()), expires, 1000, "filed by when it expires")
	assert.Equal(t, "1", mr.HGet(key, "version"))
	assert.Equal(t, "inc-1", mr.HGet(key, "inc"))
	assert.Equal(t, "w1", mr.HGet(key, "writes"))
	assert.Equal(t, "1", mr.HGet(key, "announced"))
	assert.InDelta(t, time.Hour, mr.TTL(key), float64(time.Second))

	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(mr.HGet(key, "state")), &doc))
	assert.Equal(t, "doc-123", doc["id"])
	assert.Equal(t, "inc-1", doc["incarnation"])
	assert.Equal(t, "pending", doc["status"])
	assert.Equal(t, "2025-11-12T10:00:00.123456789Z", doc["created_at"], "times are stored in UTC with nanoseconds")
	assert.Equal(t, "2025-11-12T10:00:00.123456789Z", doc["steps"].([]any)[0].(map[string]any)["started_at"])
	assert.EqualValues(t, 1, doc["version"])

	got, err := s.Get(ctx, "doc-123")
	require.NoError(t, err)
	assert.Equal(t, time.UTC, got.CreatedAt.Location(), "times come back in UTC")
	assert.Equal(t, berlin, st.CreatedAt.Location(), "Put must not change the caller's state")
	assert.True(t, st.CreatedAt.Equal(got.CreatedAt))

	// The writes field keeps the last store.MinWriteIDs write ids, newest
	// first; an id that is not plain printable ASCII is kept in hex. A
	// quiet write does not change the announced version.
	for i := 2; i <= 10; i++ {
		st = next(st, nil)
		w = store.Write{State: st, Prev: st.Version - 1, ID: fmt.Sprintf("w%d", i), Quiet: i == 10}
		if i == 9 {
			w.ID = "id with spaces"
		}
		require.NoError(t, s.Put(ctx, w))
	}
	assert.Equal(t, "w10 ~6964207769746820737061636573 w8 w7 w6 w5 w4 w3", mr.HGet(key, "writes"))
	assert.Equal(t, "10", mr.HGet(key, "version"))
	assert.Equal(t, "9", mr.HGet(key, "announced"), "a quiet write is not announced")
	assert.Zero(t, mr.TTL(key), "a write with ttl 0 clears the time to live")
	assert.False(t, mr.Exists("taskstatus:{t9}i:expiry"), "and takes the task out of the expiry index")
}

// TestStoredFormOfAnEndedTask checks the compact form a task is kept in
// once it ended: short fields that each read plainly, every one of at
// most 64 bytes (so that Redis keeps the hash as a listpack; the memory
// it saves is BenchmarkMemoryPerTask's), the write ids in two fields, and
// the JSON form again once the task runs again.
func TestStoredFormOfAnEndedTask(t *testing.T) {
	plain, mr, c := newMiniStore(t)
	s, err := redisstore.New(c, redisstore.WithCompactEnded())
	require.NoError(t, err)
	ctx := t.Context()
	key := redisstore.TaskKey(redisstore.DefaultPrefix, "doc-123")
	st := newState("doc-123")
	st.Kind, st.Labels = "document", map[string]string{"project_id": "p-42"}
	st.Steps = []store.Step{{Name: "parse", Status: store.StepPending}, {Name: "embed it", Status: store.StepPending}}
	var ids []string
	for i := 1; i <= 10; i++ {
		w := store.Write{State: st, Prev: st.Version - 1, ID: fmt.Sprintf("w%d", i), TTL: time.Hour}
		require.NoError(t, s.Put(ctx, w))
		ids = append(ids, w.ID)
		st = next(st, func(st *store.State) { st.Status, st.StartedAt = store.StatusRunning, st.CreatedAt })
	}
	at := st.CreatedAt
	st.Status, st.CompletedAt = store.StatusFailed, at.Add(3*time.Second)
	st.ErrorMessage = "Vectorization failed"
	st.ErrorDetails = map[string]json.RawMessage{"exception_type": json.RawMessage(`"ConnectionError"`)}
	st.Result = map[string]json.RawMessage{"entities_extracted": json.RawMessage(`17`)}
	st.Steps[0] = store.Step{Name: "parse", Status: store.StepSuccess, Attempt: 1, StartedAt: at.Add(time.Millisecond), CompletedAt: at.Add(2 * time.Millisecond)}
	st.Steps[1] = store.Step{Name: "embed it", Status: store.StepFailed, Attempt: 2, StartedAt: at.Add(time.Second), Error: "refused"}
	end := store.Write{State: st, Prev: st.Version - 1, ID: "w11", TTL: time.Hour}
	require.NoError(t, s.Put(ctx, end))
	ids = append(ids, end.ID)

	fields, err := c.HGetAll(ctx, key).Result()
	require.NoError(t, err)
	created := strconv.FormatInt(at.UnixNano(), 10)
	assert.Equal(t, map[string]string{
		"version": "11", "inc": "inc-1", "announced": "11", "index": fields["index"],
		"writes": "w11 w10 w9 w8", "writes2": "w7 w6 w5 w4",
		"status": "failed", "kind": "document", "attempt": "1", "label:project_id": "p-42",
		"created_at": created, "started_at": created,
		"updated_at":    strconv.FormatInt(st.UpdatedAt.UnixNano(), 10),
		"completed_at":  strconv.FormatInt(st.CompletedAt.UnixNano(), 10),
		"error_message": "Vectorization failed", "error_details:exception_type": `"ConnectionError"`,
		"result:entities_extracted": "17",
		"step:0":                    "success 1 1000000 2000000 parse",
		"step:1":                    "failed 2 1000000000 - embed it",
		"step:1:error":              "refused",
	}, fields)
	for name, value := range fields {
		assert.LessOrEqual(t, len(name), 64, name)
		assert.LessOrEqual(t, len(value), 64, name)
	}
	assert.InDelta(t, time.Hour, mr.TTL(key), float64(time.Second))
	for _, s := range []*redisstore.Store{s, plain} { // a Store reads both forms, whatever its options
		got, err := s.Get(ctx, "doc-123")
		require.NoError(t, err)
		assert.True(t, st.Equal(got), "got %+v", got)
		page, err := s.List(ctx, store.Filter{Statuses: []store.Status{store.StatusFailed}}, 10, "")
		require.NoError(t, err)
		require.Len(t, page.Tasks, 1)
		assert.True(t, st.Equal(page.Tasks[0]), "a listing reads the compact form")
	}

	// Resends of the last store.MinWriteIDs writes are recognised, in both
	// fields, and change nothing.
	for _, id := range ids[len(ids)-store.MinWriteIDs:] {
		require.NoError(t, s.Put(ctx, store.Write{State: st, Prev: st.Version - 1, ID: id}), "a resend of %s", id)
	}
	older := store.Write{State: st, Prev: st.Version - 1, ID: ids[len(ids)-store.MinWriteIDs-1]}
	require.ErrorIs(t, s.Put(ctx, older), store.ErrConflict, "a write of an id not kept is not taken for a resend")
	again, err := c.HGetAll(ctx, key).Result()
	require.NoError(t, err)
	assert.Equal(t, fields, again, "a resend changes nothing")

	// A quiet write keeps the announced version; the task running again
	// is kept as JSON, without a field of the compact form, written so by
	// a Store with the option too.
	st = next(st, func(st *store.State) { st.Result["vector_indexed"] = json.RawMessage(`true`) })
	require.NoError(t, s.Put(ctx, store.Write{State: st, Prev: st.Version - 1, ID: "w12", Quiet: true}))
	assert.Equal(t, "11", mr.HGet(key, "announced"))
	assert.Equal(t, "true", mr.HGet(key, "result:vector_indexed"))
	st = next(st, func(st *store.State) {
		st.Status, st.Attempt, st.CompletedAt, st.ErrorMessage, st.ErrorDetails = store.StatusRunning, 2, time.Time{}, "", nil
	})
	require.NoError(t, s.Put(ctx, store.Write{State: st, Prev: st.Version - 1, ID: "w13"}))
	keys, err := mr.HKeys(key)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"version", "inc", "state", "writes", "announced", "index"}, keys)
	assert.Equal(t, "w13 w12 w11 w10 w9 w8 w7 w6", mr.HGet(key, "writes"))
	assert.Equal(t, "13", mr.HGet(key, "announced"))
	assert.Zero(t, mr.TTL(key), "a write without a time to live clears it")
	got, err := s.Get(ctx, "doc-123")
	require.NoError(t, err)
	assert.True(t, st.Equal(got), "got %+v", got)

	// A Store without the option writes a task that ended as JSON, onto
	// the compact form too.
	st = next(st, func(st *store.State) { st.Status, st.CompletedAt = store.StatusSuccess, st.UpdatedAt })
	require.NoError(t, s.Put(ctx, store.Write{State: st, Prev: st.Version - 1, ID: "w14"}))
	require.Equal(t, "success", mr.HGet(key, "status"))
	st = next(st, func(st *store.State) { st.CorrelationID = "req-1" })
	require.NoError(t, plain.Put(ctx, store.Write{State: st, Prev: st.Version - 1, ID: "w15"}))
	keys, err = mr.HKeys(key)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"version", "inc", "state", "writes", "announced", "index"}, keys)
	got, err = plain.Get(ctx, "doc-123")
	require.NoError(t, err)
	assert.True(t, st.Equal(got), "got %+v", got)
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
		err := s.Put(t.Context(), write(st))
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
		delete(m, "incarnation") // as the hashes below have no inc field
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
		{"neither a state nor a status field", []string{"version", "1"}, false},
		{"only unknown fields", []string{"garbage", "x"}, true},
		{"version not a number", []string{"version", "one", "state", valid(nil)}, true},
		{"version field disagrees", []string{"version", "2", "state", valid(nil)}, false},
		{"inc field disagrees", []string{"version", "1", "inc", "inc-9", "state", valid(nil)}, false},
		{"announced beyond version", []string{"version", "1", "announced", "2", "state", valid(nil)}, false},
		{"state of another task", []string{"version", "1", "state", valid(func(m map[string]any) { m["id"] = "doc-2" })}, false},
		{"undefined status", []string{"version", "1", "state", valid(func(m map[string]any) { m["status"] = "paused" })}, false},
		{"missing status", []string{"version", "1", "state", valid(func(m map[string]any) { delete(m, "status") })}, false},
		{"undefined step status", []string{"version", "1", "state", valid(func(m map[string]any) {
			m["steps"] = []any{map[string]any{"name": "x", "status": "done"}}
		})}, false},
		{"compact: undefined status", []string{"version", "1", "status", "paused"}, false},
		{"compact: time not a number", []string{"version", "1", "status", "success", "created_at", "yesterday"}, false},
		{"compact: step line cut short", []string{"version", "1", "status", "success", "step:0", "success 1"}, false},
		{"compact: steps not numbered from 0", []string{"version", "1", "status", "success", "step:1", "success 1 - - a"}, false},
		{"compact: step error without its step", []string{"version", "1", "status", "success", "step:0:error", "x"}, false},
		{"compact: result not JSON", []string{"version", "1", "status", "success", "result:x", "{"}, false},
		{"not a hash", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, mr, _ := newMiniStore(t)
			ctx := t.Context()
			key := redisstore.TaskKey(redisstore.DefaultPrefix, "doc-1")
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
				require.ErrorIs(t, s.Put(ctx, write(next(newState("doc-1"), nil))), store.ErrCorrupt, "Put")
			}
			require.NoError(t, s.Delete(ctx, "doc-1"), "a corrupt task can be deleted")
			require.NoError(t, s.Put(ctx, write(newState("doc-1"))), "and created again")
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
	mr.HSet(redisstore.TaskKey(redisstore.DefaultPrefix, "doc-1"), "version", "1", "inc", "inc-1", "state", future, "schema", "2")

	got, err := s.Get(t.Context(), "doc-1")
	require.NoError(t, err)
	assert.True(t, st.Equal(got), "got %+v", got)
	require.NoError(t, s.Put(t.Context(), write(next(st, nil))), "a task with unknown fields can be written")

	key := redisstore.TaskKey(redisstore.DefaultPrefix, "doc-2")
	mr.HSet(key, "version", "1", "status", "success", "step:0", "success 1 - - parse", "step:0:retries", "3",
		"step:x", "?", "priority", "3")
	got, err = s.Get(t.Context(), "doc-2")
	require.NoError(t, err)
	want := store.State{ID: "doc-2", Status: store.StatusSuccess, Version: 1,
		Steps: []store.Step{{Name: "parse", Status: store.StepSuccess, Attempt: 1}}}
	assert.True(t, want.Equal(got), "the compact form too: got %+v", got)
}

// TestLoading checks that a server that is loading its data is reported
// unavailable, never as a missing task.
func TestLoading(t *testing.T) {
	s, mr, _ := newMiniStore(t)
	ctx := t.Context()
	st := newState("doc-1")
	require.NoError(t, s.Put(ctx, write(st)))

	mr.SetError("LOADING Redis is loading the dataset in memory")
	_, err := s.Get(ctx, "doc-1")
	require.ErrorIs(t, err, store.ErrUnavailable, "Get")
	require.NotErrorIs(t, err, store.ErrNotFound, "Get")
	require.ErrorIs(t, s.Put(ctx, write(next(st, nil))), store.ErrUnavailable, "Put")
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
	require.NoError(t, s.Put(ctx, write(st)))

	mr.Close()
	for name, call := range map[string]func() error{
		"Get":    func() error { _, err := s.Get(ctx, "doc-1"); return err },
		"Put":    func() error { return s.Put(ctx, write(next(st, nil))) },
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
	require.NoError(t, s.Put(ctx, write(st)), "a write after the server is back")
	got, err := s.Get(ctx, "doc-1")
	require.NoError(t, err)
	require.True(t, st.Equal(got))
}
