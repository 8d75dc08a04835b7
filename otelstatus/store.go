package otelstatus

import (
	"context"
	"errors"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// Store returns s with each of its calls recorded in the
// taskstatus.store.duration histogram, by operation and outcome. The
// store returned implements [store.Watcher] and [store.Lister] exactly
// when s does, and otherwise behaves as s; it has no other method of s
// (close s itself, not the store returned).
func (t *Telemetry) Store(s store.Store) store.Store {
	base := &storeCalls{s: s, t: t}
	w, watches := s.(store.Watcher)
	l, lists := s.(store.Lister)
	switch {
	case watches && lists:
		return &watchListStore{base, watchCalls{w, t}, listCalls{l, t}}
	case watches:
		return &watchStore{base, watchCalls{w, t}}
	case lists:
		return &listStore{base, listCalls{l, t}}
	}
	return base
}

// The stores Store returns, one for each set of optional interfaces.
type (
	watchStore struct {
		*storeCalls
		watchCalls
	}
	listStore struct {
		*storeCalls
		listCalls
	}
	watchListStore struct {
		*storeCalls
		watchCalls
		listCalls
	}
)

var (
	_ store.Store   = (*storeCalls)(nil)
	_ store.Watcher = (*watchStore)(nil)
	_ store.Lister  = (*listStore)(nil)
	_ store.Watcher = (*watchListStore)(nil)
	_ store.Lister  = (*watchListStore)(nil)
)

// storeCalls records the calls of the Store interface.
type storeCalls struct {
	s store.Store
	t *Telemetry
}

func (s *storeCalls) Get(ctx context.Context, id string) (store.State, error) {
	began := time.Now()
	st, err := s.s.Get(ctx, id)
	s.t.storeCall(ctx, "get", began, err)
	return st, err
}

func (s *storeCalls) Put(ctx context.Context, w store.Write) error {
	began := time.Now()
	err := s.s.Put(ctx, w)
	s.t.storeCall(ctx, "put", began, err)
	return err
}

func (s *storeCalls) Delete(ctx context.Context, id string) error {
	began := time.Now()
	err := s.s.Delete(ctx, id)
	s.t.storeCall(ctx, "delete", began, err)
	return err
}

// watchCalls records the calls of the Watcher interface: how long Watch
// took to return, not how long the watch lasted.
type watchCalls struct {
	w store.Watcher
	t *Telemetry
}

func (w watchCalls) Watch(ctx context.Context, id string) (<-chan store.State, error) {
	began := time.Now()
	ch, err := w.w.Watch(ctx, id)
	w.t.storeCall(ctx, "watch", began, err)
	return ch, err
}

// listCalls records the calls of the Lister interface.
type listCalls struct {
	l store.Lister
	t *Telemetry
}

func (l listCalls) List(ctx context.Context, f store.Filter, pageSize int, pageToken string) (store.Page, error) {
	began := time.Now()
	p, err := l.l.List(ctx, f, pageSize, pageToken)
	l.t.storeCall(ctx, "list", began, err)
	return p, err
}

func (l listCalls) Count(ctx context.Context, f store.Filter) (map[store.Status]int64, error) {
	began := time.Now()
	n, err := l.l.Count(ctx, f)
	l.t.storeCall(ctx, "count", began, err)
	return n, err
}

// storeCall records a call of the store operation op that began at
// began and returned err.
func (t *Telemetry) storeCall(ctx context.Context, op string, began time.Time, err error) {
	t.store.Record(ctx, time.Since(began).Seconds(), t.storeSets.get(storeSet{op, outcome(err)}))
}

// outcome names how a store call that returned err ended.
func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, store.ErrNotFound):
		return "not_found"
	case errors.Is(err, store.ErrConflict):
		return "conflict"
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return "unavailable"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}
