package pgstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/pgstore"
	"github.com/taskstatus/taskstatus/store/storetest"
)

// envURL names the environment variable that points the tests at a
// PostgreSQL server. CI sets it; when it is set, the server must answer.
const envURL = "TASKSTATUS_POSTGRES_URL"

// serverURL returns the URL of the server named by TASKSTATUS_POSTGRES_URL.
// It skips t if the variable is unset and fails it if the server does not
// answer.
func serverURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv(envURL)
	if url == "" {
		t.Skipf("%s is not set: no PostgreSQL server to test against", envURL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err, "%s=%s is set, so the server must answer", envURL, url)
	require.NoError(t, conn.Ping(ctx), "%s=%s is set, so the server must answer", envURL, url)
	require.NoError(t, conn.Close(ctx))
	return url
}

// newPool returns a pool on url, closed when t ends.
func newPool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// newSchema returns the name of a schema of t's own, dropped with its
// tables when t ends.
func newSchema(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	schema := fmt.Sprintf("tstest_%016x", rand.Uint64())
	t.Cleanup(func() {
		_, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		require.NoError(t, err)
	})
	return schema
}

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
		schema: newSchema(t, pool),
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
