package tracker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// hangingStore waits, like a server that never answers, until the call's
// context ends, while down is set.
type hangingStore struct {
	store.Store
	down atomic.Bool
}

func (h *hangingStore) Get(ctx context.Context, id string) (store.State, error) {
	if h.down.Load() {
		<-ctx.Done()
		return store.State{}, ctx.Err()
	}
	return h.Store.Get(ctx, id)
}

func (h *hangingStore) Put(ctx context.Context, st store.State, ttl time.Duration) error {
	if h.down.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return h.Store.Put(ctx, st, ttl)
}

func TestHangingStoreIsBoundedByTimeout(t *testing.T) {
	f := newFixture(t)
	hs := &hangingStore{Store: f.store}
	var reported atomic.Int64
	tr, err := tracker.New(hs, tracker.WithTimeout(50*time.Millisecond),
		tracker.WithErrorHandler(func(context.Context, error) { reported.Add(1) }))
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, tr.Create(ctx, "doc"))

	hs.down.Store(true)
	start := time.Now()
	err = tr.Start(ctx, "doc")
	elapsed := time.Since(start)
	require.ErrorIs(t, err, store.ErrUnavailable, "a store that does not answer within the timeout is unavailable")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, elapsed, 5*time.Second, "the call must end near its 50ms timeout")
	assert.Equal(t, int64(1), reported.Load())
	_, err = tr.Get(ctx, "doc")
	require.ErrorIs(t, err, store.ErrUnavailable, "reads report the outage too, never a stale answer")

	hs.down.Store(false)
	require.NoError(t, tr.Start(ctx, "doc"), "after the outage the next call re-reads and succeeds")
	st, err := tr.Get(ctx, "doc")
	require.NoError(t, err)
	assert.Equal(t, store.StatusRunning, st.Status)
}

func TestCallerCancellationIsNotAnOutage(t *testing.T) {
	f := newFixture(t)
	hs := &hangingStore{Store: f.store}
	tr, err := tracker.New(hs, tracker.WithErrorHandler(func(context.Context, error) {}))
	require.NoError(t, err)
	require.NoError(t, tr.Create(t.Context(), "doc"))
	hs.down.Store(true)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err = tr.Start(ctx, "doc")
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, store.ErrUnavailable, "the caller gave up; the store did not fail")
}

// failingStore fails every call with ErrUnavailable while down is set.
type failingStore struct {
	store.Store
	down atomic.Bool
}

var errDown = errors.Join(store.ErrUnavailable, errors.New("connection refused"))

func (s *failingStore) Get(ctx context.Context, id string) (store.State, error) {
	if s.down.Load() {
		return store.State{}, errDown
	}
	return s.Store.Get(ctx, id)
}

func (s *failingStore) Put(ctx context.Context, st store.State, ttl time.Duration) error {
	if s.down.Load() {
		return errDown
	}
	return s.Store.Put(ctx, st, ttl)
}

func TestStoreDownIsReportedAndWorkGoesOn(t *testing.T) {
	f := newFixture(t)
	fs := &failingStore{Store: f.store}
	var reported []error
	tr, err := tracker.New(fs, tracker.WithErrorHandler(func(_ context.Context, err error) {
		reported = append(reported, err)
	}))
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, tr.Create(ctx, "doc", "a", "b"))
	require.NoError(t, tr.Start(ctx, "doc"))

	fs.down.Store(true)
	err = tr.SucceedStep(ctx, "doc", "a")
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.Len(t, reported, 1)
	var te *tracker.Error
	require.ErrorAs(t, reported[0], &te)
	assert.Equal(t, "succeed step", te.Op)
	assert.Equal(t, "doc", te.ID)

	fs.down.Store(false)
	require.NoError(t, tr.SucceedStep(ctx, "doc", "b"))
	require.NoError(t, tr.Succeed(ctx, "doc"))
	st, err := tr.Get(ctx, "doc")
	require.NoError(t, err)
	a, _ := st.Step("a")
	assert.Equal(t, store.StepSkipped, a.Status, "a step whose success was never recorded was pending, and is skipped when the task ends")
	assert.Equal(t, store.StatusSuccess, st.Status)
}

// stuckStore blocks every Put until release is closed, whatever the
// context says: a store that does not honour deadlines.
type stuckStore struct {
	store.Store
	entered chan struct{}
	release chan struct{}
}

func (s *stuckStore) Put(ctx context.Context, st store.State, ttl time.Duration) error {
	s.entered <- struct{}{}
	<-s.release
	return s.Store.Put(ctx, st, ttl)
}

// TestWaitingForAnotherWriterIsBounded shows that a call queued behind
// another writer of the same task gives up when its own time runs out,
// even while that writer is stuck.
func TestWaitingForAnotherWriterIsBounded(t *testing.T) {
	f := newFixture(t)
	running(f.tr, "doc")
	stuck := &stuckStore{Store: f.store, entered: make(chan struct{}, 1), release: make(chan struct{})}
	tr, err := tracker.New(stuck, tracker.WithErrorHandler(func(context.Context, error) {}))
	require.NoError(t, err)

	first := make(chan error, 1)
	go func() { first <- tr.StartStep(context.Background(), "doc", "a") }()
	<-stuck.entered // the first writer holds the task, stuck in the store

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err = tr.StartStep(ctx, "doc", "b")
	require.ErrorIs(t, err, context.DeadlineExceeded, "the second writer gives up at its deadline")

	close(stuck.release)
	require.NoError(t, <-first)
}
