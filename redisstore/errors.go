package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/taskstatus/taskstatus/store"
)

// unavailablePrefixes are the server errors that mean Redis cannot answer
// now but may soon: loading its data, a replica or a cluster without a
// writable master, a slot being moved (TRYAGAIN, and the MOVED or ASK
// redirections the client gave up following), a script running too long
// (BUSY), memory full (OOM), too few replicas or a failing disk to take a
// write (NOREPLICAS, MISCONF), and too many clients. A change refused this
// way is kept and written later, never dropped as if Redis had refused it
// for good.
var unavailablePrefixes = []string{
	"LOADING", "READONLY", "CLUSTERDOWN", "MASTERDOWN", "TRYAGAIN", "MOVED", "ASK",
	"BUSY", "OOM", "NOREPLICAS", "MISCONF",
	"max number of clients reached", // after "ERR ", which HasErrorPrefix skips
}

// classify returns the sentinel error of package store that err, returned
// by the Redis client, stands for, or nil if none does. A canceled context
// stands for none: the caller gave up, the store did not fail.
func classify(err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return nil
	case errors.Is(err, redis.Nil):
		return store.ErrNotFound
	case redis.HasErrorPrefix(err, "CONFLICT"):
		return store.ErrConflict
	case redis.HasErrorPrefix(err, "CORRUPT"), redis.HasErrorPrefix(err, "WRONGTYPE"):
		return store.ErrCorrupt
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, redis.ErrClosed),
		errors.Is(err, redis.ErrPoolTimeout),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE):
		return store.ErrUnavailable
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return store.ErrUnavailable
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return store.ErrUnavailable
	}
	for _, p := range unavailablePrefixes {
		if redis.HasErrorPrefix(err, p) {
			return store.ErrUnavailable
		}
	}
	return nil
}

// wrap returns err from the client as the error of op, such as `get "x"`,
// wrapping the sentinel error that classify finds as well as err itself.
func wrap(op string, err error) error {
	if kind := classify(err); kind != nil {
		return fmt.Errorf("redisstore: %s: %w: %w", op, kind, err)
	}
	return fmt.Errorf("redisstore: %s: %w", op, err)
}
