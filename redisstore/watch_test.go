package redisstore_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

// guard bounds every wait on a watch channel, so that a watcher that
// neither delivers nor closes fails the test instead of hanging it.
const guard = 10 * time.Second

// receive returns the next state on ch, and false once ch is closed.
func receive(t *testing.T, ch <-chan store.State) (store.State, bool) {
	t.Helper()
	select {
	case st, ok := <-ch:
		return st, ok
	case <-time.After(guard):
		require.FailNow(t, "the watcher neither delivered nor closed", "waited %v", guard)
		return store.State{}, false
	}
}

// requireClosed fails t unless ch closes, after any number of states.
func requireClosed(t *testing.T, ch <-chan store.State) {
	t.Helper()
	for {
		if _, ok := receive(t, ch); !ok {
			return
		}
	}
}

// TestWatchReconnect restarts the server under a watcher: the watcher
// reconnects, re-reads the task and delivers the states written after.
func TestWatchReconnect(t *testing.T) {
	s, mr, _ := newMiniStore(t, redisstore.WithTimeout(5*time.Second))
	ctx := t.Context()
	st := newState("doc-1")
	require.NoError(t, s.Put(ctx, write(st)))
	ch, err := s.Watch(ctx, "doc-1")
	require.NoError(t, err)
	got, ok := receive(t, ch)
	require.True(t, ok)
	require.Equal(t, int64(1), got.Version)

	mr.Close()
	require.NoError(t, mr.Restart())
	st = next(st, func(s *store.State) { s.Status = store.StatusRunning })
	require.NoError(t, s.Put(ctx, write(st)))
	got, ok = receive(t, ch)
	require.True(t, ok, "the watcher must survive a restart of the server")
	require.Equal(t, int64(2), got.Version, "the state written after the restart")

	st = next(st, func(s *store.State) { s.Status = store.StatusSuccess })
	require.NoError(t, s.Put(ctx, write(st)))
	got, ok = receive(t, ch)
	require.True(t, ok)
	require.Equal(t, store.StatusSuccess, got.Status)
	_, ok = receive(t, ch)
	require.False(t, ok, "the channel closes after the terminal state")
}

// TestWatchGivesUp stops the server for good: the watcher closes its
// channel once it has been unable to read the task for the health
// interval plus the store's timeout.
func TestWatchGivesUp(t *testing.T) {
	s, mr, _ := newMiniStore(t, redisstore.WithTimeout(200*time.Millisecond),
		redisstore.WithHealthInterval(100*time.Millisecond))
	ctx := t.Context()
	require.NoError(t, s.Put(ctx, write(newState("doc-1"))))
	ch, err := s.Watch(ctx, "doc-1")
	require.NoError(t, err)
	_, ok := receive(t, ch)
	require.True(t, ok)

	mr.Close()
	requireClosed(t, ch)
	_, err = s.Get(ctx, "doc-1")
	require.ErrorIs(t, err, store.ErrUnavailable, "Get tells why the watch ended")
}

// TestWatchExpiry lets a watched task expire: the watcher, which gets no
// notification for an expiry, finds the task gone at the next check and
// closes the channel.
func TestWatchExpiry(t *testing.T) {
	s, mr, _ := newMiniStore(t, redisstore.WithHealthInterval(50*time.Millisecond))
	ctx := t.Context()
	require.NoError(t, put(ctx, s, newState("doc-1"), 50*time.Millisecond))
	ch, err := s.Watch(ctx, "doc-1")
	require.NoError(t, err)
	_, ok := receive(t, ch)
	require.True(t, ok)

	mr.FastForward(time.Second) // miniredis's clock moves only when told
	requireClosed(t, ch)
}

// TestWatchReplaced lets a watched task expire unseen and creates a new
// task of the same id: the watcher must not deliver version 1 after 2.
func TestWatchReplaced(t *testing.T) {
	s, mr, _ := newMiniStore(t)
	ctx := t.Context()
	st := newState("doc-1")
	require.NoError(t, put(ctx, s, st, time.Hour))
	require.NoError(t, put(ctx, s, next(st, nil), time.Hour))
	ch, err := s.Watch(ctx, "doc-1")
	require.NoError(t, err)
	got, ok := receive(t, ch)
	require.True(t, ok)
	require.Equal(t, int64(2), got.Version)

	mr.FastForward(2 * time.Hour)
	require.NoError(t, s.Put(ctx, write(st)))
	_, ok = receive(t, ch)
	require.False(t, ok, "the watch of the old task must end")
}

// TestWatchSlowReader writes many versions while the reader reads nothing:
// writers must not wait for it, and it then gets the latest state.
func TestWatchSlowReader(t *testing.T) {
	s, _, _ := newMiniStore(t)
	ctx := t.Context()
	st := newState("doc-1")
	require.NoError(t, s.Put(ctx, write(st)))
	ch, err := s.Watch(ctx, "doc-1")
	require.NoError(t, err)

	const last = 50
	for st.Version < last {
		st = next(st, func(s *store.State) {
			if s.Version == last {
				s.Status = store.StatusSuccess
			}
		})
		require.NoError(t, s.Put(ctx, write(st)))
	}
	var prev int64
	for {
		got, ok := receive(t, ch)
		if !ok {
			break
		}
		require.Greater(t, got.Version, prev, "versions strictly increase")
		prev = got.Version
	}
	require.Equal(t, int64(last), prev, "the terminal state is delivered before the channel closes")
}
