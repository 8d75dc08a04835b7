package pgstore_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/internal/pgtest"
	"github.com/taskstatus/taskstatus/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestConformance runs the store contract, listing and watching included,
// against the server named by TASKSTATUS_POSTGRES_URL, a schema per rule.
func TestConformance(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.URL(t))
	storetest.Run(t, func(t *testing.T) storetest.Fixture {
		s := newStore(t, pool)
		return storetest.Fixture{Store: s.Store, Advance: func(_ *testing.T, d time.Duration) { s.clock.Advance(d) }}
	})
}
