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

// TestTrackerOutage stops Redis under a running job: the job's first
// change returns within the tracker's timeout with store.ErrUnavailable
// and is reported, the next ones return at once, the job goes on, and
// once Redis is back the changes kept meanwhile are written, in order.
func TestTrackerOutage(t *testing.T) {
	const timeout = 250 * time.Millisecond
	s, mr, _ := newMiniStore(t, redisstore.WithTimeout(timeout))
	var reported atomic.Int64
	tr, err := tracker.New(s, tracker.WithTimeout(timeout),
		tracker.WithErrorHandler(func(context.Context, error) { reported.Add(1) }))
	require.NoError(t, err)
	ctx := t.Context()
	steps := []string{"parse", "embed", "index"}
	require.NoError(t, tr.Apply(ctx, "doc-1", tracker.Create(steps...)))
	run, err := tr.Start(ctx, "doc-1")
	require.NoError(t, err)

	mr.Close()
	worked := 0
	for _, step := range steps {
		for _, change := range []tracker.Change{tracker.StartStep(step), tracker.SucceedStep(step)} {
			start := time.Now()
			err := run.Apply(ctx, change)
			require.ErrorIs(t, err, store.ErrUnavailable)
			require.Less(t, time.Since(start), timeout+2*time.Second, "a call must give up within its timeout")
		}
		worked++ // the step's work does not depend on its tracking
	}
	require.Equal(t, len(steps), worked)
	require.Positive(t, reported.Load(), "the outage is reported")
	_, err = tr.Get(ctx, "doc-1")
	require.ErrorIs(t, err, store.ErrUnavailable, "a read during the outage says so, never 'not found'")

	require.NoError(t, mr.Restart())
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, tr.Close(cctx), "the changes kept during the outage are written once Redis is back")
	st, err := tr.Get(ctx, "doc-1")
	require.NoError(t, err)
	require.Equal(t, store.StatusRunning, st.Status)
	for _, sp := range st.Steps {
		require.Equal(t, store.StepSuccess, sp.Status, "step %s", sp.Name)
	}
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
	require.NoError(t, trackers[0].Apply(ctx, "doc-1", tracker.Create()))
	_, err := trackers[1].Start(ctx, "doc-1")
	require.NoError(t, err)

	var wg sync.WaitGroup
	for i, tr := range trackers {
		wg.Go(func() {
			for j := range stepsEach {
				step := fmt.Sprintf("step-%d-%02d", i, j)
				if err := tr.Apply(ctx, "doc-1", tracker.StartStep(step)); err != nil {
					t.Error(err)
					return
				}
				if err := tr.Apply(ctx, "doc-1", tracker.SucceedStep(step)); err != nil {
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
	tr, err := tracker.New(s, tracker.WithLease(time.Minute))
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, tr.Apply(ctx, "warm-up", tracker.Create())) // loads the script
	log := &commandLog{}
	c.AddHook(log)

	var run *tracker.Run
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Create", func() error { return tr.Apply(ctx, "doc-1", tracker.Create("parse", "embed")) }},
		{"Start", func() (err error) { run, err = tr.Start(ctx, "doc-1"); return err }},
		{"StartStep", func() error { return run.Apply(ctx, tracker.StartStep("parse")) }},
		{"SetProgress", func() error { return run.Apply(ctx, tracker.SetProgress(store.Progress{Done: 1, Total: 2})) }},
		{"Heartbeat", func() error { return run.Apply(ctx, tracker.Heartbeat()) }},
		{"SucceedStep", func() error { return run.Apply(ctx, tracker.SucceedStep("parse")) }},
		{"SetResult", func() error { return run.Apply(ctx, tracker.SetResult(map[string]any{"entities_extracted": 42})) }},
		{"Succeed", func() error { return run.Apply(ctx, tracker.Succeed()) }},
	} {
		require.NoError(t, tc.call(), tc.name)
		cmds, trips := log.take()
		assert.Equal(t, []string{"evalsha"}, cmds, tc.name)
		assert.Equal(t, 1, trips, tc.name)
	}
}
