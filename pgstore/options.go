package pgstore

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of the options.
const (
	DefaultSchema           = "taskstatus"           // see WithSchema
	DefaultTimeout          = 2 * time.Second        // see WithTimeout
	DefaultHistoryRetention = 30 * 24 * time.Hour    // see WithHistoryRetention
	DefaultReapInterval     = time.Minute            // see WithReapInterval
	DefaultReapBatch        = 1000                   // see WithReapBatch
	DefaultPollInterval     = 250 * time.Millisecond // see WithPollInterval
)

// Option configures a Store, for [New]. An option given an invalid value
// makes New return an error.
type Option func(*Store) error

// WithSchema sets the PostgreSQL schema that holds the store's tables,
// so that several applications or tests can share a database. The default
// is [DefaultSchema]. [Store.Migrate] creates it.
func WithSchema(name string) Option {
	return func(s *Store) error {
		if name == "" {
			return errors.New("pgstore: WithSchema: empty name")
		}
		s.schema = name
		return nil
	}
}

// WithTimeout bounds every call to PostgreSQL to d: a call returns by
// then, or by its context's deadline if that comes first, with an error
// wrapping [store.ErrUnavailable]. The default is [DefaultTimeout].
func WithTimeout(d time.Duration) Option {
	return func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("pgstore: WithTimeout(%v): not positive", d)
		}
		s.timeout = d
		return nil
	}
}

// WithClock sets the clock that tasks expire by and history is kept by.
// The default is [time.Now]. Every instance that shares the tables should
// have the same time: a task expires when the clock of the instance that
// reads it says so.
func WithClock(now func() time.Time) Option {
	return func(s *Store) error {
		if now == nil {
			return errors.New("pgstore: WithClock: nil function")
		}
		s.now = now
		return nil
	}
}

// WithHistoryRetention sets how long the history of a task's writes is
// kept (see [Store.History]), counted from each write, whatever the
// task's own time to live. The default is [DefaultHistoryRetention].
func WithHistoryRetention(d time.Duration) Option {
	return func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("pgstore: WithHistoryRetention(%v): not positive", d)
		}
		s.retention = d
		return nil
	}
}

// WithReapInterval sets how often the store removes expired tasks and the
// history past its retention (see [Store.Reap]) in the background; 0 turns
// it off, for a program that calls Reap itself. The default is
// [DefaultReapInterval].
func WithReapInterval(d time.Duration) Option {
	return func(s *Store) error {
		if d < 0 {
			return fmt.Errorf("pgstore: WithReapInterval(%v): negative", d)
		}
		s.reapEvery = d
		return nil
	}
}

// WithReapBatch sets how many rows one statement of [Store.Reap] removes
// at most, which bounds how long it holds their locks. The default is
// [DefaultReapBatch].
func WithReapBatch(n int) Option {
	return func(s *Store) error {
		if n <= 0 {
			return fmt.Errorf("pgstore: WithReapBatch(%d): not positive", n)
		}
		s.reapBatch = n
		return nil
	}
}

// WithPollInterval sets how often the tasks being watched are read for
// changes (see Watches in the package doc): the longest a watcher waits to
// hear of a write. The default is [DefaultPollInterval].
func WithPollInterval(d time.Duration) Option {
	return func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("pgstore: WithPollInterval(%v): not positive", d)
		}
		s.poll = d
		return nil
	}
}

// WithLogger sets the logger the store tells of the failures of its
// background work: reaping and watching. The default is [slog.Default].
func WithLogger(logger *slog.Logger) Option {
	return func(s *Store) error {
		if logger == nil {
			return errors.New("pgstore: WithLogger: nil logger")
		}
		s.logger = logger
		return nil
	}
}
