package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskstatus/taskstatus/store"
)

var (
	_ store.Store   = (*Store)(nil)
	_ store.Watcher = (*Store)(nil)
)

// DefaultTimeout bounds every call to Redis when [WithTimeout] is not given.
const DefaultTimeout = 2 * time.Second

// Store is a [store.Store] and [store.Watcher] that keeps tasks in Redis.
// Its methods are safe for concurrent use. The zero value is not usable:
// call [New].
type Store struct {
	client   redis.UniversalClient
	prefix   string
	timeout  time.Duration
	watching watching // the watches' shared pub/sub connection (watch.go)
}

// Option configures a Store.
type Option func(*Store) error

// WithPrefix sets the prefix of every key, so that several applications or
// tests can share a database. The default is [DefaultPrefix]. A prefix may
// be empty but may not contain '{' or '}', which would break the hash tag
// that keeps a task's keys in one Redis Cluster slot.
func WithPrefix(prefix string) Option {
	return func(s *Store) error {
		if strings.ContainsAny(prefix, "{}") {
			return fmt.Errorf("redisstore: WithPrefix(%q): contains '{' or '}'", prefix)
		}
		s.prefix = prefix
		return nil
	}
}

// WithTimeout bounds every call to Redis, and the time a watcher keeps
// trying to reconnect, to d. The default is [DefaultTimeout]. A call that
// runs out of time reports an error wrapping [store.ErrUnavailable].
//
// go-redis applies a context's deadline to reads and writes on the
// connection only if the client has ContextTimeoutEnabled set; without it
// the client's ReadTimeout and WriteTimeout (3s by default) apply instead.
func WithTimeout(d time.Duration) Option {
	return func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("redisstore: WithTimeout(%v): not positive", d)
		}
		s.timeout = d
		return nil
	}
}

// New returns a Store that keeps tasks through client, which may be a
// single-node, sentinel (failover) or cluster client. New does not contact
// Redis; the first call does. The Store does not own client: close it after
// the last call.
func New(client redis.UniversalClient, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	s := &Store{client: client, prefix: DefaultPrefix, timeout: DefaultTimeout}
	for _, opt := range opts {
		if err := opt(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// check reports why operation op on task id cannot start, if it cannot.
func (s *Store) check(ctx context.Context, op, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: %s %q: %w", op, id, err)
	}
	if err := store.ValidateID(id); err != nil {
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	return nil
}

// Get implements [store.Store] with one HGETALL.
func (s *Store) Get(ctx context.Context, id string) (store.State, error) {
	if err := s.check(ctx, "get", id); err != nil {
		return store.State{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	fields, err := s.client.HGetAll(ctx, taskKey(s.prefix, id)).Result()
	if err != nil {
		return store.State{}, wrap(fmt.Sprintf("get %q", id), err)
	}
	return s.decode("get", id, fields)
}

// decode returns the state in the fields of task id's hash for operation op.
func (s *Store) decode(op, id string, fields map[string]string) (store.State, error) {
	if len(fields) == 0 {
		return store.State{}, fmt.Errorf("redisstore: %s %q: %w", op, id, store.ErrNotFound)
	}
	st, err := decodeState(id, fields)
	if err != nil {
		return store.State{}, fmt.Errorf("redisstore: %s %q: %w", op, id, err)
	}
	return st, nil
}

// Put implements [store.Store] with one script (see the package doc).
func (s *Store) Put(ctx context.Context, st store.State, ttl time.Duration) error {
	if err := s.check(ctx, "put", st.ID); err != nil {
		return err
	}
	if err := st.Validate(); err != nil {
		return fmt.Errorf("redisstore: put: %w", err)
	}
	data, err := encodeState(st)
	if err != nil {
		return fmt.Errorf("redisstore: put %q: %w", st.ID, err)
	}
	var ms int64
	if ttl > 0 {
		ms = max(ttl.Milliseconds(), 1)
	}
	putID := strconv.FormatUint(rand.Uint64(), 36)

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err = putScript.Run(ctx, s.client, []string{taskKey(s.prefix, st.ID)},
		st.Version, data, ms, putID, notice{ID: st.ID, Version: st.Version}.encode(),
		eventsChannel(s.prefix, st.ID)).Err()
	if err != nil {
		return wrap(fmt.Sprintf("put %q version %d", st.ID, st.Version), err)
	}
	return nil
}

// Delete implements [store.Store] with one script, which also tells the
// task's watchers that it is gone.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := s.check(ctx, "delete", id); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := deleteScript.Run(ctx, s.client, []string{taskKey(s.prefix, id)},
		notice{ID: id}.encode(), eventsChannel(s.prefix, id)).Err(); err != nil {
		return wrap(fmt.Sprintf("delete %q", id), err)
	}
	return nil
}
