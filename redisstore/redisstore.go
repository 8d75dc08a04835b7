package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskstatus/taskstatus/store"
)

var (
	_ store.Store   = (*Store)(nil)
	_ store.Watcher = (*Store)(nil)
	_ store.Lister  = (*Store)(nil)
)

// errClosed is the cause of every call made after Close.
var errClosed = fmt.Errorf("store closed: %w", store.ErrUnavailable)

// Store is a [store.Store], [store.Watcher] and [store.Lister] that keeps
// tasks in Redis.
// Its methods are safe for concurrent use. The zero value is not usable:
// call [New].
type Store struct {
	client  redis.UniversalClient
	direct  bool     // client ends commands when their context does (deadline.go)
	keys    keyspace // named under the prefix
	timeout time.Duration
	health  time.Duration
	logger  *slog.Logger
	compact bool // tasks that ended are written in the compact form (WithCompactEnded)

	batch    batcher   // sends the commands of concurrent calls together (batch.go)
	decoded  hashCache // the states decoded last
	closed   atomic.Bool
	watching watching // the watches and what serves them (watch.go)
}

// New returns a Store that keeps tasks through client, which may be a
// single-node, sentinel (failover) or cluster client. New does not contact
// Redis; the first call does. The Store does not own client: close it
// after the Store.
func New(client redis.UniversalClient, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	s := &Store{
		client:  client,
		direct:  honoursContext(client),
		keys:    keyspace{prefix: DefaultPrefix},
		timeout: DefaultTimeout,
		health:  DefaultHealthInterval,
		logger:  slog.Default(),
	}
	for _, opt := range opts {
		if err := opt(s); err != nil {
			return nil, err
		}
	}
	s.keys = newKeyspace(s.keys.prefix)
	s.batch = batcher{client: client, direct: s.direct, timeout: s.timeout}
	return s, nil
}

// Close ends every watch: their channels are closed, and a Watch call
// still waiting for its first state returns an error wrapping
// [store.ErrUnavailable]. It stops the goroutines that serve the watches
// and closes their pub/sub connection, and makes every later call return
// an error wrapping store.ErrUnavailable. It does not close the client,
// which the Store does not own. Calling Close again does nothing.
//
// Close waits for nothing but those goroutines, which end at once. A
// command they have in flight goes on in the background until its
// deadline, or the client's own timeouts (see Deadlines in the package
// doc), end it.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.watching.close()
	return nil
}

// ready returns why no operation can start now, if none can: ctx's
// error, or errClosed.
func (s *Store) ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return errClosed
	}
	return nil
}

// check reports why operation op on task id cannot start, if it cannot.
func (s *Store) check(ctx context.Context, op, id string) error {
	if err := s.ready(ctx); err != nil {
		return fmt.Errorf("redisstore: %s %q: %w", op, id, err)
	}
	if err := store.ValidateID(id); err != nil {
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	return nil
}

// Get implements [store.Store] with one HGETALL, in a pipeline with the
// calls made at once (batch.go).
func (s *Store) Get(ctx context.Context, id string) (store.State, error) {
	if err := s.check(ctx, "get", id); err != nil {
		return store.State{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	cmd := redis.NewMapStringStringCmd(ctx, "hgetall", s.keys.task(id))
	err := s.batch.process(ctx, cmd)
	var fields map[string]string
	if err == nil { // else cmd may still be in flight
		fields, err = cmd.Result()
	}
	if err != nil {
		return store.State{}, wrap(fmt.Sprintf("get %q", id), err)
	}
	if len(fields) == 0 {
		return store.State{}, fmt.Errorf("redisstore: get %q: %w", id, store.ErrNotFound)
	}
	st, err := decodeState(&s.decoded, id, fields)
	if err != nil {
		return store.State{}, fmt.Errorf("redisstore: get %q: %w", id, err)
	}
	return st, nil
}

// Put implements [store.Store] with one script (see the package doc), in a
// pipeline with the calls made at once (batch.go). A
// write that [store.Write.Validate] refuses is refused before any round
// trip.
func (s *Store) Put(ctx context.Context, w store.Write) error {
	if err := s.check(ctx, "put", w.State.ID); err != nil {
		return err
	}
	if err := w.Validate(); err != nil {
		return fmt.Errorf("redisstore: put: %w", err)
	}
	keys, args, err := s.putCall(w)
	if err != nil {
		return fmt.Errorf("redisstore: put %q: %w", w.State.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.script(ctx, putScript, keys, args...); err != nil {
		return wrap(fmt.Sprintf("put %q version %d", w.State.ID, w.State.Version), err)
	}
	return nil
}

// putCall returns the keys and arguments of the put script for w. With
// WithCompactEnded, a task that ended is written in the compact form where
// its state allows.
func (s *Store) putCall(w store.Write) (keys []string, args []any, _ error) {
	var data []byte // empty: the state is in the compact form's fields
	compact, ok := []any(nil), false
	if s.compact && w.State.Status.Terminal() {
		compact, ok = compactFields(w.State)
	}
	if !ok {
		var err error
		if data, err = encodeState(w.State); err != nil {
			return nil, nil, err
		}
	}
	var ttl int64
	if w.TTL > 0 {
		ttl = max(w.TTL.Milliseconds(), 1)
	}
	var announce []byte // empty: a quiet write is not published
	if !w.Quiet {
		announce = notice{ID: w.State.ID, Version: w.State.Version, Incarnation: w.State.Incarnation}.encode()
	}
	st := w.State
	sk := &s.keys.shard[shardOf(st.ID)]
	keys = []string{sk.tasks + st.ID, sk.expiry}
	args = []any{
		w.Prev, st.Version, st.Incarnation, data, ttl,
		writeToken(w.ID), store.MinWriteIDs, announce, s.keys.events(st.ID),
		sk.index, indexField(st), indexEntry(st.CreatedAt, st.ID), string(st.Status),
		sk.tasks,
	}
	return keys, append(args, compact...), nil
}

// script runs script with keys and args, in a pipeline with the calls
// made at once (batch.go), and returns its error.
func (s *Store) script(ctx context.Context, script *redis.Script, keys []string, args ...any) error {
	cmd, err := s.batch.run(ctx, script, keys, args...)
	if err != nil {
		return err
	}
	return cmd.Err()
}

// Delete implements [store.Store] with one script, which also tells the
// task's watchers that it is gone.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := s.check(ctx, "delete", id); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	sk := &s.keys.shard[shardOf(id)]
	err := s.script(ctx, deleteScript, []string{sk.tasks + id, sk.expiry},
		notice{ID: id}.encode(), s.keys.events(id), sk.index, id)
	if err != nil {
		return wrap(fmt.Sprintf("delete %q", id), err)
	}
	return nil
}
