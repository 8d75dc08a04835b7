package redisstore_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

// TestSilentServer checks that the store's timeout bounds a call to a
// server that accepts connections but never answers, through a client
// that honours contexts.
func TestSilentServer(t *testing.T) {
	addr := silentServer(t)

	const timeout = 300 * time.Millisecond
	s, err := redisstore.New(newClient(t, addr), redisstore.WithTimeout(timeout))
	require.NoError(t, err)
	start := time.Now()
	_, err = s.Get(t.Context(), "doc-1")
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), timeout+2*time.Second)
}

// TestDeadlinesWithDefaultClient calls a store whose client has go-redis's
// default options, ContextTimeoutEnabled off, on a server that accepts
// connections and never answers (a blackholed Redis). go-redis would wait
// its own ReadTimeout, 5 seconds; every call returns within twice the
// store's timeout, or the caller's shorter deadline, with an error
// wrapping store.ErrUnavailable, and OpenOrFallback chooses the fallback
// as fast. The calls the store left to finish alone end when the client's
// own timeouts end them: no goroutine is left.
func TestDeadlinesWithDefaultClient(t *testing.T) {
	addr := silentServer(t)
	mem, err := memstore.New()
	require.NoError(t, err)
	t.Cleanup(func() { _ = mem.Close() })
	client := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	t.Cleanup(func() { _ = client.Close() })
	leaks := goleak.IgnoreCurrent()

	const timeout = 400 * time.Millisecond
	s, err := redisstore.New(client, redisstore.WithTimeout(timeout))
	require.NoError(t, err)
	var logged bytes.Buffer
	st := newState("doc-1")
	calls := map[string]struct {
		call  func(ctx context.Context) error
		bound time.Duration // the deadline the call must keep
	}{
		"Get":    {func(ctx context.Context) error { _, err := s.Get(ctx, "doc-1"); return err }, timeout},
		"Put":    {func(ctx context.Context) error { return s.Put(ctx, write(st)) }, timeout},
		"Delete": {func(ctx context.Context) error { return s.Delete(ctx, "doc-1") }, timeout},
		"Watch":  {func(ctx context.Context) error { _, err := s.Watch(ctx, "doc-1"); return err }, timeout},
		"Get with the caller's shorter deadline": {func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, timeout/4)
			defer cancel()
			_, err := s.Get(ctx, "doc-1")
			return err
		}, timeout / 4},
		"OpenOrFallback": {func(ctx context.Context) error {
			got, err := redisstore.OpenOrFallback(ctx, client, mem, redisstore.WithTimeout(timeout),
				redisstore.WithLogger(newJSONLogger(&logged)))
			if err == nil && got != store.Store(mem) {
				err = fmt.Errorf("OpenOrFallback chose %T, not the fallback", got)
			}
			if err == nil { // the fallback, chosen because Redis was unavailable
				err = store.ErrUnavailable
			}
			return err
		}, timeout},
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs = make(map[string]error)
		took = make(map[string]time.Duration)
	)
	for name, c := range calls {
		wg.Go(func() {
			start := time.Now()
			err := c.call(t.Context())
			mu.Lock()
			defer mu.Unlock()
			errs[name], took[name] = err, time.Since(start)
		})
	}
	wg.Wait()
	for name, c := range calls {
		require.ErrorIs(t, errs[name], store.ErrUnavailable, name)
		require.Less(t, took[name], 2*c.bound, "%s must return by its deadline", name)
	}
	require.Contains(t, logged.String(), "store unavailable", "OpenOrFallback logs why it chose the fallback")

	// The calls left behind hold goroutines until go-redis's ReadTimeout
	// (5 seconds) ends them; then none is left.
	require.Eventually(t, func() bool { return goleak.Find(leaks) == nil }, 30*time.Second, 50*time.Millisecond,
		"the calls left to finish alone end when the client's own timeouts end them")
}
