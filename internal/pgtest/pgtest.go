// Package pgtest gives tests the PostgreSQL server that
// TASKSTATUS_POSTGRES_URL names, and schemas of their own on it.
package pgtest

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
)

// EnvURL names the environment variable that points the tests at a
// PostgreSQL server. CI sets it; when it is set, the server must answer.
const EnvURL = "TASKSTATUS_POSTGRES_URL"

// URL returns the URL of the server named by TASKSTATUS_POSTGRES_URL. It
// skips t if the variable is unset and fails it if the server does not
// answer.
func URL(t testing.TB) string {
	t.Helper()
	url := os.Getenv(EnvURL)
	if url == "" {
		t.Skipf("%s is not set: no PostgreSQL server to test against", EnvURL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err, "%s=%s is set, so the server must answer", EnvURL, url)
	require.NoError(t, conn.Ping(ctx), "%s=%s is set, so the server must answer", EnvURL, url)
	require.NoError(t, conn.Close(ctx))
	return url
}

// Pool returns a pool on url, closed when t ends.
func Pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// Schema returns the name of a schema of t's own, which it does not
// create, and which is dropped with its tables when t ends.
func Schema(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	schema := fmt.Sprintf("tstest_%016x", rand.Uint64())
	t.Cleanup(func() {
		_, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		require.NoError(t, err)
	})
	return schema
}
