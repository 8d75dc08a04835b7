package otelstatus

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

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
	s.t.storeCall(ctx, opGet, began, err)
	return st, err
}

func (s *storeCalls) Put(ctx context.Context, w store.Write) error {
	began := time.Now()
	err := s.s.Put(ctx, w)
	s.t.storeCall(ctx, opPut, began, err)
	return err
}

func (s *storeCalls) Delete(ctx context.Context, id string) error {
	began := time.Now()
	err := s.s.Delete(ctx, id)
	s.t.storeCall(ctx, opDelete, began, err)
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
	w.t.storeCall(ctx, opWatch, began, err)
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
	l.t.storeCall(ctx, opList, began, err)
	return p, err
}

func (l listCalls) Count(ctx context.Context, f store.Filter) (map[store.Status]int64, error) {
	began := time.Now()
	n, err := l.l.Count(ctx, f)
	l.t.storeCall(ctx, opCount, began, err)
	return n, err
}

// The store operations and the outcomes of their calls, in the order of
// Telemetry.storeAttrs.
var (
	storeOps      = [...]string{"get", "put", "delete", "watch", "list", "count"}
	storeOutcomes = [...]string{"ok", "not_found", "conflict", "unavailable", "canceled", "error"}
)

const (
	opGet = iota
	opPut
	opDelete
	opWatch
	opList
	opCount
)

// storeAttrs returns the attributes of each operation and outcome, made
// once rather than on each call: a store call is the adapter's most
// frequent record, and making its attribute set each time took 8% of the
// CPU profile of lifecycles on memstore, against 5% for the whole record
// with the sets made once.
func storeAttrs() (attrs [len(storeOps)][len(storeOutcomes)]metric.RecordOption) {
	for i, op := range storeOps {
		for j, o := range storeOutcomes {
			attrs[i][j] = metric.WithAttributeSet(attribute.NewSet(OperationKey.String(op), OutcomeKey.String(o)))
		}
	}
	return attrs
}

// storeCall records a call of the store operation op that began at
// began and returned err.
func (t *Telemetry) storeCall(ctx context.Context, op int, began time.Time, err error) {
	t.store.Record(ctx, time.Since(began).Seconds(), t.storeAttrs[op][outcome(err)])
}

// outcome returns the index in storeOutcomes of how a store call that
// returned err ended.
func outcome(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, store.ErrNotFound):
		return 1
	case errors.Is(err, store.ErrConflict):
		return 2
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return 3
	case errors.Is(err, context.Canceled):
		return 4
	}
	return 5
}
