package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/taskstatus/taskstatus/store"
)

// OpenOrFallback chooses, once, where tasks are kept: it pings Redis
// through client, bounded by the store's timeout (see [WithTimeout]) and
// by ctx, and returns a new [Store] on client, configured by opts, if Redis
// answers, or fallback if it does not. It logs the choice on the logger of
// [WithLogger] (slog.Default() by default): at Info level for Redis, at
// Warn level with the error for the fallback.
//
// The choice is never revisited: if Redis goes down later, calls report
// [store.ErrUnavailable] rather than quietly reading another store, and if
// Redis comes up later, the fallback stays in use until the process
// restarts. This is the one place the package falls back, and only because
// the caller asked for it: a status read from a process-local store answers
// "not found" for tasks that other processes track, where "unavailable"
// would be the truth.
//
// The error is non-nil only for a nil client or fallback, an invalid
// option, or ctx ending before Redis answered; a Redis that does not answer
// is not an error. The caller keeps owning client and fallback, and closes
// them; and closes the Store if it gets one.
func OpenOrFallback(ctx context.Context, client redis.UniversalClient, fallback store.Store, opts ...Option) (store.Store, error) {
	if fallback == nil {
		return nil, errors.New("redisstore: OpenOrFallback: nil fallback")
	}
	s, err := New(client, opts...)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err = exec(pctx, s.direct, func(ctx context.Context) error { return client.Ping(ctx).Err() })
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("redisstore: OpenOrFallback: %w", context.Cause(ctx))
		}
		s.logger.WarnContext(ctx, "redisstore: Redis does not answer; keeping task status in the fallback store",
			slog.String("fallback", fmt.Sprintf("%T", fallback)), slog.Any("error", wrap("ping", err)))
		return fallback, nil
	}
	s.logger.InfoContext(ctx, "redisstore: keeping task status in Redis", slog.String("prefix", s.keys.prefix))
	return s, nil
}
