package redisstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

// holdPipelines is a go-redis hook that holds the first n pipelines sent
// until release is closed, and sends the size of every pipeline on sizes.
type holdPipelines struct {
	n       int
	release chan struct{}
	held    chan struct{} // gets a value as each held pipeline is held
	sizes   chan int

	mu   sync.Mutex
	seen int
}

func (h *holdPipelines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *holdPipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *holdPipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		h.seen++
		hold := h.seen <= h.n
		h.mu.Unlock()
		if hold {
			h.held <- struct{}{}
			<-h.release
		}
		h.sizes <- len(cmds)
		return next(ctx, cmds)
	}
}

// TestBatching holds the pipelines in flight while calls come: those
// calls queue and go together in the next pipeline, each with its own
// outcome; a queued call whose context ends returns at once and is never
// sent.
func TestBatching(t *testing.T) {
	const queued = 10
	s, _, c := newMiniStore(t)
	ctx := t.Context()
	states := make([]store.State, 2+queued)
	for i := range states {
		states[i] = newState(fmt.Sprintf("doc-%02d", i))
		require.NoError(t, s.Put(ctx, write(states[i])))
	}
	hook := &holdPipelines{n: 2, release: make(chan struct{}), held: make(chan struct{}, 2), sizes: make(chan int, 2+queued)}
	c.AddHook(hook)

	errs := make([]error, len(states))
	var wg sync.WaitGroup
	put := func(i int, ctx context.Context, w store.Write) {
		wg.Go(func() { errs[i] = s.Put(ctx, w) })
	}
	for i := range 2 { // the two pipelines in flight, held
		states[i] = next(states[i], nil)
		put(i, ctx, write(states[i]))
		<-hook.held
	}
	const conflicting, canceled = 2, 3
	cctx, cancel := context.WithCancel(ctx)
	for i := 2; i < len(states); i++ {
		w := write(next(states[i], nil))
		switch i {
		case conflicting: // computed from version 2, not the stored 1
			w = write(next(next(states[i], nil), nil))
		case canceled:
			put(i, cctx, w)
			continue
		default:
			states[i] = w.State
		}
		put(i, ctx, w)
	}
	require.Eventually(t, func() bool { return redisstore.Queued(s) == queued }, 10*time.Second, time.Millisecond,
		"the calls made while two pipelines are in flight queue")
	cancel()
	require.Eventually(t, func() bool { return redisstore.Queued(s) == queued-1 }, 10*time.Second, time.Millisecond,
		"a call whose context ends leaves the queue")
	close(hook.release)
	wg.Wait()

	assert.ElementsMatch(t, []int{1, 1, queued - 1}, []int{<-hook.sizes, <-hook.sizes, <-hook.sizes},
		"the queued calls go in one pipeline")
	for i, err := range errs {
		switch i {
		case conflicting:
			require.ErrorIs(t, err, store.ErrConflict, "call %d", i)
		case canceled:
			require.ErrorIs(t, err, context.Canceled, "call %d", i)
		default:
			require.NoError(t, err, "call %d", i)
		}
		got, err := s.Get(ctx, states[i].ID)
		require.NoError(t, err)
		require.True(t, states[i].Equal(got), "task %d is what its call wrote, or as it was", i)
	}
}

// TestBatchingFillsPipelines holds the pipelines in flight while calls
// come. Beyond the two places any pipeline may take, a pipeline goes only
// with 16 calls, and no more than 8 are in flight: the calls beyond wait
// for an answer, and each call still gets its own outcome.
func TestBatchingFillsPipelines(t *testing.T) {
	const full, places = 16, 8
	s, _, c := newMiniStore(t)
	ctx := t.Context()
	states := make([]store.State, 2+full*(places-1))
	for i := range states {
		states[i] = newState(fmt.Sprintf("doc-%03d", i))
		require.NoError(t, s.Put(ctx, write(states[i])))
	}
	hook := &holdPipelines{n: places, release: make(chan struct{}), held: make(chan struct{}, places),
		sizes: make(chan int, 3*len(states))}
	c.AddHook(hook)
	release := sync.OnceFunc(func() { close(hook.release) })
	t.Cleanup(release) // should the test stop early
	held := func(msg string) {
		t.Helper()
		select {
		case <-hook.held:
		case <-time.After(10 * time.Second):
			t.Fatal(msg)
		}
	}

	var wg sync.WaitGroup
	errs := make([]error, len(states))
	put := func(i int) {
		states[i] = next(states[i], nil)
		w := write(states[i])
		wg.Go(func() { errs[i] = s.Put(ctx, w) })
	}
	for i := range 2 { // alone, each in a place of its own
		put(i)
		held("a call alone goes at once")
	}
	i := 2
	for pipeline := 3; pipeline <= places; pipeline++ {
		for range full - 1 {
			put(i)
			i++
		}
		require.Eventually(t, func() bool { return redisstore.Queued(s) == full-1 }, 10*time.Second, time.Millisecond,
			"calls queue while two pipelines are in flight")
		require.Equal(t, pipeline-1, redisstore.Sending(s), "%d calls do not make a pipeline of their own", full-1)
		put(i) // the 16th
		i++
		held("16 queued calls go in a pipeline of their own")
		require.Equal(t, pipeline, redisstore.Sending(s), "the 16th call sends the queue")
	}
	last := len(states) - full
	require.Equal(t, last, i)
	for ; i < len(states); i++ {
		put(i)
	}
	require.Eventually(t, func() bool { return redisstore.Queued(s) == full }, 10*time.Second, time.Millisecond,
		"calls queue while %d pipelines are in flight", places)
	require.Equal(t, places, redisstore.Sending(s), "no more than %d pipelines are in flight", places)
	release()
	wg.Wait()

	sizes := make([]int, 0, places+1)
	for range places + 1 {
		sizes = append(sizes, <-hook.sizes)
	}
	want := []int{1, 1}
	for range places - 1 {
		want = append(want, full)
	}
	assert.ElementsMatch(t, want, sizes, "each pipeline beyond the first two holds 16 calls")
	for i, err := range errs {
		require.NoError(t, err, "call %d", i)
		got, err := s.Get(ctx, states[i].ID)
		require.NoError(t, err)
		require.True(t, states[i].Equal(got), "task %d is what its call wrote", i)
	}
	require.Zero(t, redisstore.Sending(s), "every place is given up")
}
