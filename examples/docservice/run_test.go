package main

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/internal/pgtest"
)

// redisAddrVar names the environment variable that gives the address of a
// Redis server for the tests; CI sets it to 127.0.0.1:6379.
const redisAddrVar = "TASKSTATUS_REDIS_ADDR"

// redisEnv returns the environment that points the service at the Redis
// server named by TASKSTATUS_REDIS_ADDR, with a key prefix of its own whose
// keys are deleted when t ends. It skips t if the variable is not set, and
// fails it if Redis does not answer.
func redisEnv(t *testing.T) []string {
	t.Helper()
	addr := os.Getenv(redisAddrVar)
	if addr == "" {
		t.Skipf("%s is not set: set it to the address of a Redis server, such as 127.0.0.1:6379, to run this test", redisAddrVar)
	}
	client := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	t.Cleanup(func() { client.Close() })
	require.NoError(t, client.Ping(t.Context()).Err(), "%s=%s: Redis does not answer", redisAddrVar, addr)

	prefix := "docservice-test-" + rand.Text() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, err := client.Keys(ctx, prefix+"*").Result() // a test's few keys
		if assert.NoError(t, err) && len(keys) > 0 {
			assert.NoError(t, client.Del(ctx, keys...).Err())
		}
	})
	return []string{"VALKEY_URL=redis://" + addr + "/0", "TASKSTATUS_PREFIX=" + prefix}
}

// postgresEnv returns the environment that points the service at the
// PostgreSQL server TASKSTATUS_POSTGRES_URL names, in a schema of the
// test's own. It skips t if the variable is unset.
func postgresEnv(t *testing.T) []string {
	url := pgtest.URL(t)
	return []string{"DATABASE_URL=" + url, "TASKSTATUS_SCHEMA=" + pgtest.Schema(t, pgtest.Pool(t, url))}
}

// getenv returns a function that reads the environment env, a list of
// NAME=value.
func getenv(env ...string) func(string) string {
	m := make(map[string]string)
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		m[name] = value
	}
	return func(name string) string { return m[name] }
}

// TestRun runs the whole service in the test's process, with each store.
func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   func(t *testing.T) []string
		store string // the start-up log line that names the store
	}{
		{"memory", func(*testing.T) []string { return nil }, "store: memory;"},
		{"cache disabled", func(*testing.T) []string {
			return []string{"VALKEY_URL=redis://127.0.0.1:1/0", "ENABLE_CACHE=false"}
		}, "store: memory;"},
		{"fallback", func(*testing.T) []string {
			return []string{"REDIS_URL=redis://127.0.0.1:1/0"} // nothing listens on port 1
		}, "store: memory, because Redis did not answer"},
		{"redis", redisEnv, "store: redis"},
		{"postgres", func(t *testing.T) []string {
			// DATABASE_URL wins: were Redis chosen, the service would
			// fall back to memory, for nothing listens on port 1.
			return append(postgresEnv(t), "VALKEY_URL=redis://127.0.0.1:1/0")
		}, "store: postgres"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append(tc.env(t), "DELAY_SCALE=0", "LOG_FORMAT=json")
			stderr := &lockedBuffer{}
			addr := make(chan string, 1)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, getenv(env...),
					&firstLine{prefix: "listening on ", ch: addr}, stderr)
			}()
			defer func() {
				if t.Failed() {
					t.Logf("logs:\n%s", stderr)
				}
			}()
			url := "http://" + wait(t, addr, 30*time.Second)

			resp := submit(t, url, request(t, "doc-123", nil), "abc-456-def")
			doc := await(t, url+resp["status_url"].(string), ended)
			assert.Equal(t, "success", doc["status"])
			assert.Equal(t, "abc-456-def", doc["correlation_id"])
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/process/documents?status=success", nil)
			require.NoError(t, err)
			list, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(list.Body)
			require.NoError(t, list.Body.Close())
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, list.StatusCode, "%s", body)
			assert.Contains(t, string(body), "abc-456-def", "the task is listed")

			cancel()
			require.NoError(t, wait(t, done, 30*time.Second))
			assert.Contains(t, stderr.String(), `"msg":"`+tc.store)
		})
	}
}

func TestRunErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  []string
	}{
		{"bad flag", []string{"-nope"}, nil},
		{"argument", []string{"extra"}, nil},
		{"negative delay scale", []string{"-delay-scale", "-1"}, nil},
		{"bad DELAY_SCALE", nil, []string{"DELAY_SCALE=fast"}},
		{"bad LOG_LEVEL", nil, []string{"LOG_LEVEL=loud"}},
		{"bad log format", []string{"-log-format", "xml"}, nil},
		{"negative rescue interval", nil, []string{"RESCUE_EVERY=-1s"}},
		{"bad ENABLE_CACHE", nil, []string{"ENABLE_CACHE=maybe"}},
		{"bad redis URL", nil, []string{"VALKEY_URL=http://localhost"}},
		{"bad database URL", nil, []string{"DATABASE_URL=postgres://%zz"}},
		{"database down", nil, []string{"DATABASE_URL=postgres://postgres@127.0.0.1:1/postgres?connect_timeout=1"}},
		{"bad address", []string{"-addr", "127.0.0.1:-1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(t.Context(), tc.args, getenv(tc.env...), io.Discard, io.Discard)
			assert.Error(t, err)
		})
	}
	assert.NoError(t, run(t.Context(), []string{"-h"}, getenv(), io.Discard, io.Discard))
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want config
	}{{
		name: "defaults",
		want: config{addr: ":8053", delayScale: 1, shutdownTimeout: 10 * time.Second, lease: 30 * time.Second, rescueEvery: 10 * time.Second,
			logLevel: slog.LevelInfo, logFormat: "text", redisPrefix: "taskstatus:", schema: "taskstatus"},
	}, {
		name: "environment",
		env: []string{"PORT=9000", "DELAY_SCALE=0.5", "SHUTDOWN_TIMEOUT=3s", "LOG_LEVEL=debug",
			"LOG_FORMAT=json", "REDIS_URL=redis://r:6379/1", "TASKSTATUS_PREFIX=p:", "TASK_LEASE=5s", "RESCUE_EVERY=1s"},
		want: config{addr: ":9000", delayScale: 0.5, shutdownTimeout: 3 * time.Second, lease: 5 * time.Second, rescueEvery: time.Second,
			logLevel: slog.LevelDebug, logFormat: "json", redisURL: "redis://r:6379/1", redisPrefix: "p:", schema: "taskstatus"},
	}, {
		name: "flags win",
		args: []string{"-addr", "127.0.0.1:1", "-delay-scale", "2", "-log-level", "warn"},
		env:  []string{"ADDR=:7000", "PORT=9000", "DELAY_SCALE=0.5", "LOG_LEVEL=debug"},
		want: config{addr: "127.0.0.1:1", delayScale: 2, shutdownTimeout: 10 * time.Second, lease: 30 * time.Second, rescueEvery: 10 * time.Second,
			logLevel: slog.LevelWarn, logFormat: "text", redisPrefix: "taskstatus:", schema: "taskstatus"},
	}, {
		name: "ADDR wins over PORT, VALKEY_URL over REDIS_URL",
		env:  []string{"ADDR=:7000", "PORT=9000", "VALKEY_URL=redis://v:6379/0", "REDIS_URL=redis://r:6379/0"},
		want: config{addr: ":7000", delayScale: 1, shutdownTimeout: 10 * time.Second, lease: 30 * time.Second, rescueEvery: 10 * time.Second,
			logLevel: slog.LevelInfo, logFormat: "text", redisURL: "redis://v:6379/0", redisPrefix: "taskstatus:", schema: "taskstatus"},
	}, {
		name: "DATABASE_URL wins over VALKEY_URL",
		env:  []string{"DATABASE_URL=postgres://db/app", "VALKEY_URL=redis://v:6379/0", "TASKSTATUS_SCHEMA=docs"},
		want: config{addr: ":8053", delayScale: 1, shutdownTimeout: 10 * time.Second, lease: 30 * time.Second, rescueEvery: 10 * time.Second,
			logLevel: slog.LevelInfo, logFormat: "text", databaseURL: "postgres://db/app", schema: "docs",
			redisURL: "redis://v:6379/0", redisPrefix: "taskstatus:"},
	}, {
		name: "cache disabled",
		env:  []string{"VALKEY_URL=redis://v:6379/0", "ENABLE_CACHE=false"},
		want: config{addr: ":8053", delayScale: 1, shutdownTimeout: 10 * time.Second, lease: 30 * time.Second, rescueEvery: 10 * time.Second,
			logLevel: slog.LevelInfo, logFormat: "text", redisPrefix: "taskstatus:", schema: "taskstatus"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig(tc.args, getenv(tc.env...), io.Discard)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestShapeDiff(t *testing.T) {
	want := map[string]any{
		"s": "x", "n": 1.0, "b": true, "z": nil,
		"o": map[string]any{"k": "v"},
	}
	assert.Empty(t, shapeDiff("", want, map[string]any{
		"s": "y", "n": 2.0, "b": false, "z": nil, "o": map[string]any{"k": "w"},
	}, nil))
	assert.Equal(t, []string{
		"b: missing",
		"n: string, want number",
		"o.extra: not in the fixture",
		"s: null, want string",
		"z: string, want null",
		"more: not in the fixture",
	}, shapeDiff("", want, map[string]any{
		"s": nil, "n": "1", "z": "", "o": map[string]any{"k": "v", "extra": 1.0}, "more": 1.0,
	}, nil))
	assert.Empty(t, shapeDiff("", want, map[string]any{
		"s": "y", "n": 2.0, "b": false, "z": nil, "o": map[string]any{"k": "w", "extra": 1.0}, "more": 1.0,
	}, map[string][]string{"": {"more"}, "o": {"extra"}}))
}
