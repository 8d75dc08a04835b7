package redisstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
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
	require.NoError(t, s.Put(ctx, write(st)))
	require.NoError(t, s.Delete(ctx, "other"))
	log.take()

	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"Put", func() error { st = next(st, nil); return s.Put(ctx, write(st)) }, "evalsha"},
		{"Put with TTL", func() error { st = next(st, nil); return put(ctx, s, st, time.Hour) }, "evalsha"},
		{"Put quiet", func() error {
			st = next(st, nil)
			w := write(st)
			w.Quiet = true
			return s.Put(ctx, w)
		}, "evalsha"},
		{"Put in conflict", func() error { return s.Put(ctx, write(st)) }, "evalsha"},
		{"Put resent", func() error {
			st = next(st, nil)
			w := write(st)
			if err := s.Put(ctx, w); err != nil {
				return err
			}
			log.take()
			return s.Put(ctx, w)
		}, "evalsha"},
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
	require.NoError(t, s.Put(ctx, write(st)), "a resent create")
	st = next(st, nil)
	require.NoError(t, s.Put(ctx, write(st)), "a resent update")
	require.ErrorIs(t, s.Put(ctx, write(st)), store.ErrConflict, "another write of the same version")
	got, err := s.Get(ctx, "doc-1")
	require.NoError(t, err)
	require.Equal(t, int64(2), got.Version)
}

// forEachServer runs test with the address of a new miniredis server, and
// of the Redis server named by TASKSTATUS_REDIS_ADDR when it is set.
func forEachServer(t *testing.T, test func(t *testing.T, addr string)) {
	t.Run("miniredis", func(t *testing.T) { test(t, miniredis.RunT(t).Addr()) })
	t.Run("redis", func(t *testing.T) { test(t, redisAddr(t)) })
}

// newPrefixed returns a store on a new client of the server at addr, with
// options opts, under prefix, whose keys are deleted when t ends.
func newPrefixed(t *testing.T, addr, prefix string, opts ...redisstore.Option) *redisstore.Store {
	t.Helper()
	c := newClient(t, addr)
	t.Cleanup(func() { deleteKeys(t, c, prefix) })
	s, err := redisstore.New(c, append([]redisstore.Option{redisstore.WithPrefix(prefix)}, opts...)...)
	require.NoError(t, err)
	return s
}

// newPrefix returns a key prefix of a test's own.
func newPrefix() string {
	return fmt.Sprintf("tstest:%016x:", rand.Uint64())
}

// TestResendAfterOtherWriters loses the reply to a write: Redis applies it,
// and a proxy drops the reply and holds the connection. Another instance
// then writes the task store.MinWriteIDs-1 times, and the proxy cuts the
// connection: go-redis sends the write again on a new one, and the store
// recognises it as applied, though the task has moved on. Put returns nil
// and the write is applied once.
func TestResendAfterOtherWriters(t *testing.T) {
	forEachServer(t, func(t *testing.T, addr string) {
		ctx := t.Context()
		p := newProxy(t, addr)
		prefix := newPrefix()
		lossy := newPrefixed(t, p.addr(), prefix, redisstore.WithTimeout(guard))
		other := newPrefixed(t, addr, prefix)

		st := newState("doc-1")
		require.NoError(t, lossy.Put(ctx, write(st)), "a first write, which loads the script")
		p.dropNextReply()
		lost := write(next(st, func(s *store.State) { s.Status = store.StatusRunning }))
		done := make(chan error, 1)
		go func() { done <- lossy.Put(ctx, lost) }()
		var cn *proxyConn
		select {
		case cn = <-p.dropped:
		case <-time.After(guard):
			require.FailNow(t, "the write never reached Redis")
		}

		cur := lost.State
		for range store.MinWriteIDs - 1 {
			cur = next(cur, func(s *store.State) { s.Progress.Done++ })
			require.NoError(t, other.Put(ctx, write(cur)), "the other instance writes version %d", cur.Version)
		}
		cn.cut()
		require.NoError(t, <-done, "a write resent after its reply was lost is recognised as applied")
		got, err := other.Get(ctx, "doc-1")
		require.NoError(t, err)
		require.True(t, cur.Equal(got), "the resend changed nothing: got %+v", got)
	})
}

// TestIncarnation checks that a write computed from another incarnation
// of a task is refused, however its versions match, and changes nothing.
func TestIncarnation(t *testing.T) {
	s, mr, _ := newMiniStore(t)
	ctx := t.Context()
	st := newState("doc-1")
	require.NoError(t, s.Put(ctx, write(st)))
	require.NoError(t, s.Put(ctx, write(next(st, nil))))
	stored := mr.HGet(redisstore.TaskKey(redisstore.DefaultPrefix, "doc-1"), "state")

	for name, w := range map[string]store.Write{
		"another incarnation": write(next(next(st, nil), func(s *store.State) { s.Incarnation = "inc-2" })),
		"no incarnation":      write(next(next(st, nil), func(s *store.State) { s.Incarnation = "" })),
		"a create":            write(func() store.State { s := newState("doc-1"); s.Incarnation = "inc-2"; return s }()),
	} {
		err := s.Put(ctx, w)
		require.ErrorIs(t, err, store.ErrConflict, name)
		t.Log(err)
	}
	require.Equal(t, stored, mr.HGet(redisstore.TaskKey(redisstore.DefaultPrefix, "doc-1"), "state"), "a refused write changes nothing")
}
