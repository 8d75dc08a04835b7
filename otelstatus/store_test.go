package otelstatus_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/otelstatus"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/store/storetest"
)

// TestStoreConformance: the store Telemetry.Store returns keeps the
// contract of the store it wraps, watch and listing included.
func TestStoreConformance(t *testing.T) {
	tel, err := otelstatus.New()
	require.NoError(t, err)
	storetest.Run(t, func(t *testing.T) storetest.Fixture {
		clock := storetest.NewClock(t0)
		mem, err := memstore.New(memstore.WithClock(clock.Now))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, mem.Close()) })
		return storetest.Fixture{Store: tel.Store(mem), Advance: func(_ *testing.T, d time.Duration) { clock.Advance(d) }}
	})
}

// plainStore is a store that neither watches nor lists.
type plainStore struct{ store.Store }

type watchOnly struct {
	store.Store
	store.Watcher
}

type listOnly struct {
	store.Store
	store.Lister
}

// TestStoreCapabilities: the store returned watches and lists exactly
// when the store it wraps does.
func TestStoreCapabilities(t *testing.T) {
	tel, err := otelstatus.New()
	require.NoError(t, err)
	mem, err := memstore.New()
	require.NoError(t, err)
	defer mem.Close()
	for _, tc := range []struct {
		name          string
		s             store.Store
		watch, listed bool
	}{
		{"both", mem, true, true},
		{"neither", plainStore{mem}, false, false},
		{"watch", watchOnly{mem, mem}, true, false},
		{"list", listOnly{mem, mem}, false, true},
	} {
		s := tel.Store(tc.s)
		_, watches := s.(store.Watcher)
		_, lists := s.(store.Lister)
		assert.Equal(t, tc.watch, watches, "%s: Watcher", tc.name)
		assert.Equal(t, tc.listed, lists, "%s: Lister", tc.name)
	}
}

// TestStoreCalls: each call is recorded by operation and outcome, a
// store that does not answer as unavailable.
func TestStoreCalls(t *testing.T) {
	f := newFixture(t)
	s := f.tel.Store(downStore{})
	ctx := t.Context()
	_, err := s.Get(ctx, "doc")
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorIs(t, s.Delete(ctx, "doc"), store.ErrUnavailable)
	for _, op := range []string{"get", "delete"} {
		n, _ := f.histogram(t, "taskstatus.store.duration", otelstatus.OperationKey.String(op), otelstatus.OutcomeKey.String("unavailable"))
		assert.EqualValues(t, 1, n, op)
	}
}

// downStore is a store that does not answer.
type downStore struct{ store.Store }

func (downStore) Get(context.Context, string) (store.State, error) {
	return store.State{}, store.ErrUnavailable
}

func (downStore) Delete(context.Context, string) error { return store.ErrUnavailable }
