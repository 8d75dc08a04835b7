package pgstore

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/taskstatus/taskstatus/store"
)

// TxStore is a [store.Store] whose calls run in a caller's transaction:
// a task it creates commits or rolls back with the business writes of
// that transaction. Make one with [Store.InTx] for the life of the
// transaction, and give it to a [github.com/taskstatus/taskstatus/tracker.Tracker]
// of its own to create the task (see the package example).
//
// Its writes are seen by others, and their watchers told, once the
// transaction commits. It is not safe for concurrent use, as a pgx.Tx is
// not; it must not be used after the transaction ends.
type TxStore struct {
	s  *Store
	tx pgx.Tx
}

// InTx returns a Store whose calls run in tx, with the options of s.
func (s *Store) InTx(tx pgx.Tx) *TxStore {
	return &TxStore{s: s, tx: tx}
}

// Get implements [store.Store]: it reads the task as tx sees it.
func (t *TxStore) Get(ctx context.Context, id string) (store.State, error) {
	return t.s.get(ctx, t.tx, id)
}

// Put implements [store.Store] in tx. A write refused with
// [store.ErrConflict] leaves tx usable; one that fails otherwise may have
// aborted it (PostgreSQL then refuses every statement until it rolls back).
func (t *TxStore) Put(ctx context.Context, w store.Write) error {
	return t.s.put(ctx, t.tx, nil, w)
}

// Delete implements [store.Store] in tx.
func (t *TxStore) Delete(ctx context.Context, id string) error {
	return t.s.delete(ctx, t.tx, id)
}
