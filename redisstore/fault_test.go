package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/internal/redisserver"
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

var outageLengths = flag.String("redisstore.outages", "2s",
	"comma-separated lengths of the outages of TestOutageMidPipelines (CI runs 2s,10s,30s)")

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
	faultCallLimit  = time.Second     // the tracker's timeout
	faultSlack      = 3 * time.Second // what a loaded machine may add to a bound
	faultConverge   = 5 * time.Second // from Redis answering again to every task's truth
	faultGuard      = 60 * time.Second
)

// TestOutageMidPipelines runs 100 pipelines on a dedicated redis-server
// and takes it away in the middle of every run: killed (SIGKILL) and
// started again with its data (appendonly, appendfsync always) or without
// (a restart that loses everything), or paused (SIGSTOP), for each length
// of -redisstore.outages, and killed with its data once more with
// WithCompactEnded, whose writes that end a task rewrite its hash whole.
// Half the runs end while Redis is away; the others go on once it is
// back. Within 5 seconds of Redis answering
// again, every task's stored state is what its pipeline did: its status,
// each step's status, its results and error. None is left running, no
// step that ran is skipped. While Redis is away, every read and the status
// endpoint answer unavailable (503), never not found and never a state.
func TestOutageMidPipelines(t *testing.T) {
	var lengths []time.Duration
	for s := range strings.SplitSeq(*outageLengths, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		require.NoError(t, err, "-redisstore.outages")
		lengths = append(lengths, d)
	}
	for _, d := range lengths {
		for _, sc := range []struct {
			name       string
			how        outage
			persistent bool
			opts       []redisstore.Option
		}{
			{"killed/aof", killed, true, nil},
			{"killed/empty", killed, false, nil},
			{"paused", paused, true, nil},
			// the writes that end the runs rewrite their hashes whole
			{"killed/aof/compact-ended", killed, true, []redisstore.Option{redisstore.WithCompactEnded()}},
		} {
			t.Run(fmt.Sprintf("%s/%v", sc.name, d), func(t *testing.T) {
				runOutage(t, faultScenario{how: sc.how, persistent: sc.persistent, length: d, probe: statusEndpointProbe(), opts: sc.opts})
			})
		}
	}
}

// faultScenario is one outage of TestOutageMidPipelines.
type faultScenario struct {
	how        outage
	persistent bool          // whether the server keeps its data across a kill
	length     time.Duration // how long the server is away
	probe      outageProbe
	opts       []redisstore.Option // of the store, besides its timeout
}

// faultRun is what run i of the scenario does: its id, the steps that
// fail, and the state its task must end in (times and versions aside).
type faultRun struct {
	id          string
	embedFails  bool // a required step: the task fails, index fails with it
	notifyFails bool // an optional step: the task succeeds all the same
	lateEnd     bool // the run goes on once Redis is back, rather than ending while it is away
}

func newFaultRun(i int) faultRun {
	return faultRun{
		id:          fmt.Sprintf("doc-%03d", i),
		embedFails:  i%10 == 3,
		notifyFails: i%7 == 0,
		lateEnd:     i%2 == 1,
	}
}

// want returns the state the run's work leads to.
func (r faultRun) want() store.State {
	st := store.State{ID: r.id, Status: store.StatusSuccess, Attempt: 1,
		Progress: store.Progress{Done: 1, Total: 2, Message: "parsing"},
		Result:   map[string]json.RawMessage{"parsed": json.RawMessage(`true`)}}
	step := func(name string, status store.StepStatus, errMsg string) {
		st.Steps = append(st.Steps, store.Step{Name: name, Status: status, Error: errMsg})
	}
	step("fetch", store.StepSuccess, "")
	step("parse", store.StepSuccess, "")
	if r.embedFails {
		st.Status, st.ErrorMessage = store.StatusFailed, "embedding failed"
		step("embed", store.StepFailed, "embedding failed")
		step("index", store.StepFailed, "dependency embed failed")
		step("notify", store.StepSkipped, "")
		return st
	}
	step("embed", store.StepSuccess, "")
	step("index", store.StepSuccess, "")
	st.Result["indexed"] = json.RawMessage(`true`)
	if r.notifyFails {
		step("notify", store.StepFailed, "notification failed")
	} else {
		step("notify", store.StepSuccess, "")
	}
	return st
}

// faultPipeline returns the pipeline of the runs: the first step waits for
// the outage, so that it falls in the middle of every run, and the second
// waits for Redis to be back in the runs that end late.
func faultPipeline(t *testing.T, runs map[string]faultRun, inFirst chan<- string, down, up <-chan struct{}) *pipeline.Pipeline {
	p, err := pipeline.New(
		pipeline.Step("fetch", func(_ context.Context, task *pipeline.Task) error {
			inFirst <- task.ID()
			<-down
			return nil
		}),
		pipeline.Step("parse", func(_ context.Context, task *pipeline.Task) error {
			task.Progress(1, 2, "parsing")
			task.SetResult(map[string]any{"parsed": true})
			if runs[task.ID()].lateEnd {
				<-up
			}
			return nil
		}),
		pipeline.Step("embed", func(_ context.Context, task *pipeline.Task) error {
			if runs[task.ID()].embedFails {
				return errors.New("embedding failed")
			}
			return nil
		}),
		pipeline.Step("index", func(_ context.Context, task *pipeline.Task) error {
			task.SetResult(map[string]any{"indexed": true})
			return nil
		}, pipeline.DependsOn("embed")),
		pipeline.Step("notify", func(_ context.Context, task *pipeline.Task) error {
			if runs[task.ID()].notifyFails {
				return errors.New("notification failed")
			}
			return nil
		}, pipeline.Optional()),
	)
	require.NoError(t, err)
	return p
}

// runOutage runs faultRuns pipelines through one Tracker on a dedicated
// Redis, takes Redis away as sc says while every run is in its first
// step, and checks what TestOutageMidPipelines says. It also shows that
// no goroutine and no connection is left: the pool holds at most its
// size, all idle, and goleak finds nothing once the client is closed.
func runOutage(t *testing.T, sc faultScenario) {
	srv := startRedisServer(t, sc.persistent)
	leaks := goleak.IgnoreCurrent()
	client := redis.NewClient(&redis.Options{
		Addr: srv.Addr(), DisableIdentity: true, ContextTimeoutEnabled: true, PoolSize: faultPoolSize,
	})
	defer func() { _ = client.Close() }()
	s, err := redisstore.New(client, append(sc.opts, redisstore.WithTimeout(faultStoreLimit))...)
	require.NoError(t, err)
	defer func() { _ = s.Close() }()
	var reported errorLog
	tr, err := tracker.New(s, tracker.WithTimeout(faultCallLimit), tracker.WithErrorHandler(reported.add))
	require.NoError(t, err)

	runs := make(map[string]faultRun, faultRuns)
	ids := make([]string, faultRuns)
	for i := range ids {
		r := newFaultRun(i)
		runs[r.id], ids[i] = r, r.id
	}
	inFirst := make(chan string, faultRuns)
	down, up := make(chan struct{}), make(chan struct{})
	p := faultPipeline(t, runs, inFirst, down, up)

	ctx := t.Context()
	ended := make(map[string]chan struct{}, faultRuns)
	var wg sync.WaitGroup
	defer func() {
		closeOnce(down) // never leave runs blocked, whatever failed
		closeOnce(up)
		wg.Wait()
	}()
	for _, id := range ids {
		require.NoError(t, tr.Apply(ctx, id, tracker.Create(p.Steps()...)))
		done := make(chan struct{})
		ended[id] = done
		wg.Go(func() {
			defer close(done)
			_ = p.Run(ctx, tr, id) // tracking never changes what runs
		})
	}
	arrive(t, inFirst, faultRuns, "the first step")
	if sc.probe != nil {
		sc.probe(t, "before", s, ids)
	}

	start := time.Now()
	takeAway(srv, sc.how)
	close(down)
	for _, id := range ids {
		if !runs[id].lateEnd {
			waitClosed(t, ended[id], id+" ends while Redis is away")
		}
	}
	requireReadsUnavailable(t, tr, ids)
	if sc.probe != nil {
		sc.probe(t, "during", s, ids)
	}
	time.Sleep(time.Until(start.Add(sc.length))) // the outage itself lasts this long
	bringBack(srv, sc.how)
	srv.WaitAnswers(client) // the client's pool may wait a moment before dialing again
	back := time.Now()
	close(up)

	requireConverged(t, s, runs, back)
	requireListed(t, s, runs)
	wg.Wait()
	cctx, cancel := context.WithTimeout(ctx, faultGuard)
	defer cancel()
	require.NoError(t, tr.Close(cctx), "nothing is left waiting")
	if sc.probe != nil {
		sc.probe(t, "after", s, ids)
	}
	requireOutageErrors(t, reported.all(), sc.how)

	stats := client.PoolStats()
	require.LessOrEqual(t, stats.TotalConns, uint32(faultPoolSize), "the pool holds no more connections than its size")
	require.Equal(t, stats.TotalConns, stats.IdleConns, "no connection is still in use: %+v", *stats)
	require.NoError(t, s.Close())
	require.NoError(t, client.Close())
	srv.Stop()
	goleak.VerifyNone(t, leaks)
}

// takeAway makes the server stop answering, as how says.
func takeAway(srv *redisserver.Server, how outage) {
	if how == killed {
		srv.Kill()
	} else {
		srv.Pause()
	}
}

// bringBack makes the server answer again, as how says.
func bringBack(srv *redisserver.Server, how outage) {
	if how == killed {
		srv.Restart()
	} else {
		srv.Resume()
	}
}

// requireListed fails t unless the store's indexes agree with the tasks'
// converged states after the outage: each task is listed once, in its
// status, and the counts by status are those of the tasks.
func requireListed(t *testing.T, s *redisstore.Store, runs map[string]faultRun) {
	t.Helper()
	want := make(map[store.Status]int64)
	for _, r := range runs {
		want[r.want().Status]++
	}
	counts, err := s.Count(t.Context(), store.Filter{})
	require.NoError(t, err)
	require.Equal(t, want, counts, "the counts are those of the tasks the runs recorded")
	seen := make(map[string]int, len(runs))
	for token := ""; ; {
		page, err := s.List(t.Context(), store.Filter{}, store.MaxPageSize, token)
		require.NoError(t, err)
		for _, st := range page.Tasks {
			seen[st.ID]++
			require.Equal(t, runs[st.ID].want().Status, st.Status, "task %s is listed in the status it has", st.ID)
		}
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	for id := range runs {
		require.Equal(t, 1, seen[id], "task %s is listed once", id)
	}
	require.Len(t, seen, len(runs), "no other task is listed")
}

// requireConverged reads every task until each is what its run did, and
// fails t if that takes longer than faultConverge from back, when Redis
// answered again. It reads through its own client, as a status reader in
// another process would.
func requireConverged(t *testing.T, s *redisstore.Store, runs map[string]faultRun, back time.Time) {
	t.Helper()
	for {
		var wrong []string
		for id, r := range runs {
			st, err := s.Get(t.Context(), id)
			if err != nil {
				wrong = append(wrong, fmt.Sprintf("%s: %v", id, err))
				continue
			}
			if why := differs(r.want(), st); why != "" {
				wrong = append(wrong, fmt.Sprintf("%s: %s", id, why))
			}
		}
		if len(wrong) == 0 {
			t.Logf("every task is what its run did %v after Redis answered again", time.Since(back).Round(time.Millisecond))
			return
		}
		if time.Since(back) > faultConverge {
			t.Fatalf("%d of %d tasks are not what their runs did %v after Redis answered again, e.g.:\n%s",
				len(wrong), len(runs), faultConverge, strings.Join(wrong[:min(5, len(wrong))], "\n"))
		}
		time.Sleep(50 * time.Millisecond) // observing the store, which the tracker writes in the background
	}
}

// differs says how got is not the state want says its work led to, or "".
func differs(want, got store.State) string {
	switch {
	case got.Status != want.Status:
		return fmt.Sprintf("status %s, not %s", got.Status, want.Status)
	case got.ErrorMessage != want.ErrorMessage:
		return fmt.Sprintf("error %q, not %q", got.ErrorMessage, want.ErrorMessage)
	case got.Attempt != want.Attempt:
		return fmt.Sprintf("attempt %d, not %d", got.Attempt, want.Attempt)
	case got.Progress != want.Progress:
		return fmt.Sprintf("progress %+v, not %+v", got.Progress, want.Progress)
	case len(got.Steps) != len(want.Steps):
		return fmt.Sprintf("%d steps, not %d", len(got.Steps), len(want.Steps))
	case len(got.Result) != len(want.Result):
		return fmt.Sprintf("result %v, not %v", got.Result, want.Result)
	}
	for i, w := range want.Steps {
		if g := got.Steps[i]; g.Name != w.Name || g.Status != w.Status || g.Error != w.Error {
			return fmt.Sprintf("step %s is %s (%q), not %s (%q)", w.Name, g.Status, g.Error, w.Status, w.Error)
		}
	}
	for k, v := range want.Result {
		if string(got.Result[k]) != string(v) {
			return fmt.Sprintf("result %s is %s, not %s", k, got.Result[k], v)
		}
	}
	return ""
}

// requireOutageErrors fails t unless the errors the tracker reported are
// all the store being unavailable, and some show the outage as the client
// meets it: refused connections for a killed server, or the store's
// timeout while go-redis dials it again and again; timeouts for a paused
// one.
func requireOutageErrors(t *testing.T, errs []error, how outage) {
	t.Helper()
	require.NotEmpty(t, errs, "the writes during the outage failed and were reported")
	causes := 0
	for _, err := range errs {
		require.ErrorIs(t, err, store.ErrUnavailable, "only the outage makes a write fail")
		switch {
		case how == killed && (errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, context.DeadlineExceeded)),
			how == paused && errors.Is(err, context.DeadlineExceeded):
			causes++
		}
	}
	require.Positive(t, causes, "the outage (%v) must show as %s", how, map[outage]string{killed: "refused connections or timeouts", paused: "timeouts"}[how])
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

// waitClosed waits until ch is closed, or fails t after faultGuard.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(faultGuard):
		t.Fatalf("%s: not within %v", what, faultGuard)
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
