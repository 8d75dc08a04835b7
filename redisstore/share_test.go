package redisstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

// This file tests that the watches of a Store share one pub/sub
// connection: each task's channel is subscribed once however many watch
// it, a read is shared by a task's watchers, and each watcher still gets
// what the Watcher contract promises.

// forEachBackend runs test on miniredis, and on the Redis server and the
// Redis Cluster named by the environment when they are set.
func forEachBackend(t *testing.T, test func(t *testing.T, b backend)) {
	t.Run("miniredis", func(t *testing.T) { test(t, miniredisBackend) })
	t.Run("redis", func(t *testing.T) { test(t, redisBackend(t)) })
	t.Run("cluster", func(t *testing.T) { test(t, clusterBackend(t)) })
}

// shared is a store of a backend, with what the tests need to look at its
// pub/sub connections.
type shared struct {
	s      *redisstore.Store
	client redis.UniversalClient
	prefix string
}

func newShared(t *testing.T, b backend, opts ...redisstore.Option) shared {
	t.Helper()
	client, _ := b(t)
	prefix := fmt.Sprintf("tstest:%016x:", rand.Uint64())
	t.Cleanup(func() { deleteKeys(t, client, prefix) })
	s, err := redisstore.New(client, append([]redisstore.Option{redisstore.WithPrefix(prefix)}, opts...)...)
	require.NoError(t, err)
	return shared{s: s, client: client, prefix: prefix}
}

// channel returns the name of task id's channel.
func (sh shared) channel(id string) string { return sh.prefix + "{" + id + "}:events" }

// subscribers returns the number of subscriptions to task id's channel,
// on every node.
func (sh shared) subscribers(t *testing.T, id string) int64 {
	t.Helper()
	var mu sync.Mutex
	var n int64
	err := eachMaster(t.Context(), sh.client, func(ctx context.Context, c *redis.Client) error {
		counts, err := c.PubSubNumSub(ctx, sh.channel(id)).Result()
		mu.Lock()
		defer mu.Unlock()
		n += counts[sh.channel(id)]
		return err
	})
	require.NoError(t, err)
	return n
}

// pubsubConns returns how many pub/sub connections the client has opened
// in all and how many are open now, on every node.
func (sh shared) pubsubConns(t *testing.T) (created, open uint32) {
	t.Helper()
	var mu sync.Mutex
	err := eachMaster(t.Context(), sh.client, func(_ context.Context, c *redis.Client) error {
		st := c.PoolStats().PubSubStats
		mu.Lock()
		defer mu.Unlock()
		created += st.Created
		open += st.Active
		return nil
	})
	require.NoError(t, err)
	return created, open
}

// requireNoPubSub waits until the client has no pub/sub connection open:
// the hub closes with the last watch, a moment after its channel closed.
func (sh shared) requireNoPubSub(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, open := sh.pubsubConns(t)
		return open == 0
	}, guard, 5*time.Millisecond, "the pub/sub connection is closed once nothing is watched")
}

// watchAll starts n watches of task id, a task at version 1, at once and
// returns their channels, each once it has delivered its first state.
func watchAll(t *testing.T, s *redisstore.Store, id string, n int) []<-chan store.State {
	t.Helper()
	ctx := t.Context()
	chans := make([]<-chan store.State, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range chans {
		wg.Go(func() { chans[i], errs[i] = s.Watch(ctx, id) })
	}
	wg.Wait()
	for i, ch := range chans {
		require.NoError(t, errs[i], "watch %d of %s", i, id)
		got, ok := receive(t, ch)
		require.True(t, ok)
		require.Equal(t, int64(1), got.Version, "the first state of watch %d of %s", i, id)
	}
	return chans
}

// requireEnds reads ch until it closes and fails t unless the versions
// strictly increase and the last state is st.
func requireEnds(t *testing.T, ch <-chan store.State, st store.State) {
	t.Helper()
	var last store.State
	for {
		got, ok := receive(t, ch)
		if !ok {
			break
		}
		require.Greater(t, got.Version, last.Version, "versions strictly increase")
		last = got
	}
	require.Equal(t, st.Version, last.Version, "the terminal state is delivered before the channel closes")
	require.Equal(t, st.Status, last.Status)
}

// succeed returns the state after st, ended with success.
func succeed(st store.State) store.State {
	return next(st, func(s *store.State) { s.Status = store.StatusSuccess })
}

// TestWatchersShareOneConnection watches one task 200 times and five others
// 20 times each: one pub/sub connection serves them all, each channel is
// subscribed once, one read of a changed task serves all its watchers, and
// every watcher gets the terminal state. The connection is closed with
// the last watch, and a new watch opens another.
func TestWatchersShareOneConnection(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		sh := newShared(t, b)
		ctx := t.Context()
		ids := []string{"hot", "doc-0", "doc-1", "doc-2", "doc-3", "doc-4"}
		states := make(map[string]store.State)
		for _, id := range ids {
			states[id] = newState(id)
			require.NoError(t, sh.s.Put(ctx, write(states[id])))
		}
		created0, _ := sh.pubsubConns(t)

		chans := make(map[string][]<-chan store.State)
		for _, id := range ids {
			n := 20
			if id == "hot" {
				n = 200
			}
			chans[id] = watchAll(t, sh.s, id, n)
		}
		created, open := sh.pubsubConns(t)
		require.Equal(t, uint32(1), created-created0, "one pub/sub connection for 300 watches")
		require.Equal(t, uint32(1), open)
		for _, id := range ids {
			require.Equal(t, int64(1), sh.subscribers(t, id), "%s: its channel is subscribed once", id)
		}

		// One read of the task serves its 200 watchers. A read the
		// watches asked for may still be on its way: allow one.
		log := &commandLog{}
		sh.client.AddHook(log)
		states["hot"] = next(states["hot"], nil)
		require.NoError(t, sh.s.Put(ctx, write(states["hot"])))
		for _, ch := range chans["hot"] {
			got, ok := receive(t, ch)
			require.True(t, ok)
			require.Equal(t, int64(2), got.Version)
		}
		cmds, _ := log.take()
		reads := 0
		for _, c := range cmds {
			if c == "hgetall" {
				reads++
			}
		}
		require.LessOrEqual(t, reads, 2, "the watchers of a task share its reads: %v", cmds)

		for _, id := range ids {
			states[id] = succeed(states[id])
			require.NoError(t, sh.s.Put(ctx, write(states[id])))
		}
		for _, id := range ids {
			for _, ch := range chans[id] {
				requireEnds(t, ch, states[id])
			}
		}
		sh.requireNoPubSub(t)

		ch, err := sh.s.Watch(ctx, "hot")
		require.NoError(t, err, "a watch after the connection closed opens another")
		requireEnds(t, ch, states["hot"])
		created, _ = sh.pubsubConns(t)
		require.Equal(t, uint32(2), created-created0)
		sh.requireNoPubSub(t)
	})
}

// TestWatcherLeaves ends watches one by one: the others of the same task
// go on, the task's channel is unsubscribed when its last watcher leaves
// while other tasks are still watched, and is subscribed again by a new
// watch.
func TestWatcherLeaves(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		sh := newShared(t, b)
		ctx := t.Context()
		a, other := newState("a"), newState("other")
		require.NoError(t, sh.s.Put(ctx, write(a)))
		require.NoError(t, sh.s.Put(ctx, write(other)))
		otherCh, err := sh.s.Watch(ctx, "other")
		require.NoError(t, err)
		_, ok := receive(t, otherCh)
		require.True(t, ok)

		chans := make([]<-chan store.State, 3)
		cancels := make([]context.CancelFunc, 3)
		for i := range chans {
			var wctx context.Context
			wctx, cancels[i] = context.WithCancel(ctx)
			chans[i], err = sh.s.Watch(wctx, "a")
			require.NoError(t, err)
			_, ok := receive(t, chans[i])
			require.True(t, ok)
		}

		cancels[0]()
		requireClosed(t, chans[0])
		require.Equal(t, int64(1), sh.subscribers(t, "a"), "the others still watch the task")
		a = next(a, nil)
		require.NoError(t, sh.s.Put(ctx, write(a)))
		for _, ch := range chans[1:] {
			got, ok := receive(t, ch)
			require.True(t, ok, "a watcher leaving does not end the others")
			require.Equal(t, a.Version, got.Version)
		}

		cancels[1]()
		cancels[2]()
		requireClosed(t, chans[1])
		requireClosed(t, chans[2])
		require.Eventually(t, func() bool { return sh.subscribers(t, "a") == 0 }, guard, 5*time.Millisecond,
			"the channel is unsubscribed when its last watcher leaves")
		require.Equal(t, int64(1), sh.subscribers(t, "other"))
		_, open := sh.pubsubConns(t)
		require.Equal(t, uint32(1), open, "the connection stays while a task is watched")

		ch, err := sh.s.Watch(ctx, "a")
		require.NoError(t, err)
		_, ok = receive(t, ch)
		require.True(t, ok)
		require.Equal(t, int64(1), sh.subscribers(t, "a"), "subscribed again")
		a = succeed(a)
		require.NoError(t, sh.s.Put(ctx, write(a)))
		requireEnds(t, ch, a)
		other = succeed(other)
		require.NoError(t, sh.s.Put(ctx, write(other)))
		requireEnds(t, otherCh, other)
		sh.requireNoPubSub(t)
	})
}

// TestWatchWriteRightAfter writes a task right after Watch returns, on a
// connection that serves other watches already, for new tasks and for a
// task watched already: the write is always delivered, so the read was
// made after the subscription.
func TestWatchWriteRightAfter(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		sh := newShared(t, b)
		ctx := t.Context()
		anchor := newState("anchor") // keeps the connection open
		require.NoError(t, sh.s.Put(ctx, write(anchor)))
		anchorCh, err := sh.s.Watch(ctx, "anchor")
		require.NoError(t, err)

		const n = 20
		var wg sync.WaitGroup
		var chans [n][2]<-chan store.State
		var final [n]store.State
		for i := range n {
			wg.Go(func() {
				st := newState(fmt.Sprintf("doc-%d", i))
				err := sh.s.Put(ctx, write(st))
				if err == nil {
					chans[i][0], err = sh.s.Watch(ctx, st.ID) // a new topic
				}
				if err == nil {
					st = next(st, nil)
					err = sh.s.Put(ctx, write(st))
				}
				if err == nil {
					chans[i][1], err = sh.s.Watch(ctx, st.ID) // a topic subscribed already
				}
				if err == nil {
					final[i] = succeed(st)
					err = sh.s.Put(ctx, write(final[i]))
				}
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		require.False(t, t.Failed())
		for i := range n {
			requireEnds(t, chans[i][0], final[i])
			requireEnds(t, chans[i][1], final[i])
		}
		anchor = succeed(anchor)
		require.NoError(t, sh.s.Put(ctx, write(anchor)))
		requireEnds(t, anchorCh, anchor)
	})
}

// TestWatchReadsAfterConfirmation checks the order on the server itself:
// whenever a watch reads a task, miniredis has already subscribed the
// connection to the task's channel.
func TestWatchReadsAfterConfirmation(t *testing.T) {
	s, mr, c := newMiniStore(t)
	var mu sync.Mutex
	var early []string
	c.AddHook(pipelineCheck(func(cmds []redis.Cmder) {
		for _, cmd := range cmds {
			if cmd.Name() != "hgetall" {
				continue
			}
			_, id, _ := strings.Cut(fmt.Sprint(cmd.Args()[1]), "}t:")
			channel := "taskstatus:{" + id + "}:events"
			if mr.PubSubNumSub(channel)[channel] == 0 {
				mu.Lock()
				early = append(early, channel)
				mu.Unlock()
			}
		}
	}))
	ctx := t.Context()
	var wg sync.WaitGroup
	var chans [30]<-chan store.State
	for i := range chans {
		wg.Go(func() {
			id := fmt.Sprintf("doc-%d", i%10) // three watches per task
			st := newState(id)
			_ = s.Put(ctx, write(st)) // one of the three creates it
			var err error
			if chans[i], err = s.Watch(ctx, id); err != nil {
				t.Error(err)
			}
			_ = s.Put(ctx, write(succeed(st))) // one of the three ends it
		})
	}
	wg.Wait()
	require.False(t, t.Failed())
	for _, ch := range chans {
		requireClosed(t, ch)
	}
	require.Empty(t, early, "reads made before the subscription")
}

// pipelineCheck is a go-redis hook that calls check with each pipeline
// before it is sent.
type pipelineCheck func(cmds []redis.Cmder)

func (pipelineCheck) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (pipelineCheck) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (check pipelineCheck) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		check(cmds)
		return next(ctx, cmds)
	}
}

// TestWatchReconnectMany restarts the server under 15 watches of three
// tasks: after the reconnect every watcher gets the states written after,
// on one connection still.
func TestWatchReconnectMany(t *testing.T) {
	s, mr, c := newMiniStore(t, redisstore.WithTimeout(5*time.Second))
	ctx := t.Context()
	ids := []string{"doc-0", "doc-1", "doc-2"}
	states := make(map[string]store.State)
	chans := make(map[string][]<-chan store.State)
	for _, id := range ids {
		states[id] = newState(id)
		require.NoError(t, s.Put(ctx, write(states[id])))
		chans[id] = watchAll(t, s, id, 5)
	}

	mr.Close()
	require.NoError(t, mr.Restart())
	for _, id := range ids {
		states[id] = next(states[id], func(s *store.State) { s.Status = store.StatusRunning })
		require.NoError(t, s.Put(ctx, write(states[id])))
	}
	for _, id := range ids {
		for _, ch := range chans[id] {
			got, ok := receive(t, ch)
			require.True(t, ok, "%s: the watchers survive a restart of the server", id)
			require.Equal(t, int64(2), got.Version, "%s: the state written after the restart", id)
		}
	}
	require.Equal(t, uint32(1), c.PoolStats().PubSubStats.Active, "one connection after the reconnect")

	for _, id := range ids {
		states[id] = succeed(states[id])
		require.NoError(t, s.Put(ctx, write(states[id])))
	}
	for _, id := range ids {
		for _, ch := range chans[id] {
			requireEnds(t, ch, states[id])
		}
	}
}

// TestWatchRefusedSubscribe has Redis refuse the SUBSCRIBE of a new watch
// with an error reply while another task is watched on the connection: the
// new watch fails at once with the error, and the other goes on.
func TestWatchRefusedSubscribe(t *testing.T) {
	s, mr, _ := newMiniStore(t)
	ctx := t.Context()
	a := newState("a")
	require.NoError(t, s.Put(ctx, write(a)))
	require.NoError(t, s.Put(ctx, write(newState("b"))))
	ch, err := s.Watch(ctx, "a")
	require.NoError(t, err)

	mr.SetError("LOADING Redis is loading the dataset in memory")
	start := time.Now()
	_, err = s.Watch(ctx, "b")
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.Contains(t, err.Error(), "LOADING")
	require.Less(t, time.Since(start), redisstore.DefaultTimeout, "the error reply ends the watch, not its timeout")
	mr.SetError("")

	a = succeed(a)
	require.NoError(t, s.Put(ctx, write(a)))
	requireEnds(t, ch, a)
	ch, err = s.Watch(ctx, "b")
	require.NoError(t, err, "a watch once Redis answers again")
	got, ok := receive(t, ch)
	require.True(t, ok)
	require.Equal(t, int64(1), got.Version)
}

// TestWatchSilentServer watches a task on a server that accepts
// connections but never answers: Watch fails with store.ErrUnavailable
// within the store's timeout, and the connection and goroutines it opened
// are freed at once, not after the client's own timeouts.
func TestWatchSilentServer(t *testing.T) {
	addr := silentServer(t)

	const timeout = 300 * time.Millisecond
	c := newClient(t, addr)
	s, err := redisstore.New(c, redisstore.WithTimeout(timeout))
	require.NoError(t, err)
	leaks := goleak.IgnoreCurrent()
	start := time.Now()
	_, err = s.Watch(t.Context(), "doc-1")
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.Less(t, time.Since(start), timeout+2*time.Second)
	require.Eventually(t, func() bool { return c.PoolStats().PubSubStats.Active == 0 && goleak.Find(leaks) == nil },
		time.Second, 5*time.Millisecond, "the watch's connection and goroutines are freed")
}

// TestWatchGivesUpMany stops the server for good under watches of two
// tasks: all their channels close within the health interval plus the
// store's timeout.
func TestWatchGivesUpMany(t *testing.T) {
	const timeout, interval = 200 * time.Millisecond, 200 * time.Millisecond
	s, mr, c := newMiniStore(t, redisstore.WithTimeout(timeout), redisstore.WithHealthInterval(interval))
	ctx := t.Context()
	var chans []<-chan store.State
	for _, id := range []string{"doc-0", "doc-1"} {
		require.NoError(t, s.Put(ctx, write(newState(id))))
		chans = append(chans, watchAll(t, s, id, 3)...)
	}
	mr.Close()
	start := time.Now()
	for _, ch := range chans {
		requireClosed(t, ch)
	}
	require.Less(t, time.Since(start), interval+timeout+time.Second)
	require.Eventually(t, func() bool { return c.PoolStats().PubSubStats.Active == 0 }, guard, 5*time.Millisecond)
}

// TestWatchSlowWatcherHoldsNoOne writes many versions of a task watched by
// a reader that reads nothing and one that reads everything: the second
// gets the terminal state while the first still holds its first, and the
// first then gets the latest state.
func TestWatchSlowWatcherHoldsNoOne(t *testing.T) {
	s, _, _ := newMiniStore(t)
	ctx := t.Context()
	st := newState("doc-1")
	require.NoError(t, s.Put(ctx, write(st)))
	slow, err := s.Watch(ctx, "doc-1")
	require.NoError(t, err)
	fast, err := s.Watch(ctx, "doc-1")
	require.NoError(t, err)

	const last = 50
	done := make(chan error, 1)
	go func() {
		cur := st
		for cur.Version < last {
			cur = next(cur, func(s *store.State) {
				if s.Version == last {
					s.Status = store.StatusSuccess
				}
			})
			if err := s.Put(context.Background(), write(cur)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	final := st
	final.Version, final.Status = last, store.StatusSuccess
	requireEnds(t, fast, final)
	require.NoError(t, <-done)
	var got []int64
	for st := range slow {
		got = append(got, st.Version)
	}
	require.Equal(t, []int64{last}, got[len(got)-1:], "the slow reader gets the latest state: %v", got)
	require.LessOrEqual(t, len(got), 2, "and no more than the state it held and the latest: %v", got)
}

// TestWatchExpiryMany lets a task watched three times expire: every watch
// ends.
func TestWatchExpiryMany(t *testing.T) {
	s, mr, _ := newMiniStore(t, redisstore.WithHealthInterval(50*time.Millisecond))
	ctx := t.Context()
	require.NoError(t, put(ctx, s, newState("doc-1"), 50*time.Millisecond))
	chans := watchAll(t, s, "doc-1", 3)
	mr.FastForward(time.Second)
	for _, ch := range chans {
		requireClosed(t, ch)
	}
}

// TestWatchChurn has watchers come and go on a few tasks while they are
// written: each watcher sees versions in strictly increasing order, and
// every channel closes, by its context or after the terminal state. It is
// meant for the race detector and for goleak (TestMain).
func TestWatchChurn(t *testing.T) {
	s, _, c := newMiniStore(t)
	ctx := t.Context()
	const tasks, versions, watchers = 4, 30, 100
	ids := make([]string, tasks)
	for i := range ids {
		ids[i] = fmt.Sprintf("doc-%d", i)
		require.NoError(t, s.Put(ctx, write(newState(ids[i]))))
	}

	var wg sync.WaitGroup
	for i := range watchers {
		wg.Go(func() {
			wctx, cancel := context.WithTimeout(ctx, time.Duration(rand.IntN(50))*time.Millisecond)
			defer cancel()
			ch, err := s.Watch(wctx, ids[i%tasks])
			if err != nil {
				// The context may end before the first state.
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				return
			}
			var last int64
			for st := range ch {
				assert.Greater(t, st.Version, last, "versions strictly increase")
				last = st.Version
			}
		})
	}
	for _, id := range ids {
		wg.Go(func() {
			st := newState(id)
			for st.Version < versions {
				st = next(st, func(s *store.State) {
					if s.Version == versions {
						s.Status = store.StatusSuccess
					}
				})
				if err := s.Put(ctx, write(st)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	require.Eventually(t, func() bool { return c.PoolStats().PubSubStats.Active == 0 }, guard, 5*time.Millisecond)
}
