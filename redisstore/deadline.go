package redisstore

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// This file makes every call to Redis return by its context's deadline,
// whatever the client's options.
//
// go-redis bounds a command by its context only if the client has
// ContextTimeoutEnabled set. Without it (the default), a command waits
// for the client's ReadTimeout and WriteTimeout (5 seconds each), and a
// new connection for DialTimeout, on a server that accepts connections
// but does not answer: a caller with a 1 second deadline would wait 5.
// For such a client, a call runs in a goroutine of its own, and the caller
// stops waiting for it when its context is done; the goroutine ends when
// the client's own timeouts end the call. A client that honours contexts
// is called directly, which costs no goroutine.

// honoursContext reports whether client ends a command when its context
// is done: whether it has ContextTimeoutEnabled set. A client whose
// options cannot be read is assumed not to.
func honoursContext(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// result is the outcome of a call made in a goroutine of its own.
type result[T any] struct {
	val T
	err error
}

// call returns fn(ctx), a call through the client, and returns by the
// time ctx is done: fn is called directly if direct (the client honours
// contexts), and otherwise in a goroutine of its own, which call leaves
// to finish alone once ctx is done, returning ctx's error. fn must then
// share no memory with the caller but its result.
//
// The watches' goroutines call with direct false whatever the client, so
// that they stop at once when the watches end: go-redis stops a call at
// its context's deadline, but not when the context is canceled.
func call[T any](ctx context.Context, direct bool, fn func(context.Context) (T, error)) (T, error) {
	if direct {
		return fn(ctx)
	}
	done := make(chan result[T], 1)
	go func() {
		v, err := fn(ctx)
		done <- result[T]{v, err}
	}()
	select {
	case r := <-done:
		return r.val, r.err
	case <-ctx.Done():
	}
	select { // a call that returned as ctx ended counts
	case r := <-done:
		return r.val, r.err
	default:
		var zero T
		return zero, ctx.Err()
	}
}

// exec is call for fn that returns only an error.
func exec(ctx context.Context, direct bool, fn func(context.Context) error) error {
	_, err := call(ctx, direct, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, fn(ctx)
	})
	return err
}
