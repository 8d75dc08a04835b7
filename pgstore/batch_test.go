package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/internal/pgtest"
	"github.com/taskstatus/taskstatus/pgstore"
	"github.com/taskstatus/taskstatus/store"
)

// holdUpdates is a pgx tracer that, once told to with hold, records the
// ids of the tasks each statement of a store's updates writes, and holds
// the first n of them as they are sent, each until it receives from
// release.
type holdUpdates struct {
	release chan struct{}
	held    chan struct{} // gets a value as each statement is held

	mu     sync.Mutex
	schema string // of the store; "" before hold
	n      int
	sent   [][]string // the ids of each statement, in the order sent
}

func (h *holdUpdates) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	h.mu.Lock()
	var ids []string
	if h.schema != "" {
		ids = pgstore.Updated(h.schema, data.SQL, data.Args)
	}
	if ids == nil {
		h.mu.Unlock()
		return ctx
	}
	h.sent = append(h.sent, slices.Sorted(slices.Values(ids)))
	hold := len(h.sent) <= h.n
	h.mu.Unlock()
	if hold {
		h.held <- struct{}{}
		<-h.release
	}
	return ctx
}

func (*holdUpdates) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// hold starts recording the updates of the store on schema, and holding
// the first n.
func (h *holdUpdates) hold(schema string, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.schema, h.n = schema, n
}

// statements returns the ids of the tasks each statement recorded
// updates, sorted.
func (h *holdUpdates) statements() [][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.sent)
}

// newHeldStore returns a store whose pool is traced by the holdUpdates it
// returns too, with a timeout of a minute.
func newHeldStore(t *testing.T) (*testStore, *holdUpdates) {
	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	require.NoError(t, err)
	h := &holdUpdates{release: make(chan struct{}), held: make(chan struct{}, 8)}
	cfg.ConnConfig.Tracer = h
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	// Statements are held for as long as a test takes, under -race on a
	// loaded machine: longer than the default timeout.
	return newStore(t, pool, pgstore.WithTimeout(time.Minute)), h
}

// heldWrites holds the store's statements in flight with a write each
// of tasks "held-0", "held-1"..., which it creates, and returns once they
// are held; wait waits for their calls, which must succeed.
func heldWrites(t *testing.T, s *testStore, h *holdUpdates) (wait func()) {
	ctx := t.Context()
	var ws []store.Write
	for i := range pgstore.MaxSending {
		st := benchState(fmt.Sprint("held-", i))
		require.NoError(t, s.Put(ctx, store.Write{State: st}))
		ws = append(ws, store.Write{State: advance(st), Prev: st.Version})
	}
	h.hold(s.schema, pgstore.MaxSending)
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() { assert.NoError(t, s.Put(ctx, w), "the write of %s held in flight", w.State.ID) })
		<-h.held // sent at once, alone: nothing else is in flight
	}
	return wg.Wait
}

// createWrites creates a task of each id, and returns an update of each.
func createWrites(t *testing.T, s *testStore, ids []string) []store.Write {
	ws := make([]store.Write, len(ids))
	for i, id := range ids {
		st := benchState(id)
		require.NoError(t, s.Put(t.Context(), store.Write{State: st}))
		ws[i] = store.Write{State: advance(st), Prev: st.Version}
	}
	return ws
}

// requireApplied fails t unless each task of ws is stored as its write
// made it.
func requireApplied(t *testing.T, s *testStore, ws []store.Write, msg string) {
	for _, w := range ws {
		got, err := s.Get(t.Context(), w.State.ID)
		require.NoError(t, err)
		require.True(t, w.State.Equal(got), "%s: %s", w.State.ID, msg)
	}
}

// putAll makes each of ws in a goroutine of its own, with the context of
// the same index, and returns the channels that get their errors.
func putAll(s *testStore, ctxs []context.Context, ws []store.Write) []chan error {
	errs := make([]chan error, len(ws))
	for i, w := range ws {
		errs[i] = make(chan error, 1)
		go func() { errs[i] <- s.Put(ctxs[i], w) }()
	}
	return errs
}

// receive returns the error of each channel, once each has one.
func receive(chans []chan error) []error {
	errs := make([]error, len(chans))
	for i, ch := range chans {
		errs[i] = <-ch
	}
	return errs
}

// requireQueued waits until n calls are queued on s.
func requireQueued(t *testing.T, s *testStore, n int, msg string) {
	require.Eventually(t, func() bool { return pgstore.Queued(s.Store) == n }, 10*time.Second, time.Millisecond, msg)
}

// TestBatching holds the statements in flight while updates come: they
// queue and go together in the next statement, at most one of each task,
// and each gets its own outcome: a conflict, a resend recognized as
// applied. A queued call whose context ends returns and is never sent.
func TestBatching(t *testing.T) {
	s, h := newHeldStore(t)
	ctx := t.Context()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	names := []string{"ok-0", "ok-1", "ok-2", "conflict", "resent", "canceled", "twice", "twice"}
	const conflict, resent, canceled, twice = 3, 4, 5, 6
	states := make(map[string]store.State) // as stored before the batch
	ws := make([]store.Write, len(names))
	ctxs := make([]context.Context, len(names))
	for i, id := range names {
		st, ok := states[id]
		if !ok {
			st = benchState(id)
			require.NoError(t, s.Put(ctx, store.Write{State: st}))
		}
		ws[i], ctxs[i] = store.Write{State: advance(st), Prev: st.Version, ID: fmt.Sprint("w", i)}, ctx
		switch i {
		case conflict: // computed from a version the task never had
			ws[i] = store.Write{State: advance(ws[i].State), Prev: ws[i].State.Version}
		case resent: // applied already, its reply lost
			require.NoError(t, s.Put(ctx, ws[i]))
			st = ws[i].State
		case canceled:
			ctxs[i] = cctx
		}
		states[id] = st
	}

	wait := heldWrites(t, s, h)
	results := putAll(s, ctxs, ws)
	requireQueued(t, s, len(ws), "the updates made while statements are in flight queue")
	cancel()
	errs := make([]error, len(ws))
	errs[canceled] = <-results[canceled]
	require.ErrorIs(t, errs[canceled], context.Canceled, "a queued call returns when its context ends")
	require.Equal(t, len(ws)-1, pgstore.Queued(s.Store), "it left the queue")
	close(h.release)
	wait()
	for i, ch := range results {
		if i != canceled {
			errs[i] = <-ch
		}
	}

	// The second write of "twice" goes in a statement of its own, at once
	// or after the others; if it applies first, the first is not applied
	// in the batch and goes again alone.
	statements := h.statements()
	others := slices.DeleteFunc(statements, func(ids []string) bool { return slices.Equal(ids, []string{"twice"}) })
	assert.Contains(t, []int{1, 2}, len(h.statements())-len(others), "statements of twice alone")
	assert.ElementsMatch(t, [][]string{{"held-0"}, {"held-1"}, {"conflict", "ok-0", "ok-1", "ok-2", "resent", "twice"},
		{"conflict"}, {"resent"}}, others,
		"the queued updates go in one statement, but for a second of a task, and the canceled; those it did not apply go again alone")
	for i, err := range errs {
		id := names[i]
		got, gerr := s.Get(ctx, id)
		require.NoError(t, gerr)
		switch i {
		case conflict:
			require.ErrorIs(t, err, store.ErrConflict, "%s: the write's own outcome", id)
		case canceled:
			require.ErrorIs(t, err, context.Canceled, "%s: the write's own outcome", id)
		case twice, twice + 1: // either comes first, and the other conflicts
			if !errors.Is(err, store.ErrConflict) {
				require.NoError(t, err, "%s: one of two writes from one version applies", id)
				states[id] = ws[i].State
			}
			continue
		default:
			require.NoError(t, err, "%s: the write's own outcome", id)
			states[id] = ws[i].State
		}
		require.True(t, states[id].Equal(got), "%s is what its write made, or as it was", id)
	}
	require.NotEqual(t, errors.Is(errs[twice], store.ErrConflict), errors.Is(errs[twice+1], store.ErrConflict),
		"of two writes of one task from one version, one applies and one conflicts")
	history, err := s.History(ctx, "resent")
	require.NoError(t, err)
	require.Len(t, history, 2, "a resend adds no history")
}

// TestBatchInFlight: a call whose context ends while its statement is in
// flight returns its context's error at once; the write may apply.
func TestBatchInFlight(t *testing.T) {
	s, h := newHeldStore(t)
	ctx := t.Context()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ids := []string{"a", "b"}
	ws := createWrites(t, s, ids)

	wait := heldWrites(t, s, h)
	h.hold(s.schema, pgstore.MaxSending+1) // and the next statement
	results := putAll(s, []context.Context{cctx, ctx}, ws)
	requireQueued(t, s, len(ws), "the updates made while statements are in flight queue")
	h.release <- struct{}{} // one of the statements in flight ends
	<-h.held                // the queued are sent, and held
	cancel()
	require.ErrorIs(t, <-results[0], context.Canceled, "a call returns when its context ends")
	close(h.release)
	wait()
	require.NoError(t, <-results[1])
	assert.Equal(t, []string{"a", "b"}, h.statements()[pgstore.MaxSending], "the two went in one statement")
	requireApplied(t, s, ws, "the statement was not canceled with the call")
}

// TestBatchFailsAlone: a write that the server refuses (here, by a check
// that a test adds) fails alone; the others of its statement apply.
func TestBatchFailsAlone(t *testing.T) {
	s, h := newHeldStore(t)
	ctx := t.Context()
	_, err := s.pool.Exec(ctx, "ALTER TABLE "+pgx.Identifier{s.schema, "tasks"}.Sanitize()+" ADD CONSTRAINT no_poison CHECK (kind <> 'poison')")
	require.NoError(t, err)
	ids := []string{"a", "b", "bad", "c"}
	const bad = 2
	ws := createWrites(t, s, ids)
	ws[bad].State.Kind = "poison"

	wait := heldWrites(t, s, h)
	results := putAll(s, []context.Context{ctx, ctx, ctx, ctx}, ws)
	requireQueued(t, s, len(ws), "the updates made while statements are in flight queue")
	close(h.release)
	wait()
	errs := receive(results)

	assert.ElementsMatch(t, [][]string{{"held-0"}, {"held-1"}, ids, {"a"}, {"b"}, {"bad"}, {"c"}}, h.statements(),
		"the statement failed, and each of its writes was sent again alone")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, errs[bad], &pgErr, "the bad write fails with the server's error")
	assert.Equal(t, "23514", pgErr.Code)
	require.NotErrorIs(t, errs[bad], store.ErrUnavailable)
	require.NotErrorIs(t, errs[bad], store.ErrConflict)
	for i, w := range ws {
		got, err := s.Get(ctx, w.State.ID)
		require.NoError(t, err)
		if i == bad {
			assert.Equal(t, int64(1), got.Version, "the bad write was not applied")
			continue
		}
		require.NoError(t, errs[i], "%s: a good write of a statement that failed", w.State.ID)
		require.True(t, w.State.Equal(got), "%s: a good write of a statement that failed is applied", w.State.ID)
	}
}

// TestBatchSkipsLockedTask: a task that another transaction holds locked
// holds up no other write of its statement; its own write is sent again
// alone, waits for the lock, and applies once the transaction ends.
func TestBatchSkipsLockedTask(t *testing.T) {
	s, h := newHeldStore(t)
	ctx := t.Context()
	ids := []string{"a", "locked", "b"}
	const locked = 1
	ws := createWrites(t, s, ids)
	tx, err := s.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }() // committed below: a no-op
	_, err = tx.Exec(ctx, "SELECT FROM "+pgx.Identifier{s.schema, "tasks"}.Sanitize()+" WHERE id = $1 FOR UPDATE", ids[locked])
	require.NoError(t, err)

	wait := heldWrites(t, s, h)
	results := putAll(s, []context.Context{ctx, ctx, ctx}, ws)
	requireQueued(t, s, len(ws), "the updates made while statements are in flight queue")
	close(h.release)
	wait()
	guard, cancel := context.WithTimeout(ctx, time.Minute) // a statement that waits for the lock never returns
	defer cancel()
	for _, i := range []int{0, 2} {
		select {
		case err := <-results[i]:
			require.NoError(t, err, "%s: a write of the statement", ids[i])
		case <-guard.Done():
			t.Fatalf("%s: the write waits for the lock of another task", ids[i])
		}
	}
	require.Eventually(t, func() bool { return len(h.statements()) == 4 }, time.Minute, time.Millisecond,
		"the write of the locked task is sent again alone")
	select {
	case err := <-results[locked]:
		t.Fatalf("the write of the locked task returned before the lock was released: %v", err)
	default:
	}
	require.NoError(t, tx.Commit(ctx))
	require.NoError(t, <-results[locked], "the write of the locked task, once the lock is released")

	assert.Equal(t, [][]string{{"held-0"}, {"held-1"}, {"a", "b", "locked"}, {"locked"}}, h.statements())
	requireApplied(t, s, ws, "each write is applied")
}

// TestCloseWhileQueued: Close makes the queued calls return an error
// wrapping ErrUnavailable; the calls in flight end as they would.
func TestCloseWhileQueued(t *testing.T) {
	s, h := newHeldStore(t)
	ctx := t.Context()
	st := benchState("queued")
	require.NoError(t, s.Put(ctx, store.Write{State: st}))

	wait := heldWrites(t, s, h)
	results := putAll(s, []context.Context{ctx}, []store.Write{{State: advance(st), Prev: st.Version}})
	requireQueued(t, s, 1, "an update made while statements are in flight queues")
	require.NoError(t, s.Close())
	require.ErrorIs(t, <-results[0], store.ErrUnavailable, "a queued call when the store closes")
	close(h.release)
	wait()
	assert.Len(t, h.statements(), pgstore.MaxSending, "the queued update was never sent")
}
