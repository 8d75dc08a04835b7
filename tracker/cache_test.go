package tracker

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store"
)

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}

// newCacheTracker returns a Tracker with opts over a new memstore, wrapped
// by wrap if it is not nil.
func newCacheTracker(t *testing.T, wrap func(*memstore.Store) store.Store, opts ...Option) *Tracker {
	t.Helper()
	mem, err := memstore.New()
	require.NoError(t, err)
	t.Cleanup(func() { mem.Close() })
	var s store.Store = mem
	if wrap != nil {
		s = wrap(mem)
	}
	tr, err := New(s, opts...)
	require.NoError(t, err)
	return tr
}

func TestCacheIsBounded(t *testing.T) {
	tr := newCacheTracker(t, nil)
	ctx := context.Background()

	for i := range 2 * maxCached {
		require.NoError(t, tr.Create(ctx, strconv.Itoa(i)))
	}
	assert.LessOrEqual(t, tr.cache.len(), maxCached+cacheShards, "tasks that wait are cached only up to the limit")
	for i := range 2 * maxCached {
		require.NoError(t, tr.Cancel(ctx, strconv.Itoa(i), nil), "a task that is no longer cached is read first")
	}
	assert.Zero(t, tr.cache.len(), "ended tasks are not cached")
}

// TestReusedEntriesStartEmpty records tasks one after the other, each with
// its own steps, so that each reuses the cache entry (and its memory) of
// the one before: none may inherit anything of another.
func TestReusedEntriesStartEmpty(t *testing.T) {
	tr := newCacheTracker(t, nil)
	ctx := context.Background()

	plans := [][]string{{"a", "b", "c"}, {"x"}, nil, {"c", "b"}}
	for i := range 20 {
		id, plan := strconv.Itoa(i), plans[i%len(plans)]
		require.NoError(t, tr.Create(ctx, id, plan...))
		if i%2 == 0 {
			// A refused create must leave no trace either.
			require.ErrorIs(t, tr.Create(ctx, id, "z"), store.ErrExists)
		}
		require.NoError(t, tr.Start(ctx, id))
		for _, step := range plan {
			require.NoError(t, tr.SucceedStep(ctx, id, step))
		}
		require.NoError(t, tr.Succeed(ctx, id))
		st, err := tr.Get(ctx, id)
		require.NoError(t, err)
		require.Len(t, st.Steps, len(plan), "task %s", id)
		for j, step := range st.Steps {
			assert.Equal(t, plan[j], step.Name)
			assert.Equal(t, store.StepSuccess, step.Status)
		}
		assert.Equal(t, int64(3+len(plan)), st.Version, "task %s", id)
	}
}

// liveContextStore checks that the context of each call it serves stays
// live until the call returns, while other calls come and go.
type liveContextStore struct {
	store.Store
	t *testing.T
}

func (s liveContextStore) Put(ctx context.Context, st store.State, ttl time.Duration) error {
	done := ctx.Done() // makes the context arm its timer
	runtime.Gosched()  // lets other writers of the task start and end
	select {
	case <-done:
		s.t.Errorf("Put of %s version %d: context ended during the call: %v", st.ID, st.Version, ctx.Err())
	default:
	}
	return s.Store.Put(ctx, st, ttl)
}

// TestWriteContextLivesUntilTheStoreReturns has writers of one task, which
// share its cache entry and so its reused context, check that each call's
// context stays live while the store uses it.
func TestWriteContextLivesUntilTheStoreReturns(t *testing.T) {
	tr := newCacheTracker(t, func(mem *memstore.Store) store.Store { return liveContextStore{Store: mem, t: t} })
	ctx := context.Background()
	require.NoError(t, tr.Create(ctx, "doc"))

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 100 {
				assert.NoError(t, tr.SetProgress(ctx, "doc", store.Progress{Done: int64(i)}))
			}
		})
	}
	wg.Wait()
	st, err := tr.Get(ctx, "doc")
	require.NoError(t, err)
	assert.Equal(t, int64(1+8*100), st.Version, "every write is recorded")
}

// TestAbandonedWaitsLeaveTheEntryFree checks that a writer that gives up
// waiting, whether or not the entry was already on its way to it, leaves
// the entry to the others, and forgets it when nobody is left.
func TestAbandonedWaitsLeaveTheEntryFree(t *testing.T) {
	c := newCache()
	holder, held := c.tryLock("doc")
	require.True(t, held)
	first, held := c.tryLock("doc")
	require.False(t, held, "the entry is held")
	second, held := c.tryLock("doc")
	require.False(t, held, "the entry is held")

	c.abandon("doc", first) // gives up while the holder still holds it
	c.unlock("doc", holder) // hands it to the one left waiting
	require.NoError(t, c.wait(t.Context(), "doc", second), "the remaining waiter gets the entry")

	last, held := c.tryLock("doc")
	require.False(t, held, "the entry is held")
	c.unlock("doc", second) // hands it to last...
	c.abandon("doc", last)  // ...which gives up with the entry on its way
	assert.Zero(t, c.len(), "an entry nobody holds or waits for is forgotten")
	_, held = c.tryLock("doc")
	assert.True(t, held, "the entry is free")
}

// TestWritersGivingUpUnderContention has many writers of one task, some of
// which give up waiting for the others at once: every write that returned
// nil is recorded, and the task's entry is free and forgotten at the end.
func TestWritersGivingUpUnderContention(t *testing.T) {
	// The calls that give up are expected: they are not worth a log line.
	tr := newCacheTracker(t, nil, WithErrorHandler(func(context.Context, error) {}))
	ctx := context.Background()
	require.NoError(t, tr.Create(ctx, "doc"))
	require.NoError(t, tr.Start(ctx, "doc"))

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	var wg sync.WaitGroup
	var written atomic.Int64
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				callCtx := ctx
				if (g+i)%3 == 0 {
					callCtx = canceled // gives up if it has to wait
				}
				err := tr.SetProgress(callCtx, "doc", store.Progress{Done: int64(i)})
				if err == nil {
					written.Add(1)
				} else {
					assert.ErrorIs(t, err, context.Canceled)
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, tr.Succeed(ctx, "doc"), "the entry is free for the next writer")
	st, err := tr.Get(ctx, "doc")
	require.NoError(t, err)
	assert.Equal(t, 3+written.Load(), st.Version, "every acknowledged write is recorded once")
	assert.Zero(t, tr.cache.len(), "the ended task's entry is forgotten")
}
