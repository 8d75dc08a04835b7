package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/taskstatus/taskstatus/pgstore"
	"github.com/taskstatus/taskstatus/redisstore"
)

// config is the service's configuration, from flags and environment
// variables.
type config struct {
	addr            string
	delayScale      float64
	shutdownTimeout time.Duration
	lease           time.Duration // 0: tasks hold no lease
	rescueEvery     time.Duration // 0: abandoned tasks are not failed
	logLevel        slog.Level
	logFormat       string
	databaseURL     string // PostgreSQL; wins over redisURL
	schema          string // of the PostgreSQL tables
	redisURL        string // "" keeps tasks in memory, unless databaseURL is set
	redisPrefix     string
}

// parseConfig reads the configuration from the environment, through
// getenv, and then from the command-line arguments args, which win.
// It writes usage and flag errors to stderr.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	cfg := config{redisPrefix: redisstore.DefaultPrefix, schema: pgstore.DefaultSchema}
	fs := flag.NewFlagSet("docservice", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", ":8053", "address to listen on (env ADDR, or PORT)")
	fs.Float64Var(&cfg.delayScale, "delay-scale", 1, "factor applied to the simulated work of each step (env DELAY_SCALE)")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", 10*time.Second,
		"how long in-flight tasks may go on after SIGINT or SIGTERM before they are canceled (env SHUTDOWN_TIMEOUT)")
	fs.DurationVar(&cfg.lease, "lease", 30*time.Second,
		"how long a task's lease lasts: a task whose process stops renewing it is abandoned, and can be submitted again (env TASK_LEASE; 0 keeps no lease)")
	fs.DurationVar(&cfg.rescueEvery, "rescue-every", 10*time.Second,
		"how often tasks whose process died (their lease ended) are looked for and failed with TaskAbandoned (env RESCUE_EVERY; 0 turns it off)")
	fs.TextVar(&cfg.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error (env LOG_LEVEL)")
	fs.StringVar(&cfg.logFormat, "log-format", "text", "log format: text or json (env LOG_FORMAT)")

	if err := setFromEnv(fs, getenv); err != nil {
		return config{}, err
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := cfg.check(); err != nil {
		return config{}, err
	}
	if err := cfg.setStore(getenv); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// setFromEnv sets the flags of fs that the environment, read through
// getenv, gives a value.
func setFromEnv(fs *flag.FlagSet, getenv func(string) string) error {
	if port := getenv("PORT"); port != "" { // ADDR, below, wins
		if err := fs.Set("addr", ":"+port); err != nil {
			return fmt.Errorf("PORT: %w", err)
		}
	}
	for name, env := range map[string]string{
		"addr":             "ADDR",
		"delay-scale":      "DELAY_SCALE",
		"shutdown-timeout": "SHUTDOWN_TIMEOUT",
		"lease":            "TASK_LEASE",
		"rescue-every":     "RESCUE_EVERY",
		"log-level":        "LOG_LEVEL",
		"log-format":       "LOG_FORMAT",
	} {
		if v := getenv(env); v != "" {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("%s=%q: %w", env, v, err)
			}
		}
	}
	return nil
}

// check reports a setting that is out of range.
func (cfg *config) check() error {
	switch {
	case cfg.delayScale < 0:
		return errors.New("delay scale must not be negative")
	case cfg.shutdownTimeout < 0:
		return errors.New("shutdown timeout must not be negative")
	case cfg.lease < 0:
		return errors.New("lease must not be negative")
	case cfg.rescueEvery < 0:
		return errors.New("rescue interval must not be negative")
	case cfg.logFormat != "text" && cfg.logFormat != "json":
		return fmt.Errorf("log format %q: want text or json", cfg.logFormat)
	}
	return nil
}

// setStore sets where tasks are kept from the environment, read through
// getenv: in PostgreSQL if DATABASE_URL names one, else in Redis if
// VALKEY_URL (or REDIS_URL) names one and ENABLE_CACHE is not false.
func (cfg *config) setStore(getenv func(string) string) error {
	cfg.databaseURL = getenv("DATABASE_URL")
	if s := getenv("TASKSTATUS_SCHEMA"); s != "" {
		cfg.schema = s
	}
	useRedis := true
	if v := getenv("ENABLE_CACHE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("ENABLE_CACHE=%q: want true or false", v)
		}
		useRedis = b
	}
	if useRedis {
		cfg.redisURL = cmp.Or(getenv("VALKEY_URL"), getenv("REDIS_URL"))
	}
	if p := getenv("TASKSTATUS_PREFIX"); p != "" {
		cfg.redisPrefix = p
	}
	return nil
}

// newLogger returns the logger the configuration asks for, writing to w.
func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	if cfg.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
