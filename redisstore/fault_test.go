package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// This file injects faults into a real Redis: a redis-server that the test
// starts itself, on a loopback port of its own and with its data in a
// temporary directory, so that killing or pausing it disturbs no one else.
// The tests run where the other real-server tests run: when
// TASKSTATUS_REDIS_ADDR is set (CI sets it). They then need redis-server on
// PATH, and fail without it.

// redisServer is a redis-server process started by a test.
type redisServer struct {
	t      *testing.T
	bin    string
	addr   string
	dir    string
	args   []string
	cmd    *exec.Cmd // nil while no process runs
	paused bool
}

// startRedisServer starts a redis-server on a free loopback port, with its
// files in a temporary directory, waits until it answers PING, and stops
// it when t ends. With persistent, every write is appended to a file and
// synced before Redis acknowledges it (appendfsync always), so that a
// server killed and started again keeps what it acknowledged. It skips t
// unless TASKSTATUS_REDIS_ADDR is set.
func startRedisServer(t *testing.T, persistent bool) *redisServer {
	t.Helper()
	if os.Getenv(envAddr) == "" {
		t.Skipf("%s is not set: the fault tests, which start a redis-server of their own, run with the other real-server tests", envAddr)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("%s is set, so the fault tests run, but redis-server is not on PATH: %v", envAddr, err)
	}
	addr := unusedAddr(t)
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	dir := t.TempDir()
	s := &redisServer{t: t, bin: bin, addr: addr, dir: dir, args: []string{
		"--port", port, "--bind", "127.0.0.1", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"),
		"--daemonize", "no", "--save", "",
	}}
	if persistent {
		s.args = append(s.args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		s.args = append(s.args, "--appendonly", "no")
	}
	t.Cleanup(s.stop)
	s.start()
	return s
}

// start starts the server process, on the same port and directory as
// before if it ran already, and waits until it answers PING.
func (s *redisServer) start() {
	s.t.Helper()
	require.Nil(s.t, s.cmd, "the server is running already")
	cmd := exec.CommandContext(context.Background(), s.bin, s.args...)
	require.NoError(s.t, cmd.Start())
	s.cmd = cmd
	s.waitAnswers(nil)
}

// waitAnswers waits until the server answers PING through client, or a new
// client if it is nil. It fails the test, showing the server's log, if
// that takes more than 15 seconds: the bound only guards against a server
// that does not come up.
func (s *redisServer) waitAnswers(client *redis.Client) {
	s.t.Helper()
	if client == nil {
		client = redis.NewClient(&redis.Options{Addr: s.addr, DisableIdentity: true, MaxRetries: -1, DialTimeout: time.Second})
		defer func() { _ = client.Close() }()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(s.t.Context(), time.Second)
		err := client.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server %s does not answer PING: %v\n%s", s.addr, err, log)
		}
		time.Sleep(50 * time.Millisecond) // polling a process that is starting
	}
}

// kill kills the server with SIGKILL, as a crash would, and waits until
// the process is gone: its port then refuses connections.
func (s *redisServer) kill() {
	s.t.Helper()
	require.NotNil(s.t, s.cmd, "the server is not running")
	require.NoError(s.t, s.cmd.Process.Kill())
	_ = s.cmd.Wait() // "signal: killed"
	s.cmd, s.paused = nil, false
}

// pause stops the server with SIGSTOP: connections are still accepted by
// the kernel but nothing answers, so calls time out instead of being
// refused. resume lets it go on with SIGCONT.
func (s *redisServer) pause() {
	s.t.Helper()
	require.NoError(s.t, s.cmd.Process.Signal(syscall.SIGSTOP))
	s.paused = true
}

func (s *redisServer) resume() {
	s.t.Helper()
	require.NoError(s.t, s.cmd.Process.Signal(syscall.SIGCONT))
	s.paused = false
}

// stop kills the server if it runs. It is idempotent.
func (s *redisServer) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill() // SIGKILL ends a stopped process too
	_ = s.cmd.Wait()
	s.cmd, s.paused = nil, false
}

// errorLog collects the errors a Tracker reports.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) add(_ context.Context, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errorLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

// How a fault scenario takes the server away.
type outage int

const (
	killed outage = iota // SIGKILL, then a new process on the same port and files
	paused               // SIGSTOP, then SIGCONT
)

func (o outage) String() string { return [...]string{"killed", "paused"}[o] }

// outageProbe checks what readers see of the tasks of the runs, ids,
// before the outage (phase "before"), while the server is away ("during"),
// and once every run has ended ("after").
type outageProbe func(t *testing.T, phase string, s *redisstore.Store, ids []string)

// The settings of the fault scenarios: generous, so that a loaded
// machine does not fail a healthy call, and a bound on each wait, so that
// a hang fails the test instead of stalling it.
const (
	faultRuns       = 100
	faultPoolSize   = 16
	faultStoreLimit = time.Second     // the store's timeout (WithTimeout)
	faultCallLimit  = 2 * time.Second // the tracker's timeout
	faultSlack      = 3 * time.Second // what a loaded machine may add to a bound
	faultGuard      = 60 * time.Second
)

// runOutage runs faultRuns pipelines of three steps through one Tracker
// on a dedicated, persistent Redis, and takes Redis away while every run
// is inside its first step. It shows that:
//
//   - every run does all its work (each step function returns) and ends
//     recorded as success with every step success, the outage
//     notwithstanding: tracking never breaks the work;
//   - each tracker write during the outage returns within the tracker's
//     timeout with an error wrapping store.ErrUnavailable, caused by a
//     refusal (killed) or a timeout (paused), and is reported;
//   - every read during the outage reports store.ErrUnavailable within the
//     timeout, never store.ErrNotFound and never a state (probe, if not
//     nil, checks more readers, before, during and after the outage);
//   - after the restart, every state acknowledged before the kill is
//     there unchanged (appendfsync always), and writes resume: the runs'
//     next writes are recorded;
//   - no goroutine and no connection is left: the pool holds at most its
//     size, all idle, and goleak finds nothing once the client is closed.
func runOutage(t *testing.T, how outage, probe outageProbe) {
	srv := startRedisServer(t, true)
	leaks := goleak.IgnoreCurrent()
	client := redis.NewClient(&redis.Options{
		Addr: srv.addr, DisableIdentity: true, ContextTimeoutEnabled: true, PoolSize: faultPoolSize,
	})
	defer func() { _ = client.Close() }()
	s, err := redisstore.New(client, redisstore.WithTimeout(faultStoreLimit))
	require.NoError(t, err)
	var reported errorLog
	tr, err := tracker.New(s, tracker.WithTimeout(faultCallLimit), tracker.WithErrorHandler(reported.add))
	require.NoError(t, err)

	// Each run's first step waits for the outage, its second for the end
	// of the outage, so that the outage falls in the middle of every run.
	inFirst, inSecond := make(chan string, faultRuns), make(chan string, faultRuns)
	down, up := make(chan struct{}), make(chan struct{})
	var ran [3]atomic.Int64
	var slowWrites atomic.Int64
	p, err := pipeline.New(
		pipeline.Step("fetch", func(_ context.Context, task *pipeline.Task) error {
			inFirst <- task.ID()
			<-down
			ran[0].Add(1)
			return nil
		}),
		pipeline.Step("parse", func(_ context.Context, task *pipeline.Task) error {
			inSecond <- task.ID()
			start := time.Now()
			task.Progress(1, 2, "parsing") // a write while Redis is away
			if time.Since(start) > faultCallLimit+faultSlack {
				slowWrites.Add(1)
			}
			<-up
			ran[1].Add(1)
			return nil
		}),
		pipeline.Step("index", func(_ context.Context, task *pipeline.Task) error {
			task.SetResult(map[string]any{"indexed": true})
			ran[2].Add(1)
			return nil
		}),
	)
	require.NoError(t, err)

	ctx := t.Context()
	runner := pipeline.NewRunner()
	ids := make([]string, faultRuns)
	for i := range ids {
		ids[i] = fmt.Sprintf("doc-%03d", i)
		require.NoError(t, runner.Go(ctx, p, tr, ids[i]))
	}
	defer func() {
		// Never leave runs blocked, whatever failed.
		closeOnce(down)
		closeOnce(up)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), faultGuard)
		defer cancel()
		assert.NoError(t, runner.Shutdown(sctx), "every run ends once released")
	}()
	arrive(t, inFirst, faultRuns, "the first step")

	// Every run is inside its first step, recorded as such.
	before := make(map[string]store.State, faultRuns)
	for _, id := range ids {
		st, err := tr.Get(ctx, id)
		require.NoError(t, err)
		fetch, _ := st.Step("fetch")
		require.Equal(t, store.StatusRunning, st.Status, id)
		require.Equal(t, store.StepRunning, fetch.Status, id)
		before[id] = st
	}
	if probe != nil {
		probe(t, "before", s, ids)
	}

	switch how {
	case killed:
		srv.kill()
	case paused:
		srv.pause()
	}
	close(down)
	// Each run now tries to record the end of its first step and the start
	// of its second, and fails, then reports progress, and fails.
	arrive(t, inSecond, faultRuns, "the second step")

	requireReadsUnavailable(t, tr, ids)
	if probe != nil {
		probe(t, "during", s, ids)
	}

	switch how {
	case killed:
		srv.start()
	case paused:
		srv.resume()
	}
	srv.waitAnswers(client) // the client's pool may wait a moment before dialing again
	for _, id := range ids {
		st, err := tr.Get(ctx, id)
		require.NoError(t, err, "a task recorded before the outage is still there")
		if how == killed {
			// Nothing was written while the server was dead.
			require.True(t, st.Equal(before[id]), "%s: the state acknowledged before the kill survives it unchanged:\nbefore %+v\nafter  %+v", id, before[id], st)
		} else {
			// A write that timed out may have been applied late.
			require.GreaterOrEqual(t, st.Version, before[id].Version, id)
			require.True(t, st.CreatedAt.Equal(before[id].CreatedAt), id)
		}
	}
	close(up)
	sctx, cancel := context.WithTimeout(ctx, faultGuard)
	defer cancel()
	require.NoError(t, runner.Shutdown(sctx), "every run ends")

	for i, name := range []string{"fetch", "parse", "index"} {
		require.Equal(t, int64(faultRuns), ran[i].Load(), "every run did the work of step %s", name)
	}
	require.Zero(t, slowWrites.Load(), "a write during the outage must return within the tracker's timeout")
	for _, id := range ids {
		st, err := tr.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, store.StatusSuccess, st.Status, "%s: writes resumed after the outage", id)
		require.Greater(t, st.Version, before[id].Version, id)
		for _, sp := range st.Steps {
			require.Equal(t, store.StepSuccess, sp.Status, "%s: step %s", id, sp.Name)
		}
		require.JSONEq(t, "true", string(st.Result["indexed"]), id)
	}
	if probe != nil {
		probe(t, "after", s, ids)
	}

	errs := reported.all()
	require.GreaterOrEqual(t, len(errs), faultRuns, "each run's writes during the outage failed and were reported")
	causes := 0
	for _, err := range errs {
		require.ErrorIs(t, err, store.ErrUnavailable, "only the outage makes a write fail")
		var netErr net.Error
		switch {
		case how == killed && errors.Is(err, syscall.ECONNREFUSED),
			how == paused && (errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout())):
			causes++
		}
	}
	require.Positive(t, causes, "the outage (%v) must show as %s", how, map[outage]string{killed: "refused connections", paused: "timeouts"}[how])

	stats := client.PoolStats()
	require.LessOrEqual(t, stats.TotalConns, uint32(faultPoolSize), "the pool holds no more connections than its size")
	require.Equal(t, stats.TotalConns, stats.IdleConns, "no connection is still in use: %+v", *stats)
	require.NoError(t, client.Close())
	srv.stop()
	goleak.VerifyNone(t, leaks)
}

// arrive waits until n runs have sent their id on ch.
func arrive(t *testing.T, ch <-chan string, n int, where string) {
	t.Helper()
	timeout := time.After(faultGuard)
	for i := range n {
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("only %d of %d runs reached %s within %v", i, n, where, faultGuard)
		}
	}
}

// requireReadsUnavailable reads every task at once, as clients polling
// their status would, and fails t unless each read reports
// store.ErrUnavailable within the tracker's timeout: never a state, which
// could only be stale, and never store.ErrNotFound.
func requireReadsUnavailable(t *testing.T, tr *tracker.Tracker, ids []string) {
	t.Helper()
	errs := make([]error, len(ids))
	took := make([]time.Duration, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			start := time.Now()
			_, errs[i] = tr.Get(t.Context(), id)
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	for i, err := range errs {
		require.ErrorIs(t, err, store.ErrUnavailable, "%s: a read while Redis is away", ids[i])
		require.NotErrorIs(t, err, store.ErrNotFound, ids[i])
		require.Less(t, took[i], faultCallLimit+faultSlack, "%s: a read gives up within the tracker's timeout", ids[i])
	}
}

// closeOnce closes ch unless it is closed already. Only the test's
// goroutine closes the channels it is used on.
func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}
