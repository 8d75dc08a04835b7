package redisstore

import (
	"context"
	"fmt"
	"log/slog"
)

// RedisLogger passes the lines that go-redis logs to a [slog.Logger], so
// that they take the service's format instead of going to standard error
// as raw text. go-redis has one logger for the whole process; install it
// once, at start-up:
//
//	redis.SetLogger(redisstore.NewRedisLogger(slog.Default()))
//
// Each line becomes one record at level Warn (go-redis logs what went
// wrong: a failed dial, a bad connection discarded), its message the text
// go-redis wrote, with the attribute logger=go-redis. A RedisLogger is
// safe for concurrent use.
type RedisLogger struct {
	logger *slog.Logger
}

// NewRedisLogger returns a RedisLogger that logs on logger, or on
// [slog.Default] at each line if logger is nil.
func NewRedisLogger(logger *slog.Logger) *RedisLogger {
	return &RedisLogger{logger: logger}
}

// Printf logs one line of go-redis. It implements go-redis's logging
// interface (see redis.SetLogger).
func (l *RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	logger := l.logger
	if logger == nil {
		logger = slog.Default()
	}
	logger.Log(ctx, slog.LevelWarn, fmt.Sprintf(format, v...), slog.String("logger", "go-redis"))
}
