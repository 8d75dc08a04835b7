package redisstore_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

// commandLog is a go-redis hook that records the commands a client sends
// and the round trips it makes (one per command, one per pipeline).
type commandLog struct {
	mu    sync.Mutex
	cmds  []string
	trips int
}

func (l *commandLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.record(cmd)
		return next(ctx, cmd)
	}
}

func (l *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.record(cmds...)
		return next(ctx, cmds)
	}
}

// record notes one round trip carrying cmds. It ignores the commands that
// set a new connection up (HELLO, CLIENT ...), which are not part of any
// call.
func (l *commandLog) record(cmds ...redis.Cmder) {
	if name := cmds[0].Name(); name == "hello" || name == "client" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.trips++
	for _, c := range cmds {
		l.cmds = append(l.cmds, c.Name())
	}
}

// take returns the commands and round trips recorded, and forgets them.
func (l *commandLog) take() (cmds []string, trips int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cmds, trips = l.cmds, l.trips
	l.cmds, l.trips = nil, 0
	return cmds, trips
}

// TestOneCommandPerCall checks that, once the scripts are cached on the
// server, each call is one command in one round trip.
func TestOneCommandPerCall(t *testing.T) {
	s, _, c := newMiniStore(t)
	log := &commandLog{}
	c.AddHook(log)
	ctx := t.Context()

	// The first run of each script on a server loads it.
	st := newState("doc-1")
	require.NoError(t, s.Put(ctx, st, 0))
	require.NoError(t, s.Delete(ctx, "other"))
	log.take()

	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"Put", func() error { st = next(st, nil); return s.Put(ctx, st, 0) }, "evalsha"},
		{"Put with TTL", func() error { st = next(st, nil); return s.Put(ctx, st, 3600e9) }, "evalsha"},
		{"Put in conflict", func() error { return s.Put(ctx, st, 0) }, "evalsha"},
		{"Get", func() error { _, err := s.Get(ctx, "doc-1"); return err }, "hgetall"},
		{"Get unknown", func() error { _, err := s.Get(ctx, "unknown"); return err }, "hgetall"},
		{"Delete", func() error { return s.Delete(ctx, "doc-1") }, "evalsha"},
	} {
		_ = tc.call()
		cmds, trips := log.take()
		assert.Equal(t, []string{tc.want}, cmds, tc.name)
		assert.Equal(t, 1, trips, tc.name)
	}
}

// resender is a go-redis hook that sends every script twice, as go-redis
// does when it loses the reply to the first (a dropped connection), and
// keeps the second reply.
type resender struct{}

func (resender) DialHook(next redis.DialHook) redis.DialHook { return next }

func (resender) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			_ = next(ctx, cmd)
		}
		return next(ctx, cmd)
	}
}

func (resender) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestResentWriteSucceeds checks that a write the client sends twice is
// taken once and reported as a success, not as a conflict with itself,
// while another write of the same version still conflicts.
func TestResentWriteSucceeds(t *testing.T) {
	s, _, c := newMiniStore(t)
	c.AddHook(resender{})
	ctx := t.Context()

	st := newState("doc-1")
	require.NoError(t, s.Put(ctx, st, 0), "a resent create")
	st = next(st, nil)
	require.NoError(t, s.Put(ctx, st, 0), "a resent update")
	require.ErrorIs(t, s.Put(ctx, st, 0), store.ErrConflict, "another call writing the same version")
	got, err := s.Get(ctx, "doc-1")
	require.NoError(t, err)
	require.Equal(t, int64(2), got.Version)
}

// TestSilentServer checks that the store's timeout bounds a call to a
// server that accepts connections but never answers.
func TestSilentServer(t *testing.T) {
	addr := silentServer(t)

	const timeout = 300 * time.Millisecond
	s, err := redisstore.New(newClient(t, addr), redisstore.WithTimeout(timeout))
	require.NoError(t, err)
	start := time.Now()
	_, err = s.Get(t.Context(), "doc-1")
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), timeout+2*time.Second)
}

// silentServer returns the address of a server, closed when t ends, that
// accepts connections and never answers on them.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := new(net.ListenConfig).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		accepting sync.WaitGroup
		mu        sync.Mutex
		held      []net.Conn // open, never answered
	)
	accepting.Go(func() {
		for {
			cn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, cn)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		accepting.Wait()
		for _, cn := range held {
			_ = cn.Close()
		}
	})
	return ln.Addr().String()
}
