package tracker_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/internal/pgtest"
	"github.com/taskstatus/taskstatus/pgstore"
	"github.com/taskstatus/taskstatus/store"
)

// pgStores returns a maker of stores on one migrated schema of the server
// that TASKSTATUS_POSTGRES_URL names, each on a pool of its own, as
// processes of their own would be. It skips t if the variable is unset.
func pgStores(t *testing.T) func(t *testing.T) store.Store {
	url := pgtest.URL(t)
	schema := pgtest.Schema(t, pgtest.Pool(t, url))
	open := func(t *testing.T) *pgstore.Store {
		s, err := pgstore.New(pgtest.Pool(t, url), pgstore.WithSchema(schema))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, s.Close()) })
		return s
	}
	require.NoError(t, open(t).Migrate(t.Context()))
	return func(t *testing.T) store.Store { return open(t) }
}
