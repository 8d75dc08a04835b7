package memstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/store/storetest"
)

// newTestStore returns a store on a manual clock whose background sweep
// (on real time) never runs during a test, so tests sweep when they choose.
func newTestStore(t testing.TB, opts ...Option) (*Store, *storetest.Clock) {
	t.Helper()
	clock := storetest.NewClock(time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC))
	s, err := New(append([]Option{WithClock(clock.Now), WithSweepInterval(time.Hour)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, clock
}

func task(id string) store.State {
	return store.State{ID: id, Status: store.StatusRunning, Version: 1}
}

func TestSweepRemovesOnlyExpired(t *testing.T) {
	s, clock := newTestStore(t)
	ctx := context.Background()
	for i := range 1000 {
		ttl := time.Hour
		if i%2 == 0 {
			ttl = 2 * time.Hour
		}
		require.NoError(t, s.Put(ctx, store.Write{State: task(fmt.Sprint(i)), TTL: ttl}))
	}
	require.NoError(t, s.Put(ctx, store.Write{State: task("forever"), TTL: 0}))
	require.Equal(t, 1001, s.Len())

	clock.Advance(90 * time.Minute)
	assert.Equal(t, 500, s.sweepExpired(), "tasks past their TTL are removed")
	assert.Equal(t, 501, s.Len())
	_, err := s.Get(ctx, "2")
	require.NoError(t, err, "a task within its TTL survives the sweep")

	clock.Advance(90 * time.Minute)
	assert.Equal(t, 500, s.sweepExpired())
	assert.Equal(t, 1, s.Len(), "a task without a TTL never expires")
	assert.Zero(t, s.sweepExpired())
}

func TestMaxTasksHoldsUnderFlood(t *testing.T) {
	const limit = 100
	s, clock := newTestStore(t, WithMaxTasks(limit))
	ctx := context.Background()
	for i := range 10 * limit {
		clock.Advance(time.Second)
		require.NoError(t, s.Put(ctx, store.Write{State: task(fmt.Sprint(i)), TTL: time.Hour}))
		require.LessOrEqual(t, s.Len(), limit, "the store never holds more than its limit")
	}
	_, err := s.Get(ctx, fmt.Sprint(10*limit-1))
	require.NoError(t, err, "the newest task is kept")
	_, err = s.Get(ctx, "0")
	require.ErrorIs(t, err, store.ErrNotFound, "the task that expires soonest is evicted first")
	require.ErrorIs(t, s.Put(ctx, store.Write{State: store.State{ID: "0", Status: store.StatusRunning, Version: 2}, Prev: 1, TTL: time.Hour}), store.ErrConflict,
		"a write to an evicted task is a conflict")
}

func TestCloseEndsWatchesAndCalls(t *testing.T) {
	s, err := New()
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.Put(ctx, store.Write{State: task("a"), TTL: 0}))
	ch, err := s.Watch(ctx, "a")
	require.NoError(t, err)
	<-ch
	require.NoError(t, s.Close())
	_, open := <-ch
	assert.False(t, open, "Close closes every watch channel")
	_, err = s.Get(ctx, "a")
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorIs(t, s.Put(ctx, store.Write{State: task("b"), TTL: 0}), store.ErrUnavailable)
	require.NoError(t, s.Close(), "Close is idempotent")
}

func TestWatchOfExpiredTask(t *testing.T) {
	s, clock := newTestStore(t)
	ctx := context.Background()
	require.NoError(t, s.Put(ctx, store.Write{State: task("a"), TTL: time.Minute}))
	ch, err := s.Watch(ctx, "a")
	require.NoError(t, err)
	<-ch
	clock.Advance(2 * time.Minute)
	_, err = s.Watch(ctx, "a")
	require.ErrorIs(t, err, store.ErrNotFound)
	s.sweepExpired()
	_, open := <-ch
	assert.False(t, open, "the sweep closes the watches of the tasks it removes")
}

// TestCloseRacingWatch closes the store while watches are being opened:
// every channel a Watch returned is closed once Close has returned.
func TestCloseRacingWatch(t *testing.T) {
	for range 30 {
		s, err := New()
		require.NoError(t, err)
		ctx := context.Background()
		require.NoError(t, s.Put(ctx, store.Write{State: task("a")}))
		chans := make(chan (<-chan store.State), 64)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range cap(chans) {
			wg.Go(func() {
				<-start
				if ch, err := s.Watch(ctx, "a"); err == nil {
					chans <- ch
				} else {
					assert.ErrorIs(t, err, store.ErrUnavailable)
				}
			})
		}
		close(start)
		require.NoError(t, s.Close())
		wg.Wait()
		close(chans)
		for ch := range chans {
			for range ch { //nolint:revive // drain: the channel must be closed, or this blocks
			}
		}
	}
}

func TestOptionsRejectBadValues(t *testing.T) {
	for _, opt := range []Option{WithClock(nil), WithMaxTasks(-1), WithSweepInterval(0)} {
		_, err := New(opt)
		require.Error(t, err)
	}
}

func TestHeapKeepsOrder(t *testing.T) {
	var h expiryHeap
	var entries []*entry
	r := rand.New(rand.NewPCG(1, 2))
	check := func() {
		for i := range h {
			require.Equal(t, i, h[i].e.index, "each entry knows its index")
			if i > 0 {
				require.LessOrEqual(t, h[(i-1)/2].at, h[i].at, "a parent expires no later than its children")
			}
		}
	}
	for range 5000 {
		switch op := r.IntN(3); {
		case op == 0 || len(entries) == 0:
			e := &entry{}
			h.push(e, r.Int64N(1000))
			entries = append(entries, e)
		case op == 1:
			h.update(entries[r.IntN(len(entries))].index, r.Int64N(1000))
		default:
			i := r.IntN(len(entries))
			h.remove(entries[i].index)
			entries = append(entries[:i], entries[i+1:]...)
		}
		check()
	}
}

// TestSameStepsSeesEveryField changes each field of a step, and of a
// sub-step, alone: sameSteps must see each change, or a write that makes
// only that change would keep the stored steps and lose it.
func TestSameStepsSeesEveryField(t *testing.T) {
	at := time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC)
	sub := store.SubStep{Name: "chunk", Status: store.StepRunning, StartedAt: at}
	step := store.Step{Name: "embed", Status: store.StepRunning, StartedAt: at, Attempt: 1,
		Progress: store.Progress{Done: 1, Total: 2, Message: "m"}, SubSteps: []store.SubStep{sub}}
	steps := func(s store.Step) []store.Step { return []store.Step{{Name: "first"}, s} }
	require.True(t, sameSteps(steps(step), steps(step)))

	for i := range reflect.TypeFor[store.Step]().NumField() {
		changed := step
		changed.SubSteps = slices.Clone(step.SubSteps)
		f := reflect.ValueOf(&changed).Elem().Field(i)
		changeValue(t, f)
		assert.False(t, sameSteps(steps(step), steps(changed)), "a change of Step.%s alone", reflect.TypeFor[store.Step]().Field(i).Name)
	}
	for i := range reflect.TypeFor[store.SubStep]().NumField() {
		changed := step
		changed.SubSteps = slices.Clone(step.SubSteps)
		changeValue(t, reflect.ValueOf(&changed.SubSteps[0]).Elem().Field(i))
		assert.False(t, sameSteps(steps(step), steps(changed)), "a change of SubStep.%s alone", reflect.TypeFor[store.SubStep]().Field(i).Name)
	}

	local := step
	local.StartedAt = at.In(time.FixedZone("CET", 3600))
	assert.False(t, sameSteps(steps(step), steps(local)), "the same instant in another location is kept as written")
	assert.False(t, sameSteps(steps(step), steps(step)[:1]), "a step fewer")
}

// changeValue sets v, a field of a step or a sub-step, to another value.
func changeValue(t *testing.T, v reflect.Value) {
	t.Helper()
	switch x := v.Addr().Interface().(type) {
	case *time.Time:
		*x = x.Add(time.Millisecond)
	case *store.Progress:
		x.Done++
	case *[]store.SubStep:
		*x = append(*x, store.SubStep{Name: "added"})
	default:
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "!")
		case reflect.Int:
			v.SetInt(v.Int() + 1)
		default:
			t.Fatalf("no change known for a field of type %s: teach changeValue, and sameSteps", v.Type())
		}
	}
}

// TestWriteKeepingStepsKeepsNoMemory writes a task twice with the same
// steps, the second write keeping the store's own: a caller that then
// changes the steps it wrote changes nothing stored, and a reader that
// changes those it read neither.
func TestWriteKeepingStepsKeepsNoMemory(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	st := task("a")
	st.Steps = []store.Step{{Name: "a", Status: store.StepRunning, SubSteps: []store.SubStep{{Name: "a1", Status: store.StepRunning}}}}
	require.NoError(t, s.Put(ctx, store.Write{State: st}))
	v2 := st.Clone()
	v2.Version, v2.Progress = 2, store.Progress{Done: 1}
	require.NoError(t, s.Put(ctx, store.Write{State: v2, Prev: 1}))
	want := v2.Clone()

	v2.Steps[0].Status = store.StepFailed
	v2.Steps[0].SubSteps[0].Status = store.StepFailed
	got, err := s.Get(ctx, "a")
	require.NoError(t, err)
	require.True(t, want.Equal(got), "changing a state after Put must not change the stored task")

	got.Steps[0].Status = store.StepSkipped
	got.Steps[0].SubSteps[0].Status = store.StepSkipped
	again, err := s.Get(ctx, "a")
	require.NoError(t, err)
	require.True(t, want.Equal(again), "changing a state read must not change the stored task")
}
