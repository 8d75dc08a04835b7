package pgstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/internal/pgtest"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// TestCreateInTx creates a task in the transaction of a business write:
// when the transaction rolls back, neither the row nor the task exists,
// nor its history; when it commits, both do, and others see the task only
// from then on.
func TestCreateInTx(t *testing.T) {
	s := newStore(t, pgtest.Pool(t, pgtest.URL(t)))
	ctx := t.Context()
	documents := pgx.Identifier{s.schema, "documents"}.Sanitize()
	_, err := s.pool.Exec(ctx, "CREATE TABLE "+documents+" (id text PRIMARY KEY)")
	require.NoError(t, err)

	errRollback := errors.New("the business write failed")
	create := func(id string, fail bool) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO "+documents+" (id) VALUES ($1)", id); err != nil {
				return err
			}
			tr, err := tracker.New(s.InTx(tx))
			if err != nil {
				return err
			}
			if err := tr.Apply(ctx, id, tracker.Create("parse"), tracker.Kind("document")); err != nil {
				return err
			}
			_, err = s.Get(ctx, id)
			require.ErrorIs(t, err, store.ErrNotFound, "a task created in a transaction is not seen outside it before it commits")
			if fail {
				return errRollback
			}
			return nil
		})
	}

	require.ErrorIs(t, create("rolled-back", true), errRollback)
	_, err = s.Get(ctx, "rolled-back")
	require.ErrorIs(t, err, store.ErrNotFound, "a task created in a transaction that rolled back must not exist")
	history, err := s.History(ctx, "rolled-back")
	require.NoError(t, err)
	assert.Empty(t, history, "nor its history")
	assert.Equal(t, 0, s.rows(t, "documents"))

	require.NoError(t, create("committed", false))
	st, err := s.Get(ctx, "committed")
	require.NoError(t, err, "a task created in a transaction that committed must exist")
	assert.Equal(t, store.StatusPending, st.Status)
	assert.Equal(t, "document", st.Kind)
	history, err = s.History(ctx, "committed")
	require.NoError(t, err)
	require.Len(t, history, 1)
	assert.Equal(t, 1, s.rows(t, "documents"))

	tr, err := tracker.New(s)
	require.NoError(t, err)
	run, err := tr.Start(context.Background(), "committed")
	require.NoError(t, err, "the task goes on outside the transaction")
	require.NoError(t, run.Apply(ctx, tracker.StartStep("parse"), tracker.SucceedStep("parse"), tracker.Succeed()))
}
