package tracker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/store/storetest"
)

// renewingStore renews the lease of task renew, through run, once List
// has returned it: a worker's heartbeat that comes between a rescuer's
// listing and its write.
type renewingStore struct {
	*memstore.Store
	run   *Run
	once  sync.Once
	renew string
}

func (s *renewingStore) List(ctx context.Context, f store.Filter, size int, token string) (store.Page, error) {
	page, err := s.Store.List(ctx, f, size, token)
	for _, st := range page.Tasks {
		if st.ID == s.renew {
			s.once.Do(func() { err = errors.Join(err, s.run.Apply(ctx, Heartbeat())) })
		}
	}
	return page, err
}

func TestRescue(t *testing.T) {
	clock := storetest.NewClock(time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC))
	mem, err := memstore.New(memstore.WithClock(clock.Now))
	require.NoError(t, err)
	defer mem.Close()
	s := &renewingStore{Store: mem, renew: "renewed"}
	newTracker := func() *Tracker {
		tr, err := New(s, WithClock(clock.Now), WithLease(time.Minute), WithErrorHandler(func(_ context.Context, err error) {
			t.Errorf("reported: %v", err)
		}))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, tr.Close(context.Background())) })
		return tr
	}
	worker, a, b := newTracker(), newTracker(), newTracker()
	ctx := t.Context()
	start := func(id string) *Run {
		require.NoError(t, worker.Apply(ctx, id, Create("step")))
		run, err := worker.Start(ctx, id, StartStep("step"))
		require.NoError(t, err)
		return run
	}
	start("abandoned")
	s.run = start("renewed")
	require.NoError(t, worker.Apply(ctx, "pending", Create()))
	ended := start("ended")
	require.NoError(t, ended.Apply(ctx, Succeed()))
	clock.Advance(time.Minute + 30*time.Second) // every lease ended 30s ago
	recent := start("recent")                   // its lease ends in a minute
	_ = recent

	// Two rescuers at once, with a grace of 20s: each abandoned task is
	// failed once, by one of them.
	var wg sync.WaitGroup
	var n [2]int
	for i, tr := range []*Tracker{a, b} {
		wg.Go(func() {
			var err error
			n[i], err = tr.rescue(ctx, s, 20*time.Second)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	assert.Equal(t, 2, n[0]+n[1], "the abandoned running and pending tasks are failed, once each")

	for id, want := range map[string]store.Status{
		"abandoned": store.StatusFailed, "pending": store.StatusFailed,
		"renewed": store.StatusRunning, "ended": store.StatusSuccess, "recent": store.StatusRunning,
	} {
		st, err := mem.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, want, st.Status, id)
		if want == store.StatusFailed {
			assert.JSONEq(t, `"`+AbandonedType+`"`, string(st.ErrorDetails[ExceptionTypeKey]), id)
			assert.Equal(t, errAbandoned.Error(), st.ErrorMessage)
			step, _ := st.Step("step")
			assert.NotEqual(t, store.StepRunning, step.Status)
		}
	}
	st, err := mem.Get(ctx, "abandoned")
	require.NoError(t, err)
	assert.Equal(t, int64(3), st.Version, "failed by one write, not two")

	// A new attempt of a rescued task.
	require.NoError(t, a.Apply(ctx, "abandoned", Retry()))
	run, err := a.Start(ctx, "abandoned", StartStep("step"))
	require.NoError(t, err)
	require.NoError(t, run.Apply(ctx, SucceedStep("step"), Succeed()))
}

func TestRescueNeedsALister(t *testing.T) {
	tr, err := New(noLister{})
	require.NoError(t, err)
	require.ErrorContains(t, tr.Rescue(t.Context(), time.Second, time.Second), "cannot list")
	mem, err := memstore.New()
	require.NoError(t, err)
	defer mem.Close()
	tr, err = New(mem)
	require.NoError(t, err)
	require.Error(t, tr.Rescue(t.Context(), 0, time.Second))
}

type noLister struct{ store.Store }
