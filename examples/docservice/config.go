package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/taskstatus/taskstatus/redisstore"
)

// config is the service's configuration, from flags and environment
// variables.
type config struct {
	addr            string
	delayScale      float64
	shutdownTimeout time.Duration
	logLevel        slog.Level
	logFormat       string
	redisURL        string // "" keeps tasks in memory
	redisPrefix     string
}

// parseConfig reads the configuration from the environment, through
// getenv, and then from the command-line arguments args, which win.
// It writes usage and flag errors to stderr.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	cfg := config{redisPrefix: redisstore.DefaultPrefix}
	fs := flag.NewFlagSet("docservice", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", ":8053", "address to listen on (env ADDR, or PORT)")
	fs.Float64Var(&cfg.delayScale, "delay-scale", 1, "factor applied to the simulated work of each step (env DELAY_SCALE)")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", 10*time.Second,
		"how long in-flight tasks may go on after SIGINT or SIGTERM before they are canceled (env SHUTDOWN_TIMEOUT)")
	fs.TextVar(&cfg.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error (env LOG_LEVEL)")
	fs.StringVar(&cfg.logFormat, "log-format", "text", "log format: text or json (env LOG_FORMAT)")

	if port := getenv("PORT"); port != "" { // ADDR, below, wins
		if err := fs.Set("addr", ":"+port); err != nil {
			return config{}, fmt.Errorf("PORT: %w", err)
		}
	}
	for name, env := range map[string]string{
		"addr":             "ADDR",
		"delay-scale":      "DELAY_SCALE",
		"shutdown-timeout": "SHUTDOWN_TIMEOUT",
		"log-level":        "LOG_LEVEL",
		"log-format":       "LOG_FORMAT",
	} {
		if v := getenv(env); v != "" {
			if err := fs.Set(name, v); err != nil {
				return config{}, fmt.Errorf("%s=%q: %w", env, v, err)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	switch {
	case cfg.delayScale < 0:
		return config{}, errors.New("delay scale must not be negative")
	case cfg.shutdownTimeout < 0:
		return config{}, errors.New("shutdown timeout must not be negative")
	case cfg.logFormat != "text" && cfg.logFormat != "json":
		return config{}, fmt.Errorf("log format %q: want text or json", cfg.logFormat)
	}

	useRedis := true
	if v := getenv("ENABLE_CACHE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return config{}, fmt.Errorf("ENABLE_CACHE=%q: want true or false", v)
		}
		useRedis = b
	}
	if useRedis {
		cfg.redisURL = getenv("VALKEY_URL")
		if cfg.redisURL == "" {
			cfg.redisURL = getenv("REDIS_URL")
		}
	}
	if p := getenv("TASKSTATUS_PREFIX"); p != "" {
		cfg.redisPrefix = p
	}
	return cfg, nil
}

// newLogger returns the logger the configuration asks for, writing to w.
func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	if cfg.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
