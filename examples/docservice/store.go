package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

// maxMemoryTasks bounds the tasks kept in memory: beyond it, a new task
// evicts the one that expires soonest.
const maxMemoryTasks = 100_000

// openStore returns the store the configuration asks for and a function
// that closes it. With a Redis URL it uses Redis if Redis answers now, and
// memory otherwise (see [redisstore.OpenOrFallback]): the choice is made
// once and logged, and a Redis that goes down later is reported as
// unavailable, never replaced by memory.
func openStore(ctx context.Context, cfg config, logger *slog.Logger) (store.Store, func(), error) {
	mem, err := memstore.New(memstore.WithMaxTasks(maxMemoryTasks))
	if err != nil {
		return nil, nil, err
	}
	if cfg.redisURL == "" {
		logger.Info("store: memory; set VALKEY_URL or REDIS_URL to share tasks between instances")
		return mem, func() { mem.Close() }, nil
	}

	opts, err := redis.ParseURL(cfg.redisURL)
	if err != nil {
		mem.Close()
		return nil, nil, fmt.Errorf("redis URL: %w", err)
	}
	opts.ContextTimeoutEnabled = true // let the store's deadlines bound socket I/O
	opts.DisableIdentity = true       // Redis 7.0 refuses CLIENT SETINFO
	// go-redis logs what it does not return (failed dials during an
	// outage) through a logger of its own, which is the program's to set:
	// it goes to the service's log, in its format.
	redis.SetLogger(redisstore.NewRedisLogger(logger))
	client := redis.NewClient(opts)
	st, err := redisstore.OpenOrFallback(ctx, client, mem,
		redisstore.WithPrefix(cfg.redisPrefix), redisstore.WithLogger(logger))
	closeAll := func() {
		if rs, ok := st.(*redisstore.Store); ok {
			_ = rs.Close() // ends the watches still open
		}
		mem.Close()
		if err := client.Close(); err != nil {
			logger.Warn("closing the Redis client", "err", err)
		}
	}
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	if _, ok := st.(*redisstore.Store); ok {
		logger.Info("store: redis", "addr", opts.Addr, "db", opts.DB, "prefix", cfg.redisPrefix)
	} else {
		logger.Warn("store: memory, because Redis did not answer at start-up; restart to use it",
			"addr", opts.Addr)
	}
	return st, closeAll, nil
}
