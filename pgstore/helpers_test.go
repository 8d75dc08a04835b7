package pgstore_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/internal/pgtest"
	"github.com/taskstatus/taskstatus/pgstore"
	"github.com/taskstatus/taskstatus/store/storetest"
)

// testStore is a store under test and what it was made with.
type testStore struct {
	*pgstore.Store
	clock  *storetest.Clock
	pool   *pgxpool.Pool
	schema string
}

// newStore returns a migrated store on pool in a schema of its own, on a
// manual clock, closed when t ends.
func newStore(t testing.TB, pool *pgxpool.Pool, opts ...pgstore.Option) *testStore {
	t.Helper()
	ts := &testStore{
		clock:  storetest.NewClock(time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC)),
		pool:   pool,
		schema: pgtest.Schema(t, pool),
	}
	opts = append([]pgstore.Option{pgstore.WithSchema(ts.schema), pgstore.WithClock(ts.clock.Now),
		pgstore.WithPollInterval(20 * time.Millisecond)}, opts...)
	s, err := pgstore.New(pool, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.NoError(t, s.Migrate(t.Context()))
	ts.Store = s
	return ts
}

// rows returns the number of rows of table in the store's schema.
func (ts *testStore) rows(t testing.TB, table string) int {
	t.Helper()
	var n int
	require.NoError(t, ts.pool.QueryRow(t.Context(), "SELECT count(*) FROM "+pgx.Identifier{ts.schema, table}.Sanitize()).Scan(&n))
	return n
}
