package redisstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// TestTrackerOutage stops Redis under a running job: each tracker call
// returns within its timeout with store.ErrUnavailable and is reported,
// the job goes on, and once Redis is back the task can be finished.
func TestTrackerOutage(t *testing.T) {
	const timeout = 250 * time.Millisecond
	s, mr, _ := newMiniStore(t, redisstore.WithTimeout(timeout))
	var reported atomic.Int64
	tr, err := tracker.New(s, tracker.WithTimeout(timeout),
		tracker.WithErrorHandler(func(context.Context, error) { reported.Add(1) }))
	require.NoError(t, err)
	ctx := t.Context()
	steps := []string{"parse", "embed", "index"}
	require.NoError(t, tr.Create(ctx, "doc-1", steps...))
	require.NoError(t, tr.Start(ctx, "doc-1"))

	mr.Close()
	worked := 0
	for _, step := range steps {
		for _, call := range []func() error{
			func() error { return tr.StartStep(ctx, "doc-1", step) },
			func() error { return tr.SucceedStep(ctx, "doc-1", step) },
		} {
			start := time.Now()
			err := call()
			require.ErrorIs(t, err, store.ErrUnavailable)
			require.Less(t, time.Since(start), timeout+2*time.Second, "a call must give up within its timeout")
		}
		worked++ // the step's work does not depend on its tracking
	}
	require.Equal(t, len(steps), worked)
	require.Equal(t, int64(2*len(steps)), reported.Load(), "every failed call is reported")
	_, err = tr.Get(ctx, "doc-1")
	require.ErrorIs(t, err, store.ErrUnavailable, "a read during the outage says so, never 'not found'")

	require.NoError(t, mr.Restart())
	require.NoError(t, tr.Succeed(ctx, "doc-1"), "after the outage the next call re-reads and succeeds")
	st, err := tr.Get(ctx, "doc-1")
	require.NoError(t, err)
	require.Equal(t, store.StatusSuccess, st.Status)
}

// TestTrackersShareATask has two Trackers, each with a client of its own
// (two service instances), record different steps of one task at once:
// every step must be recorded. It uses the Redis server named by
// TASKSTATUS_REDIS_ADDR, or miniredis when it is unset.
func TestTrackersShareATask(t *testing.T) {
	const stepsEach = 20
	addr := serverAddr(t)
	prefix := fmt.Sprintf("tstest:%016x:", rand.Uint64())
	trackers := make([]*tracker.Tracker, 2)
	for i := range trackers {
		c := newClient(t, addr)
		t.Cleanup(func() { deleteKeys(t, c, prefix) })
		s, err := redisstore.New(c, redisstore.WithPrefix(prefix))
		require.NoError(t, err)
		trackers[i], err = tracker.New(s)
		require.NoError(t, err)
	}
	ctx := t.Context()
	require.NoError(t, trackers[0].Create(ctx, "doc-1"))
	require.NoError(t, trackers[1].Start(ctx, "doc-1"))

	var wg sync.WaitGroup
	for i, tr := range trackers {
		wg.Go(func() {
			for j := range stepsEach {
				step := fmt.Sprintf("step-%d-%02d", i, j)
				if err := tr.StartStep(ctx, "doc-1", step); err != nil {
					t.Error(err)
					return
				}
				if err := tr.SucceedStep(ctx, "doc-1", step); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()

	st, err := trackers[0].Get(ctx, "doc-1")
	require.NoError(t, err)
	require.Len(t, st.Steps, 2*stepsEach, "no step may be lost")
	for _, sp := range st.Steps {
		assert.Equal(t, store.StepSuccess, sp.Status, "step %s", sp.Name)
	}
	assert.Equal(t, int64(2+4*stepsEach), st.Version, "one version per transition")
}

// TestTrackerOneRoundTripPerTransition checks that each tracker call is one
// script in one round trip once the tracker knows the task.
func TestTrackerOneRoundTripPerTransition(t *testing.T) {
	s, _, c := newMiniStore(t)
	tr, err := tracker.New(s)
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, tr.Create(ctx, "warm-up")) // loads the script
	log := &commandLog{}
	c.AddHook(log)

	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Create", func() error { return tr.Create(ctx, "doc-1", "parse", "embed") }},
		{"Start", func() error { return tr.Start(ctx, "doc-1") }},
		{"StartStep", func() error { return tr.StartStep(ctx, "doc-1", "parse") }},
		{"SetProgress", func() error { return tr.SetProgress(ctx, "doc-1", store.Progress{Done: 1, Total: 2}) }},
		{"SucceedStep", func() error { return tr.SucceedStep(ctx, "doc-1", "parse") }},
		{"SetResult", func() error { return tr.SetResult(ctx, "doc-1", map[string]any{"entities_extracted": 42}) }},
		{"Succeed", func() error { return tr.Succeed(ctx, "doc-1") }},
	} {
		require.NoError(t, tc.call(), tc.name)
		cmds, trips := log.take()
		assert.Equal(t, []string{"evalsha"}, cmds, tc.name)
		assert.Equal(t, 1, trips, tc.name)
	}
}
