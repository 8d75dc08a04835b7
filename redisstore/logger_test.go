package redisstore_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/redisstore"
)

// syncBuffer is a bytes.Buffer safe for concurrent use, for logs written
// by goroutines of go-redis.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newJSONLogger returns a logger that writes JSON lines to w.
func newJSONLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, nil))
}

// TestRedisLogger installs a RedisLogger with a JSON handler as go-redis's
// logger and makes go-redis log (a client that cannot dial): every line it
// writes is JSON, with go-redis's text as the message.
func TestRedisLogger(t *testing.T) {
	var logged syncBuffer
	redis.SetLogger(redisstore.NewRedisLogger(newJSONLogger(&logged)))
	t.Cleanup(logging.Enable) // back to go-redis's default logger

	c := newClient(t, unusedAddr(t))
	require.Error(t, c.Ping(t.Context()).Err())

	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	require.NotEmpty(t, lines[0], "go-redis logged nothing")
	for _, line := range lines {
		var rec struct {
			Level  string `json:"level"`
			Msg    string `json:"msg"`
			Logger string `json:"logger"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "a line that is not JSON: %s", line)
		require.Equal(t, "WARN", rec.Level)
		require.Equal(t, "go-redis", rec.Logger)
	}
	require.Contains(t, logged.String(), "failed to dial", "go-redis's text is the message")
}
