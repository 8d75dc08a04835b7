package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/internal/pgtest"
	"github.com/taskstatus/taskstatus/pgstore"
	"github.com/taskstatus/taskstatus/store"
)

// TestMigrateRace has two instances, each on a pool of its own, migrate an
// empty schema at once: both succeed, each migration is applied once, and
// the store works. To make the two calls meet, a third session holds the
// migration lock until both wait for it.
func TestMigrateRace(t *testing.T) {
	url := pgtest.URL(t)
	ctx := t.Context()
	owner := pgtest.Pool(t, url)
	schema := pgtest.Schema(t, owner)
	var stores [2]*pgstore.Store
	for i := range stores {
		s, err := pgstore.New(pgtest.Pool(t, url), pgstore.WithSchema(schema))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, s.Close()) })
		stores[i] = s
	}

	holder, err := owner.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = holder.Rollback(context.Background()) }()
	_, err = holder.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", pgstore.MigrationLock, schema)
	require.NoError(t, err)

	errs := make(chan error, len(stores))
	for _, s := range stores {
		go func() { errs <- s.Migrate(ctx) }()
	}
	require.Eventually(t, func() bool {
		var waiting int
		err := owner.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND classid = $1 AND objid = hashtext($2)::oid`, pgstore.MigrationLock, schema).Scan(&waiting)
		return err == nil && waiting == len(stores)
	}, 10*time.Second, 5*time.Millisecond, "both Migrate calls must wait for the lock")
	require.NoError(t, holder.Rollback(ctx))
	for range stores {
		require.NoError(t, <-errs, "each Migrate of a race must succeed")
	}

	var applied, distinct int
	require.NoError(t, owner.QueryRow(ctx, "SELECT count(*), count(DISTINCT version) FROM "+
		pgx.Identifier{schema, "migrations"}.Sanitize()).Scan(&applied, &distinct))
	migrations, err := pgstore.SchemaVersion()
	require.NoError(t, err)
	assert.Equal(t, migrations, applied, "each migration is applied once")
	assert.Equal(t, applied, distinct)

	require.NoError(t, stores[0].Migrate(ctx), "Migrate of a schema up to date")
	require.NoError(t, stores[0].Put(ctx, store.Write{State: store.State{ID: "a", Status: store.StatusPending, Attempt: 1, Version: 1}}))
	_, err = stores[1].Get(ctx, "a")
	require.NoError(t, err, "the migrated schema works for both instances")
}
