package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/pgstore"
	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

// maxMemoryTasks bounds the tasks kept in memory: beyond it, a new task
// evicts the one that expires soonest.
const maxMemoryTasks = 100_000

// openStore returns the store the configuration asks for and a function
// that closes it. With a database URL it uses PostgreSQL (see
// [openPostgres]). With a Redis URL it uses Redis if Redis answers now, and
// memory otherwise (see [redisstore.OpenOrFallback]): the choice is made
// once and logged, and a Redis that goes down later is reported as
// unavailable, never replaced by memory.
func openStore(ctx context.Context, cfg config, logger *slog.Logger) (store.Store, func(), error) {
	if cfg.databaseURL != "" {
		return openPostgres(ctx, cfg, logger)
	}
	mem, err := memstore.New(memstore.WithMaxTasks(maxMemoryTasks))
	if err != nil {
		return nil, nil, err
	}
	if cfg.redisURL == "" {
		logger.Info("store: memory; set DATABASE_URL, VALKEY_URL or REDIS_URL to share tasks between instances")
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

// migrateTimeout bounds the migration of the tables at start-up.
const migrateTimeout = 30 * time.Second

// openPostgres returns a pgstore on the database of cfg.databaseURL, its
// tables created or brought up to date, and a function that closes it. A
// database that does not answer at start-up is an error: the service was
// asked to keep tasks and their history there, and memory would keep
// neither.
func openPostgres(ctx context.Context, cfg config, logger *slog.Logger) (store.Store, func(), error) {
	poolCfg, err := pgxpool.ParseConfig(cfg.databaseURL)
	if err != nil {
		return nil, nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	st, err := pgstore.New(pool, pgstore.WithSchema(cfg.schema), pgstore.WithLogger(logger))
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	closeAll := func() {
		_ = st.Close() // ends the watches and the reaper
		pool.Close()
	}
	mctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	if err := st.Migrate(mctx); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("PostgreSQL at DATABASE_URL: %w", err)
	}
	logger.Info("store: postgres", "host", poolCfg.ConnConfig.Host, "port", poolCfg.ConnConfig.Port,
		"database", poolCfg.ConnConfig.Database, "schema", cfg.schema)
	return st, closeAll, nil
}
