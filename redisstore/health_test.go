package redisstore_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

// This file tests what watches do when notifications do not come: a
// pub/sub connection that went silent, a change whose notification was
// lost, tasks that disappeared without a word (FLUSHDB, a restart without
// persistence), and quiet writes, which must stay unannounced.

// checks is a go-redis hook that signals each check of the watched tasks
// (a pipeline of HMGET) once it is done. It holds one signal.
type checks chan struct{}

func (checks) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (checks) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (c checks) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if cmds[0].Name() == "hmget" {
			select {
			case c <- struct{}{}:
			default:
			}
		}
		return err
	}
}

// wait returns once n checks have begun and ended since wait was called.
func (c checks) wait(t *testing.T, n int) {
	t.Helper()
	select { // a check that may have begun before the call
	case <-c:
	default:
	}
	for range n + 1 {
		select {
		case <-c:
		case <-time.After(guard):
			require.FailNow(t, "the watched tasks were not checked", "waited %v", guard)
		}
	}
}

// watchFirst watches task id, at version 1, and returns the channel once
// it delivered its first state.
func watchFirst(t *testing.T, s *redisstore.Store, id string) <-chan store.State {
	t.Helper()
	ch, err := s.Watch(t.Context(), id)
	require.NoError(t, err)
	got, ok := receive(t, ch)
	require.True(t, ok)
	require.Equal(t, int64(1), got.Version)
	return ch
}

// TestWatchHalfOpen freezes the watches' pub/sub connection, through a
// proxy, as a connection whose server side is gone while the client's
// side hears nothing: notifications stop, and no error comes. While the
// freeze lasts, a write made by another instance is delivered within
// twice the health interval, a new watch of another task works, and the
// end of the task, made elsewhere, is delivered and closes the watch.
// Before the freeze, a connection on which nothing comes is not replaced.
func TestWatchHalfOpen(t *testing.T) {
	forEachServer(t, func(t *testing.T, addr string) {
		const interval = 400 * time.Millisecond
		ctx := t.Context()
		p := newProxy(t, addr)
		prefix := newPrefix()
		client := newClient(t, p.addr())
		checked := make(checks, 1)
		client.AddHook(checked)
		s, err := redisstore.New(client, redisstore.WithPrefix(prefix), redisstore.WithHealthInterval(interval))
		require.NoError(t, err)
		t.Cleanup(func() { deleteKeys(t, client, prefix) })
		other := newPrefixed(t, addr, prefix) // another instance, which does not go through the proxy

		st := next(newState("doc-1"), func(s *store.State) { s.Version, s.Status = 1, store.StatusRunning })
		require.NoError(t, other.Put(ctx, write(st)))
		ch := watchFirst(t, s, "doc-1")
		checked.wait(t, 3)
		require.Equal(t, uint32(1), client.PoolStats().PubSubStats.Created,
			"a connection on which nothing is published is not taken for a dead one")

		require.Equal(t, 1, p.freezePubSub(), "the watches' connection is frozen")
		st = next(st, func(s *store.State) { s.Progress.Done = 1 })
		require.NoError(t, other.Put(ctx, write(st)))
		written := time.Now()
		got, ok := receive(t, ch)
		require.True(t, ok)
		require.Equal(t, st.Version, got.Version, "the write whose notification was lost")
		require.Less(t, time.Since(written), 2*interval, "delivered within twice the health interval")

		two := newState("doc-2")
		require.NoError(t, other.Put(ctx, write(two)))
		ch2 := watchFirst(t, s, "doc-2")

		st = succeed(st)
		require.NoError(t, other.Put(ctx, write(st)))
		requireEnds(t, ch, st)
		two = next(two, func(s *store.State) { s.Status = store.StatusCanceled })
		require.NoError(t, other.Put(ctx, write(two)))
		requireEnds(t, ch2, two)
	})
}

// TestWatchLostNotification changes a watched task without publishing the
// change, as a writer whose notification was lost: the watch delivers it
// at the next check.
func TestWatchLostNotification(t *testing.T) {
	const interval = 100 * time.Millisecond
	s, mr, _ := newMiniStore(t, redisstore.WithHealthInterval(interval))
	st := newState("doc-1")
	require.NoError(t, s.Put(t.Context(), write(st)))
	ch := watchFirst(t, s, "doc-1")

	st = next(st, func(s *store.State) { s.Status = store.StatusRunning })
	b, err := json.Marshal(st)
	require.NoError(t, err)
	mr.HSet(redisstore.TaskKey(redisstore.DefaultPrefix, "doc-1"), "version", "2", "state", string(b), "announced", "2")
	got, ok := receive(t, ch)
	require.True(t, ok)
	require.True(t, st.Equal(got), "got %+v", got)
}

// TestWatchQuietChecked writes a watched task quietly and lets the watched
// tasks be checked twice: the check, which sees the new version, must not
// deliver it. The next write that is not quiet is delivered.
func TestWatchQuietChecked(t *testing.T) {
	const interval = 50 * time.Millisecond
	s, _, c := newMiniStore(t, redisstore.WithHealthInterval(interval))
	checked := make(checks, 1)
	c.AddHook(checked)
	ctx := t.Context()
	st := next(newState("doc-1"), func(s *store.State) { s.Version, s.Status = 1, store.StatusRunning })
	require.NoError(t, s.Put(ctx, write(st)))
	ch := watchFirst(t, s, "doc-1")

	st = next(st, func(s *store.State) { s.LeaseUntil = s.UpdatedAt.Add(time.Minute) })
	quiet := write(st)
	quiet.Quiet = true
	require.NoError(t, s.Put(ctx, quiet))
	checked.wait(t, 2)
	select {
	case got := <-ch:
		require.Failf(t, "a quiet write was delivered", "version %d", got.Version)
	default:
	}

	st = succeed(st)
	require.NoError(t, s.Put(ctx, write(st)))
	requireEnds(t, ch, st)
}

// TestWatchFlushDB flushes the database under watches of two tasks, which
// publishes nothing: every watch ends within the health interval, plus
// the time of a check and a read. On miniredis, and on a redis-server the
// test starts (never on the shared one).
func TestWatchFlushDB(t *testing.T) {
	const interval = 200 * time.Millisecond
	test := func(t *testing.T, addr string, flush func()) {
		s := newPrefixed(t, addr, newPrefix(), redisstore.WithHealthInterval(interval))
		var chans []<-chan store.State
		for _, id := range []string{"doc-1", "doc-2"} {
			require.NoError(t, s.Put(t.Context(), write(newState(id))))
			chans = append(chans, watchFirst(t, s, id), watchFirst(t, s, id))
		}
		flush()
		flushed := time.Now()
		for _, ch := range chans {
			requireClosed(t, ch)
		}
		require.Less(t, time.Since(flushed), 2*interval, "the watches of tasks gone end within the health interval")
		_, err := s.Get(t.Context(), "doc-1")
		require.ErrorIs(t, err, store.ErrNotFound)
	}
	t.Run("miniredis", func(t *testing.T) {
		_, mr, _ := newMiniStore(t)
		test(t, mr.Addr(), mr.FlushAll)
	})
	t.Run("redis", func(t *testing.T) {
		srv := startRedisServer(t, false)
		c := newClient(t, srv.Addr())
		test(t, srv.Addr(), func() { require.NoError(t, c.FlushDB(t.Context()).Err()) })
	})
}

// TestWatchServerRestart kills a redis-server under a watch and starts it
// again. Without persistence the task is gone, and the watch ends; with
// it, the task is there, and the watch goes on with the writes made after.
func TestWatchServerRestart(t *testing.T) {
	for _, persistent := range []bool{false, true} {
		name := map[bool]string{false: "without persistence", true: "with persistence"}[persistent]
		t.Run(name, func(t *testing.T) {
			srv := startRedisServer(t, persistent)
			client := newClient(t, srv.Addr())
			s, err := redisstore.New(client, redisstore.WithHealthInterval(200*time.Millisecond),
				redisstore.WithTimeout(5*time.Second))
			require.NoError(t, err)
			st := newState("doc-1")
			require.NoError(t, s.Put(t.Context(), write(st)))
			ch := watchFirst(t, s, "doc-1")

			srv.Kill()
			srv.Restart()
			srv.WaitAnswers(client)
			if !persistent {
				requireClosed(t, ch)
				return
			}
			st = succeed(next(st, func(s *store.State) { s.Status = store.StatusRunning }))
			st.Version = 2
			require.NoError(t, s.Put(t.Context(), write(st)))
			requireEnds(t, ch, st)
		})
	}
}

// TestWatchEndsWhenStale makes every command fail (Redis loading its data)
// under a watch: its task can be neither read nor checked, and the watch
// ends within the health interval plus the store's timeout, rather than
// let its watcher hold a state that may no longer be the task's.
func TestWatchEndsWhenStale(t *testing.T) {
	const interval, timeout = 200 * time.Millisecond, 300 * time.Millisecond
	s, mr, _ := newMiniStore(t, redisstore.WithHealthInterval(interval), redisstore.WithTimeout(timeout))
	require.NoError(t, s.Put(t.Context(), write(newState("doc-1"))))
	before := time.Now()
	ch := watchFirst(t, s, "doc-1")
	read := time.Now() // the state was read between before and read

	mr.SetError("LOADING Redis is loading the dataset in memory")
	requireClosed(t, ch)
	require.Less(t, time.Since(read), interval+timeout+interval, "the watch ends once its state may be stale")
	require.GreaterOrEqual(t, time.Since(before), interval+timeout, "and not before")
}
