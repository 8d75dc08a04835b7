package pgstore_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/internal/pgtest"
	"github.com/taskstatus/taskstatus/store"
)

// TestClose checks that Close ends every watch, that every later call
// reports the store unavailable, and that closing again does nothing.
func TestClose(t *testing.T) {
	s := newStore(t, pgtest.Pool(t, pgtest.URL(t)))
	ctx := t.Context()
	st := store.State{ID: "open", Status: store.StatusRunning, Attempt: 1, Version: 1}
	require.NoError(t, s.Put(ctx, store.Write{State: st}))
	var watches []<-chan store.State
	for range 3 {
		ch, err := s.Watch(ctx, st.ID)
		require.NoError(t, err)
		<-ch
		watches = append(watches, ch)
	}

	require.NoError(t, s.Close())
	for _, ch := range watches {
		select {
		case _, ok := <-ch:
			require.False(t, ok, "a watch delivered a state after Close")
		case <-time.After(10 * time.Second):
			require.FailNow(t, "Close did not end a watch")
		}
	}
	_, err := s.Get(ctx, st.ID)
	require.ErrorIs(t, err, store.ErrUnavailable, "Get after Close")
	require.ErrorIs(t, s.Put(ctx, store.Write{State: st}), store.ErrUnavailable, "Put after Close")
	_, err = s.Watch(ctx, st.ID)
	require.ErrorIs(t, err, store.ErrUnavailable, "Watch after Close")
	_, err = s.List(ctx, store.Filter{}, 0, "")
	require.ErrorIs(t, err, store.ErrUnavailable, "List after Close")
	_, err = s.History(ctx, st.ID)
	require.ErrorIs(t, err, store.ErrUnavailable, "History after Close")
	_, err = s.Reap(ctx)
	require.ErrorIs(t, err, store.ErrUnavailable, "Reap after Close")
	assert.NoError(t, s.Close(), "a second Close")
}
