package pgstore_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/internal/pgtest"
	"github.com/taskstatus/taskstatus/store"
)

// TestWatchCorruptTask checks that a watched task whose stored state
// cannot be decoded ends its own watch, and only that one: a watch of
// another task still hears of its writes.
func TestWatchCorruptTask(t *testing.T) {
	s := newStore(t, pgtest.Pool(t, pgtest.URL(t)))
	ctx := t.Context()
	watch := func(id string) (store.State, <-chan store.State) {
		st := store.State{ID: id, Status: store.StatusRunning, Attempt: 1, Version: 1}
		require.NoError(t, s.Put(ctx, store.Write{State: st}))
		ch, err := s.Watch(ctx, id)
		require.NoError(t, err)
		<-ch
		return st, ch
	}
	_, bad := watch("bad")
	good, fine := watch("good")

	_, err := s.pool.Exec(ctx, "UPDATE "+pgx.Identifier{s.schema, "tasks"}.Sanitize()+
		" SET state = '{', version = 2, announced = 2 WHERE id = 'bad'")
	require.NoError(t, err)
	select {
	case _, ok := <-bad:
		require.False(t, ok, "the watch of a corrupt task must end, not deliver")
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the watch of a corrupt task did not end")
	}

	good.Version, good.Status = 2, store.StatusSuccess
	require.NoError(t, s.Put(ctx, store.Write{State: good, Prev: 1}))
	select {
	case st, ok := <-fine:
		require.True(t, ok, "the watch of another task must go on")
		require.Equal(t, int64(2), st.Version)
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the watch of another task heard nothing")
	}
}
