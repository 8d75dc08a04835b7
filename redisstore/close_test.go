package redisstore_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

// TestClose closes a store under watches of two tasks: every watch
// channel closes, the pub/sub connection and the watches' goroutines are
// freed, every later call fails with store.ErrUnavailable, a second Close
// does nothing, and the client, which the store does not own, still works.
func TestClose(t *testing.T) {
	s, _, c := newMiniStore(t)
	ctx := t.Context()
	for _, id := range []string{"doc-1", "doc-2"} {
		require.NoError(t, s.Put(ctx, write(newState(id))))
	}
	leaks := goleak.IgnoreCurrent()
	chans := append(watchAll(t, s, "doc-1", 2), watchAll(t, s, "doc-2", 1)...)

	require.NoError(t, s.Close())
	for _, ch := range chans {
		requireClosed(t, ch)
	}
	goleak.VerifyNone(t, leaks, // but the server's side of the client's pool connections
		goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer"),
		goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer.func2"))
	require.Zero(t, c.PoolStats().PubSubStats.Active, "the pub/sub connection is closed")

	for name, call := range map[string]func() error{
		"Get":    func() error { _, err := s.Get(ctx, "doc-1"); return err },
		"Put":    func() error { return s.Put(ctx, write(next(newState("doc-1"), nil))) },
		"Delete": func() error { return s.Delete(ctx, "doc-1") },
		"Watch":  func() error { _, err := s.Watch(ctx, "doc-1"); return err },
	} {
		require.ErrorIs(t, call(), store.ErrUnavailable, "%s after Close", name)
	}
	require.NoError(t, s.Close(), "a second Close")
	require.NoError(t, c.Ping(ctx).Err(), "Close does not close the client")
}

// TestCloseWhileWatchWaits closes a store while a Watch call waits for its
// first state from a server that never answers: the call returns at once
// with store.ErrUnavailable, not at the end of its timeout.
func TestCloseWhileWatchWaits(t *testing.T) {
	s, err := redisstore.New(newClient(t, silentServer(t)), redisstore.WithTimeout(guard))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := s.Watch(t.Context(), "doc-1")
		done <- err
	}()
	require.NoError(t, s.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, store.ErrUnavailable)
	case <-time.After(guard / 2):
		require.FailNow(t, "Watch went on waiting after Close")
	}
}

// TestCloseRacesWatch closes a store while watches of a task start: each
// Watch either fails with store.ErrUnavailable or returns a channel that
// closes. It is meant for the race detector and goleak (TestMain).
func TestCloseRacesWatch(t *testing.T) {
	s, _, _ := newMiniStore(t)
	ctx := t.Context()
	require.NoError(t, s.Put(ctx, write(newState("doc-1"))))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			<-start
			ch, err := s.Watch(ctx, "doc-1")
			if err != nil {
				assert.ErrorIs(t, err, store.ErrUnavailable)
				return
			}
			for range ch {
			}
		})
	}
	close(start)
	require.NoError(t, s.Close())
	wg.Wait()
}
