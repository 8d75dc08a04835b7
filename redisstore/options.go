package redisstore

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// DefaultTimeout bounds every call to Redis when [WithTimeout] is not given.
const DefaultTimeout = 2 * time.Second

// DefaultHealthInterval is how often the watches' connection and tasks are
// checked when [WithHealthInterval] is not given.
const DefaultHealthInterval = 3 * time.Second

// Option configures a Store, for [New] and [OpenOrFallback]. An option
// given an invalid value makes them return an error.
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
		s.keys.prefix = prefix
		return nil
	}
}

// WithTimeout bounds every call to Redis to d: a call returns by then, or
// by its context's deadline if that comes first, with an error wrapping
// [store.ErrUnavailable], whatever the client's options (see Deadlines in
// the package doc). It also bounds how long a Watch waits for its first
// state, and, with the health interval, how long a watch goes on while
// its task cannot be read (see Health and freshness in the package doc).
// The default is [DefaultTimeout].
func WithTimeout(d time.Duration) Option {
	return func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("redisstore: WithTimeout(%v): not positive", d)
		}
		s.timeout = d
		return nil
	}
}

// WithHealthInterval sets how often the pub/sub connection that the
// watches share is checked (a PING, twice per interval unless a reply is
// due already: one not answered within d makes it replaced), and how
// often the watched tasks are checked for changes whose notification was
// lost and for tasks that disappeared (see Health and freshness in the
// package doc). A shorter interval makes watches fresher at the cost of
// more small commands: at most two PINGs, and one command per watched task
// in one round trip, per interval. The default is [DefaultHealthInterval].
func WithHealthInterval(d time.Duration) Option {
	return func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("redisstore: WithHealthInterval(%v): not positive", d)
		}
		s.health = d
		return nil
	}
}

// WithCompactEnded makes the Store write each task that ended in the
// compact form (see Stored form in the package doc), which Redis keeps in
// less than half the memory of the JSON form: 888 bytes instead of 1,946
// for a finished task of five steps (BenchmarkMemoryPerTask). Ended tasks,
// kept until they expire, are most of what a Redis holds. The cost is in
// reading: such a task is read whole, field by field, and a page of 50
// took 1.3 times as long (BenchmarkListPage, 100,000 ended tasks: p50
// 574 µs against 435 µs, p99 1.5 ms against 1.0 ms). Writes cost the
// same (BenchmarkLifecycle). Every Store reads both forms, whatever its
// options, so that the instances of a service can turn it on one by one;
// a Store without it reads the compact tasks of a page in one more round
// trip.
func WithCompactEnded() Option {
	return func(s *Store) error {
		s.compact = true
		return nil
	}
}

// WithLogger sets the logger that [OpenOrFallback] tells of its choice,
// and that a Store tells of the troubles of its watches' connection: a
// connection replaced, watches ended because Redis did not answer. The
// default is [slog.Default]. It does not change what go-redis itself logs;
// see [NewRedisLogger] for that.
func WithLogger(logger *slog.Logger) Option {
	return func(s *Store) error {
		if logger == nil {
			return errors.New("redisstore: WithLogger: nil logger")
		}
		s.logger = logger
		return nil
	}
}
