package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskstatus/taskstatus/internal/statejson"
	"github.com/taskstatus/taskstatus/store"
)

var (
	_ store.Store   = (*Store)(nil)
	_ store.Watcher = (*Store)(nil)
	_ store.Lister  = (*Store)(nil)
	_ store.Store   = (*TxStore)(nil)
)

// errClosed is the cause of every call made after Close.
var errClosed = fmt.Errorf("store closed: %w", store.ErrUnavailable)

// Store is a [store.Store], [store.Watcher] and [store.Lister] that keeps
// tasks in PostgreSQL. Its methods are safe for concurrent use. The zero
// value is not usable: call [New].
type Store struct {
	pool      *pgxpool.Pool
	schema    string
	q         queries
	timeout   time.Duration
	now       func() time.Time
	retention time.Duration
	reapEvery time.Duration
	reapBatch int
	poll      time.Duration
	logger    *slog.Logger

	closed  atomic.Bool
	bg      context.Context // of the background work, canceled by Close
	stopBG  context.CancelFunc
	done    sync.WaitGroup  // the background goroutines
	watch   watching        // the watches and their poller (watch.go)
	decoded statejson.Cache // the states decoded last
	batch   batcher         // sends the updates of concurrent Puts together (batch.go)
}

// New returns a Store that keeps tasks in pool's database, in the tables
// that [Store.Migrate] creates. New does not contact PostgreSQL; the first
// call does. It starts the background reaper (see [WithReapInterval]);
// [Store.Close] stops it. The Store does not own pool: close it after the
// Store.
func New(pool *pgxpool.Pool, opts ...Option) (*Store, error) {
	if pool == nil {
		return nil, errors.New("pgstore: nil pool")
	}
	s := &Store{
		pool:      pool,
		schema:    DefaultSchema,
		timeout:   DefaultTimeout,
		now:       time.Now,
		retention: DefaultHistoryRetention,
		reapEvery: DefaultReapInterval,
		reapBatch: DefaultReapBatch,
		poll:      DefaultPollInterval,
		logger:    slog.Default(),
	}
	for _, opt := range opts {
		if err := opt(s); err != nil {
			return nil, err
		}
	}
	s.q = newQueries(s.schema)
	s.batch = batcher{pool: pool, q: &s.q, timeout: s.timeout}
	s.watch.watches = make(map[*watcher]struct{})
	s.bg, s.stopBG = context.WithCancel(context.Background())
	s.done.Go(func() { s.every(s.poll, s.pollOnce) })
	if s.reapEvery > 0 {
		s.done.Go(func() { s.every(s.reapEvery, s.reapOnce) })
	}
	return s, nil
}

// Close stops the reaper and ends every watch (their channels are
// closed), waits for the goroutines that ran them and for the statements
// in flight of queued Puts, and makes every Put still queued (see
// Batching) and every later call return an error wrapping
// [store.ErrUnavailable]. It does not close the pool, which the Store
// does not own. Calling Close again does nothing.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.stopBG()
	s.batch.close()
	s.watch.mu.Lock()   // a Watch that saw the store open has started its goroutine
	s.watch.mu.Unlock() //nolint:staticcheck // an empty critical section, as a barrier
	s.done.Wait()
	return nil
}

// querier runs statements: the pool, or a caller's transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// begin checks that operation op on task id can start, and returns the
// context that bounds it, which the caller must cancel.
func (s *Store) begin(ctx context.Context, op, id string) (context.Context, context.CancelFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("pgstore: %s %q: %w", op, id, err)
	}
	if s.closed.Load() {
		return nil, nil, fmt.Errorf("pgstore: %s %q: %w", op, id, errClosed)
	}
	if err := store.ValidateID(id); err != nil {
		return nil, nil, fmt.Errorf("pgstore: %s: %w", op, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	return ctx, cancel, nil
}

// Get implements [store.Store] with one SELECT.
func (s *Store) Get(ctx context.Context, id string) (store.State, error) {
	return s.get(ctx, s.pool, id)
}

func (s *Store) get(ctx context.Context, db querier, id string) (store.State, error) {
	ctx, cancel, err := s.begin(ctx, "get", id)
	if err != nil {
		return store.State{}, err
	}
	defer cancel()
	var inc []byte
	var version int64
	var data string
	err = db.QueryRow(ctx, s.q.get, id, s.now()).Scan(&inc, &version, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.State{}, fmt.Errorf("pgstore: get %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.State{}, wrap(fmt.Sprintf("get %q", id), err)
	}
	st, err := s.decodeRow(id, inc, version, data)
	if err != nil {
		return store.State{}, fmt.Errorf("pgstore: get %q: %w", id, err)
	}
	return st, nil
}

// decodeRow returns the state of task id from its row's columns, decoded
// through the store's cache of decoded states. An error wraps
// store.ErrCorrupt.
func (s *Store) decodeRow(id string, inc []byte, version int64, data string) (store.State, error) {
	st, err := s.decoded.Decode(id, data)
	if err != nil {
		return store.State{}, err
	}
	switch {
	case st.ID != id:
		return store.State{}, fmt.Errorf("%w: the state is of task %q", store.ErrCorrupt, st.ID)
	case st.Version != version:
		return store.State{}, fmt.Errorf("%w: version column is %d but the state has version %d", store.ErrCorrupt, version, st.Version)
	case st.Incarnation != string(inc):
		return store.State{}, fmt.Errorf("%w: incarnation column is %q but the state has %q", store.ErrCorrupt, inc, st.Incarnation)
	}
	return st, nil
}

// Put implements [store.Store] with one statement, which writes the task
// and, unless the write is quiet, its history row (see the package doc);
// the updates of calls made at once share a statement (see Batching). A
// write that is refused costs a second statement, which looks for its id
// among the task's latest. A write that [store.Write.Validate] refuses is
// refused before any round trip.
func (s *Store) Put(ctx context.Context, w store.Write) error {
	return s.put(ctx, s.pool, &s.batch, w)
}

func (s *Store) put(ctx context.Context, db querier, batch *batcher, w store.Write) error {
	ctx, cancel, err := s.begin(ctx, "put", w.State.ID)
	if err != nil {
		return err
	}
	defer cancel()
	if err := w.Validate(); err != nil {
		return fmt.Errorf("pgstore: put: %w", err)
	}
	r, err := newRow(w, s.now())
	if err != nil {
		return fmt.Errorf("pgstore: put %q: %w", w.State.ID, err)
	}
	op := func() string { return fmt.Sprintf("put %q version %d", w.State.ID, w.State.Version) }
	applied, err := s.write(ctx, db, batch, &r)
	if err != nil {
		return wrap(op(), err)
	}
	if applied {
		return nil
	}
	if w.ID != "" {
		var resent bool
		err := db.QueryRow(ctx, s.q.resent, w.State.ID, r.writeID, r.at).Scan(&resent)
		switch {
		case err == nil && resent:
			return nil
		case err != nil && !errors.Is(err, pgx.ErrNoRows):
			return wrap(op(), err)
		}
	}
	return fmt.Errorf("pgstore: %s: %w", op(), store.ErrConflict)
}

// write makes r and reports whether it applied: an update given a
// batcher through it, with the updates of other calls (batch.go), and any
// other write in a statement of its own on db.
func (s *Store) write(ctx context.Context, db querier, batch *batcher, r *row) (bool, error) {
	if batch != nil && r.prev > 0 {
		applied, err := batch.update(ctx, r)
		if !errors.Is(err, errAlone) {
			return applied, err
		}
	}
	sql := s.q.update
	if r.prev == 0 {
		sql = s.q.insert
	}
	return writeRow(ctx, db, sql, r)
}

// writeRow makes r on db with sql, updateSQL or insertSQL, and reports
// whether it applied.
func writeRow(ctx context.Context, db querier, sql string, r *row) (bool, error) {
	var applied bool
	err := db.QueryRow(ctx, sql, r.args()...).Scan(&applied)
	return applied, err
}

// row is a write as the values of its task's row: the arguments of the
// statements that make it.
type row struct {
	id        string
	prev      int64 // the version the write was computed from
	version   int64
	inc       []byte
	status    string
	kind      string
	labels    []string
	createdNS int64
	leaseNS   *int64     // NULL: ended, or no lease
	expires   *time.Time // NULL: never
	state     string     // the JSON of the store.State
	announce  bool       // watchers are told of it: not quiet
	writeID   []byte     // NULL: a write never resent keeps no id
	at        time.Time  // when it was made
}

// newRow returns the row of w, made at now.
func newRow(w store.Write, now time.Time) (row, error) {
	st := w.State
	data, err := statejson.Encode(st)
	if err != nil {
		return row{}, err
	}
	r := row{
		id: st.ID, prev: w.Prev, version: st.Version, inc: []byte(st.Incarnation), status: string(st.Status),
		kind: st.Kind, labels: labels(st.Labels), createdNS: st.CreatedAt.UnixNano(), state: string(data),
		announce: !w.Quiet, at: now,
	}
	if !st.Status.Terminal() && !st.LeaseUntil.IsZero() {
		ns := st.LeaseUntil.UnixNano()
		r.leaseNS = &ns
	}
	if w.TTL > 0 {
		at := now.Add(w.TTL)
		r.expires = &at
	}
	if w.ID != "" {
		r.writeID = []byte(w.ID)
	}
	return r, nil
}

// args returns the arguments of updateSQL and insertSQL for r.
func (r *row) args() []any {
	return []any{
		r.id, r.prev, r.version, r.inc, r.status, r.kind, r.labels,
		r.createdNS, r.leaseNS, r.expires, r.state, r.announce, r.writeID, store.MinWriteIDs, r.at,
	}
}

// labels returns the labels column of m: "key=value" each, in no order.
func labels(m map[string]string) []string {
	l := make([]string, 0, len(m))
	for k, v := range m {
		l = append(l, k+"="+v)
	}
	return l
}

// Delete implements [store.Store] with one DELETE. The task's history
// stays until its retention ends.
func (s *Store) Delete(ctx context.Context, id string) error {
	return s.delete(ctx, s.pool, id)
}

func (s *Store) delete(ctx context.Context, db querier, id string) error {
	ctx, cancel, err := s.begin(ctx, "delete", id)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := db.Exec(ctx, s.q.delete, id); err != nil {
		return wrap(fmt.Sprintf("delete %q", id), err)
	}
	return nil
}

// qualify returns sql with each {schema} replaced by the quoted name of
// schema.
func qualify(schema, sql string) string {
	return strings.ReplaceAll(sql, "{schema}", pgx.Identifier{schema}.Sanitize())
}
