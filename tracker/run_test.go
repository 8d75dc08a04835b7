package tracker_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// faultyStore wraps a store with faults a test chooses, call by call.
type faultyStore struct {
	store.Store
	mu sync.Mutex
	// fault, if set, is asked before each call ("get" or "put") what to
	// do; w is the write of a put.
	fault func(op string, w store.Write) fault
}

// A fault is what a faultyStore does with a call.
type fault int

const (
	pass fault = iota // make the call
	down              // fail it with ErrUnavailable, without making it
	lose              // make it, then fail it with ErrUnavailable: a lost reply
)

var errDown = errors.Join(store.ErrUnavailable, errors.New("connection refused"))

func (s *faultyStore) decide(op string, w store.Write) fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fault == nil {
		return pass
	}
	return s.fault(op, w)
}

// set makes fault decide the faults from now on; nil passes every call.
func (s *faultyStore) set(fault func(op string, w store.Write) fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = fault
}

func (s *faultyStore) Get(ctx context.Context, id string) (store.State, error) {
	switch s.decide("get", store.Write{}) {
	case down:
		return store.State{}, errDown
	case lose:
		_, _ = s.Store.Get(ctx, id)
		return store.State{}, errDown
	}
	return s.Store.Get(ctx, id)
}

func (s *faultyStore) Put(ctx context.Context, w store.Write) error {
	switch s.decide("put", w) {
	case down:
		return errDown
	case lose:
		if err := s.Store.Put(ctx, w); err != nil {
			return err
		}
		return errDown
	}
	return s.Store.Put(ctx, w)
}

// always returns a fault function that answers f to every call.
func always(f fault) func(string, store.Write) fault {
	return func(string, store.Write) fault { return f }
}

// TestZombieRunCannotWriteIntoTheNextAttempt: a run is inside a step when
// its task is canceled and retried, and a second run does the new attempt.
// When the first run's step returns, its writes are refused as stale, and
// the second attempt runs all its steps.
func TestZombieRunCannotWriteIntoTheNextAttempt(t *testing.T) {
	for _, twoTrackers := range []bool{false, true} {
		name := map[bool]string{false: "OneTracker", true: "TwoTrackers"}[twoTrackers]
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			ctx := t.Context()
			other := f.tr
			if twoTrackers {
				other = f.tracker(t, f.store)
			}
			f.create(t, "doc", "a", "b")
			zombie, err := f.tr.Start(ctx, "doc", tracker.StartStep("a"))
			require.NoError(t, err)

			require.NoError(t, other.Apply(ctx, "doc", tracker.Cancel(errors.New("too slow"))))
			require.NoError(t, other.Apply(ctx, "doc", tracker.Retry()))
			second, err := other.Start(ctx, "doc", tracker.StartStep("a"))
			require.NoError(t, err)

			err = zombie.Apply(ctx, tracker.SucceedStep("a"), tracker.StartStep("b"))
			require.ErrorIs(t, err, store.ErrStale, "the first run's step returns: its write is stale")
			require.ErrorIs(t, zombie.Apply(ctx, tracker.Succeed()), store.ErrStale, "and so is every later one")

			require.NoError(t, second.Apply(ctx, tracker.SucceedStep("a"), tracker.StartStep("b")))
			require.NoError(t, second.Apply(ctx, tracker.SucceedStep("b"), tracker.Succeed()))
			st := f.get(t, "doc")
			assert.Equal(t, 2, st.Attempt)
			assert.Equal(t, store.StatusSuccess, st.Status)
			for _, s := range st.Steps {
				assert.Equal(t, store.StepSuccess, s.Status, s.Name)
				assert.Equal(t, 1, s.Attempt, s.Name)
			}
		})
	}
}

// TestRecreatedTaskIsNotOverwritten: tracker A's run holds version 4 of a
// task; the task is lost, tracker B creates it anew and takes it to
// version 4 too. A's next write must not replace B's task. It runs on
// memstore, on redisstore over miniredis, and over the Redis server named
// by TASKSTATUS_REDIS_ADDR when it is set.
func TestRecreatedTaskIsNotOverwritten(t *testing.T) {
	for name, open := range storesUnderTest() {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := t.Context()
			errs := func(context.Context, error) {}
			a, err := tracker.New(s, tracker.WithErrorHandler(errs))
			require.NoError(t, err)
			b, err := tracker.New(s, tracker.WithErrorHandler(errs))
			require.NoError(t, err)
			require.NoError(t, a.Apply(ctx, "x", tracker.Create("a1")))
			runA, err := a.Start(ctx, "x", tracker.StartStep("a1"))
			require.NoError(t, err)
			require.NoError(t, runA.Apply(ctx, tracker.SucceedStep("a1")))
			require.NoError(t, runA.Apply(ctx, tracker.SetProgress(store.Progress{Done: 1})))

			require.NoError(t, s.Delete(ctx, "x")) // or FLUSHDB, a restart, TTL expiry
			require.NoError(t, b.Apply(ctx, "x", tracker.Create("b1")))
			runB, err := b.Start(ctx, "x", tracker.StartStep("b1"))
			require.NoError(t, err)
			require.NoError(t, runB.Apply(ctx, tracker.SetResult(map[string]any{"owner": "B"})))
			require.NoError(t, runB.Apply(ctx, tracker.SetProgress(store.Progress{Done: 2})))
			want, err := s.Get(ctx, "x")
			require.NoError(t, err)
			require.Equal(t, int64(4), want.Version, "both tasks reached version 4")

			err = runA.Apply(ctx, tracker.StartStep("a2"))
			require.ErrorIs(t, err, store.ErrStale, "A's run recorded another incarnation of x")
			got, err := s.Get(ctx, "x")
			require.NoError(t, err)
			assert.True(t, want.Equal(got), "B's task is as B left it")
			require.NoError(t, runB.Apply(ctx, tracker.SucceedStep("b1"), tracker.Succeed()))
			require.NoError(t, a.Close(ctx))
			require.NoError(t, b.Close(ctx))
		})
	}
}

// storesUnderTest returns makers of the stores some tests run on:
// memstore, redisstore over miniredis, and redisstore over the Redis
// server named by TASKSTATUS_REDIS_ADDR if it is set (with keys of the
// test's own, deleted when it ends).
func storesUnderTest() map[string]func(t *testing.T) store.Store {
	stores := map[string]func(t *testing.T) store.Store{
		"memstore": func(t *testing.T) store.Store {
			s, err := memstore.New()
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, s.Close()) })
			return s
		},
		"miniredis": func(t *testing.T) store.Store {
			return redisStore(t, miniredis.RunT(t).Addr(), "")
		},
	}
	if addr := os.Getenv("TASKSTATUS_REDIS_ADDR"); addr != "" {
		stores["redis"] = func(t *testing.T) store.Store {
			return redisStore(t, addr, fmt.Sprintf("tracker-test-%x:", rand.Uint64()))
		}
	}
	return stores
}

// redisStore returns a redisstore over the server at addr, with prefix
// (the default if ""), whose keys are deleted and which is closed when t
// ends.
func redisStore(t *testing.T, addr, prefix string) store.Store {
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true, ContextTimeoutEnabled: true})
	require.NoError(t, c.Ping(t.Context()).Err(), "no Redis answers at %s", addr)
	opts := []redisstore.Option{}
	if prefix != "" {
		opts = append(opts, redisstore.WithPrefix(prefix))
	}
	s, err := redisstore.New(c, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		if prefix != "" {
			keys, err := c.Keys(context.Background(), prefix+"*").Result() // a test's few keys
			if assert.NoError(t, err) && len(keys) > 0 {
				assert.NoError(t, c.Del(context.Background(), keys...).Err())
			}
		}
		_ = s.Close()
		_ = c.Close()
	})
	return s
}

// TestLostTaskIsWrittenAgain: the store loses a task whose run goes on (a
// Redis restarted without persistence). The run's next write creates it
// again from what the run recorded, with versions that go on.
func TestLostTaskIsWrittenAgain(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.create(t, "doc", "a", "b")
	run, err := f.tr.Start(ctx, "doc", tracker.StartStep("a"))
	require.NoError(t, err)
	require.NoError(t, run.Apply(ctx, tracker.SetResult(map[string]any{"n": 1})))
	before := f.get(t, "doc")

	require.NoError(t, f.mem.Delete(ctx, "doc"))
	require.NoError(t, run.Apply(ctx, tracker.SucceedStep("a"), tracker.StartStep("b")))
	st := f.get(t, "doc")
	assert.Equal(t, before.Version+1, st.Version, "versions go on from those readers knew")
	assert.Equal(t, before.Incarnation, st.Incarnation)
	assert.Equal(t, before.CreatedAt, st.CreatedAt)
	assert.JSONEq(t, `1`, string(st.Result["n"]), "what the run recorded before the loss is written again")
	a, _ := st.Step("a")
	b, _ := st.Step("b")
	assert.Equal(t, store.StepSuccess, a.Status)
	assert.Equal(t, store.StepRunning, b.Status)
	require.NoError(t, run.Apply(ctx, tracker.SucceedStep("b"), tracker.Succeed()))
}

// TestResentWriteIsAppliedOnce: the reply to a write is lost, and another
// writer writes the task before the tracker resends it. The resend is
// recognised as applied: once, and the call reports success.
func TestResentWriteIsAppliedOnce(t *testing.T) {
	f := newFixture(t)
	fs := &faultyStore{Store: f.store}
	tr := f.tracker(t, fs)
	other := f.tracker(t, f.store)
	ctx := t.Context()
	require.NoError(t, tr.Apply(ctx, "doc", tracker.Create("a")))
	run, err := tr.Start(ctx, "doc", tracker.StartStep("a"))
	require.NoError(t, err)

	lost := false
	fs.set(func(op string, w store.Write) fault {
		if op != "put" || lost {
			return pass
		}
		lost = true
		// Apply the write, then let another process write before the
		// reply would have come.
		require.NoError(t, f.store.Put(ctx, w))
		require.NoError(t, other.Apply(ctx, "doc", tracker.SetResult(map[string]any{"other": true})))
		return down // the write was applied above: its reply is lost
	})
	require.NoError(t, run.Apply(ctx, tracker.RetryStep("a", errors.New("first try"))), "a resend recognised as applied reports success")
	require.NoError(t, run.Apply(ctx, tracker.SucceedStep("a"), tracker.Succeed()))
	st := f.get(t, "doc")
	a, _ := st.Step("a")
	assert.Equal(t, 2, a.Attempt, "the step retry was applied once, not twice")
	assert.Equal(t, store.StatusSuccess, st.Status)
	assert.JSONEq(t, `true`, string(st.Result["other"]), "the other writer's change is kept")
	assert.Empty(t, f.reported())
}

// TestWriteAfterAReadIsMadeAtItsTime: a Run's write conflicts with another
// writer's, and reading the task again takes a second. The write that
// follows is made a second after the changes: its time and the lease it
// renews are those of the write, not of the changes.
func TestWriteAfterAReadIsMadeAtItsTime(t *testing.T) {
	f := newFixture(t)
	fs := &faultyStore{Store: f.store}
	tr := f.tracker(t, fs, tracker.WithLease(time.Minute))
	other := f.tracker(t, f.store)
	ctx := t.Context()
	require.NoError(t, tr.Apply(ctx, "doc", tracker.Create("a")))
	run, err := tr.Start(ctx, "doc")
	require.NoError(t, err)
	require.NoError(t, other.Apply(ctx, "doc", tracker.SetResult(map[string]any{"other": true})))

	fs.set(func(op string, _ store.Write) fault {
		if op == "get" {
			f.clock.Advance(time.Second)
		}
		return pass
	})
	written := f.clock.Now().Add(time.Second)
	require.NoError(t, run.Apply(ctx, tracker.SetProgress(store.Progress{Done: 1})))
	st := f.get(t, "doc")
	assert.Equal(t, int64(1), st.Progress.Done)
	assert.Truef(t, st.UpdatedAt.Equal(written), "updated at %v, want the time of the write, %v", st.UpdatedAt, written)
	assert.Truef(t, st.LeaseUntil.Equal(written.Add(time.Minute)), "lease until %v, want a minute after the write, %v", st.LeaseUntil, written.Add(time.Minute))
}

// pollingStore answers writes only when their context ends, which it
// learns by polling Err, never Done: a store that ignores the context's
// channel.
type pollingStore struct {
	store.Store
}

func (pollingStore) Put(ctx context.Context, _ store.Write) error {
	for ctx.Err() == nil {
		runtime.Gosched()
	}
	return ctx.Err()
}

// TestTimeoutStopsAStoreThatPollsErr: each call has a context of its own
// whose Err reports the tracker's timeout, without anyone asking Done.
func TestTimeoutStopsAStoreThatPollsErr(t *testing.T) {
	f := newFixture(t)
	const timeout = 200 * time.Millisecond
	tr := f.tracker(t, pollingStore{Store: f.store}, tracker.WithTimeout(timeout))
	start := time.Now()
	err := tr.Apply(t.Context(), "doc", tracker.Create())
	elapsed := time.Since(start)
	require.ErrorIs(t, err, store.ErrUnavailable, "a store that does not answer in time is unavailable")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, elapsed, 2*timeout, "the call ends within twice its timeout")
}

// contextStore keeps the context of every call, as a store that logs
// later would.
type contextStore struct {
	store.Store
	mu   sync.Mutex
	ctxs []context.Context
	ids  []string // the correlation id each call was made for
}

func (c *contextStore) keep(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ctxs = append(c.ctxs, ctx)
	c.ids = append(c.ids, tracker.CorrelationID(ctx))
}

func (c *contextStore) Get(ctx context.Context, id string) (store.State, error) {
	c.keep(ctx)
	return c.Store.Get(ctx, id)
}

func (c *contextStore) Put(ctx context.Context, w store.Write) error {
	c.keep(ctx)
	return c.Store.Put(ctx, w)
}

// TestNoTwoCallsShareAContext: a store may keep the context of a call; it
// still reads that call's values, and its deadline ends.
func TestNoTwoCallsShareAContext(t *testing.T) {
	f := newFixture(t)
	cs := &contextStore{Store: f.store}
	tr := f.tracker(t, cs)
	for _, id := range []string{"req-1", "req-2", "req-3"} {
		ctx := tracker.ContextWithCorrelationID(t.Context(), id)
		task := "doc-" + id
		require.NoError(t, tr.Apply(ctx, task, tracker.Create("a")))
		run, err := tr.Start(ctx, task, tracker.StartStep("a"))
		require.NoError(t, err)
		require.NoError(t, run.Apply(ctx, tracker.SucceedStep("a")))
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	require.Len(t, cs.ctxs, 9)
	for i, ctx := range cs.ctxs {
		for _, other := range cs.ctxs[i+1:] {
			require.NotEqual(t, ctx, other, "two calls shared a context")
		}
		assert.Equal(t, cs.ids[i], tracker.CorrelationID(ctx), "a kept context reads its own call's values")
		_, ok := ctx.Deadline()
		assert.True(t, ok, "every store call is bounded")
		assert.Error(t, ctx.Err(), "a call's context ends when the call does")
	}
}

// TestStartWhileTheStoreIsDown: a run may start while the store does not
// answer; its start and changes are written once it does.
func TestStartWhileTheStoreIsDown(t *testing.T) {
	f := newFixture(t)
	fs := &faultyStore{Store: f.store}
	ctx := t.Context()
	f.create(t, "doc", "a")
	tr := f.tracker(t, fs) // knows nothing of the task
	fs.set(always(down))
	run, err := tr.Start(ctx, "doc", tracker.StartStep("a"))
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.NotNil(t, run, "the work may go on")
	require.ErrorIs(t, run.Apply(ctx, tracker.SucceedStep("a")), store.ErrUnavailable)
	require.ErrorIs(t, run.Apply(ctx, tracker.SetResult(map[string]any{"n": 1})), store.ErrUnavailable, "kept too")
	reported := len(f.reported())

	fs.set(nil)
	require.NoError(t, tr.Close(ctx))
	assert.Len(t, f.reported(), reported, "the changes kept are reported once, when the wait begins")
	st := f.get(t, "doc")
	assert.Equal(t, store.StatusRunning, st.Status)
	a, _ := st.Step("a")
	assert.Equal(t, store.StepSuccess, a.Status)
	assert.JSONEq(t, `1`, string(st.Result["n"]))
}

// TestStartWhileDownOfATaskAnotherRunStarted: the start kept while the
// store was down turns out to be refused (another run started the task):
// none of the run's changes is written, and the error handler is told.
func TestStartWhileDownOfATaskAnotherRunStarted(t *testing.T) {
	f := newFixture(t)
	fs := &faultyStore{Store: f.store}
	ctx := t.Context()
	f.create(t, "doc", "a")
	tr := f.tracker(t, fs)
	fs.set(always(down))
	run, err := tr.Start(ctx, "doc", tracker.StartStep("a"))
	require.ErrorIs(t, err, store.ErrUnavailable)
	_, err = f.tr.Start(ctx, "doc")
	require.NoError(t, err, "another run starts the task meanwhile")
	before := f.get(t, "doc")
	reported := len(f.reported())

	fs.set(nil)
	require.NoError(t, tr.Close(ctx))
	assert.True(t, before.Equal(f.get(t, "doc")), "the refused run wrote nothing")
	require.Greater(t, len(f.reported()), reported, "the dropped start is reported")
	require.ErrorIs(t, f.reported()[len(f.reported())-1], store.ErrInvalidTransition)
	require.ErrorIs(t, run.Apply(ctx, tracker.SucceedStep("a")), store.ErrInvalidTransition, "the run records nothing more")
}

// TestConcurrentCallsOfARun: calls of one Run made at once are all
// recorded, in an order of the calls, and share writes.
func TestConcurrentCallsOfARun(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	run := f.start(t, "doc")
	var calls atomic.Int64
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			calls.Add(1)
			assert.NoError(t, run.Apply(ctx, tracker.SetResult(map[string]any{string(rune('a'+i%26)) + string(rune('a'+i/26)): i})))
		})
	}
	wg.Wait()
	st := f.get(t, "doc")
	assert.Len(t, st.Result, 100)
	assert.LessOrEqual(t, f.store.puts.Load(), int64(2+100))
}
