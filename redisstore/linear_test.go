package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

var (
	linearOps  = flag.Int("redisstore.linear.ops", 4000, "operations of TestLinearizable on each server")
	linearSeed = flag.Uint64("redisstore.linear.seed", 1, "seed of TestLinearizable; 0 picks one")
)

const (
	// linearTrackers is the number of Trackers of TestLinearizable, each
	// with a client, a proxy and a worker of its own.
	linearTrackers = 4
	// linearTasks is the number of tasks they all change.
	linearTasks = 3
	// linearRetries is the clients' MaxRetries: a command is sent at
	// most linearRetries+1 times.
	linearRetries = 3
	// linearCheckTime bounds porcupine's check of a history, with a
	// millisecond more per operation: the history of 40,000 operations
	// that passes is checked in 3 to 8 s here, under -race.
	linearCheckTime = time.Minute
)

// TestLinearizable checks that the tasks recorded by several Trackers,
// each on a Redis client of its own (several service instances), behave
// as one task each would if the calls came one at a time: every history
// of calls and their outcomes is linearizable (porcupine checks it)
// against the state machine of package tracker (linear_model_test.go).
//
// Each Tracker's worker applies random changes by id to a few tasks,
// deletes them and reads them. Each client reaches Redis through a proxy
// of its own, which loses replies (the script runs and the connection is
// cut before its reply arrives: go-redis sends it again and the store
// must recognise the write) and resets connections (the command never
// reaches Redis), now and then on every attempt of a command, so that the
// call fails with store.ErrUnavailable and its outcome is unknown.
//
// A call that succeeded must have been applied exactly once, at a point
// between its call and its return; one refused (ErrExists, ErrNotFound,
// ErrTerminal, ErrInvalidTransition) must be refused by the state at such
// a point; one whose outcome is unknown may have been applied once, at a
// point after its call, or not at all; a read must return the state at
// such a point.
//
// The workload stays within what the store guarantees of a resend (see
// resendGuard). The seed is fixed so that every go test run checks the
// same workload; -redisstore.linear.seed=0 picks one at random, and
// -redisstore.linear.ops runs more operations. It runs on miniredis, and
// on the Redis at TASKSTATUS_REDIS_ADDR when it is set.
func TestLinearizable(t *testing.T) {
	forEachServer(t, func(t *testing.T, addr string) {
		seed := *linearSeed
		if seed == 0 {
			seed = rand.Uint64()
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("replay with: go test ./redisstore -run '^%s$' -redisstore.linear.ops=%d -redisstore.linear.seed=%d",
					t.Name(), *linearOps, seed)
			}
		})
		t.Logf("seed %d", seed)
		r := newLinearRun(t, addr)
		r.run(t.Context(), seed, *linearOps)
		r.report()
		r.check()
	})
}

// linearRun is one run of TestLinearizable.
type linearRun struct {
	t        *testing.T
	trackers [linearTrackers]*tracker.Tracker
	proxies  [linearTrackers]*proxy
	guard    *resendGuard
	start    time.Time     // operation times count from it
	ran      time.Duration // how long the operations took

	mu      sync.Mutex
	history []porcupine.Operation
}

// newLinearRun returns a run whose Trackers reach the server at addr
// each through a proxy of its own, under a key prefix whose keys are
// deleted when t ends.
func newLinearRun(t *testing.T, addr string) *linearRun {
	prefix := newPrefix()
	direct := newClient(t, addr)
	t.Cleanup(func() { deleteKeys(t, direct, prefix) })
	r := &linearRun{t: t, guard: newResendGuard()}
	for i := range r.trackers {
		r.proxies[i] = newProxy(t, addr)
		c := redis.NewClient(&redis.Options{
			Addr: r.proxies[i].addr(), DisableIdentity: true, ContextTimeoutEnabled: true,
			MaxRetries: linearRetries, MinRetryBackoff: time.Millisecond, MaxRetryBackoff: 4 * time.Millisecond,
		})
		t.Cleanup(func() { _ = c.Close() })
		s, err := redisstore.New(c, redisstore.WithPrefix(prefix))
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		// Calls return their errors: the handler need not hear of them.
		tr, err := tracker.New(s, tracker.WithErrorHandler(func(context.Context, error) {}))
		require.NoError(t, err)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), guard)
			defer cancel()
			require.NoError(t, tr.Close(ctx))
		})
		r.trackers[i] = tr
	}
	return r
}

// run has every Tracker's worker make its share of ops random operations,
// drawn from seed, and records them.
func (r *linearRun) run(ctx context.Context, seed uint64, ops int) {
	r.start = time.Now()
	var wg sync.WaitGroup
	for w := range linearTrackers {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		var n int64
		value := func() int64 { n++; return int64(w)<<32 | n } // unique in the run
		wg.Go(func() {
			for i := w; i < ops; i += linearTrackers {
				r.do(ctx, w, randomInput(rng, value), randomFault(rng))
			}
		})
	}
	wg.Wait()
	r.ran = time.Since(r.start)
}

// do makes operation in through worker w's Tracker, with fault f injected
// by its proxy, and records it.
func (r *linearRun) do(ctx context.Context, w int, in linInput, f fault) {
	p := r.proxies[w]
	if f.lose > 0 && in.kind == applyOp && r.guard.beginLossy() {
		defer r.guard.endLossy()
		p.loseReplies(f.lose)
	} else {
		f.lose = 0
		r.guard.begin(in.kind)
		defer r.guard.end(in.kind)
		p.resetCommands(f.reset)
	}
	call := r.now()
	out, err := r.call(ctx, r.trackers[w], in)
	ret := r.now()
	p.disarm()
	switch {
	case out.outcome == outUnexpected:
		r.t.Errorf("tracker %d, task %d: %s: %v", w, in.task, in, err)
		return
	case out.outcome == outUnknown && in.kind == readOp:
		return // a read that failed tells nothing
	case out.outcome == outUnknown:
		ret = math.MaxInt64 // it may take effect at any time after its call
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.history = append(r.history, porcupine.Operation{
		ClientId: w, Input: in, Call: call, Output: out, Return: ret,
		Metadata: fmt.Sprintf("%v; %v", f, err),
	})
}

// now returns the time of an operation's call or return.
func (r *linearRun) now() int64 { return time.Since(r.start).Nanoseconds() }

// call makes operation in through tr.
func (r *linearRun) call(ctx context.Context, tr *tracker.Tracker, in linInput) (linOutput, error) {
	id := fmt.Sprintf("task-%d", in.task)
	switch in.kind {
	case readOp:
		st, err := tr.Get(ctx, id)
		switch o := outcomeOf(err); o {
		case outOK:
		case outNotFound:
			return linOutput{}, nil // no task
		default:
			return linOutput{outcome: o}, err
		}
		m, err := observe(st)
		if err != nil {
			return linOutput{outcome: outUnexpected}, fmt.Errorf("read %+v: %w", st, err)
		}
		return linOutput{read: m}, nil
	case deleteOp:
		err := tr.Delete(ctx, id)
		return linOutput{outcome: outcomeOf(err)}, err
	}
	changes := make([]tracker.Change, len(in.changes))
	for i, c := range in.changes {
		changes[i] = c.change()
	}
	err := tr.Apply(ctx, id, changes...)
	return linOutput{outcome: outcomeOf(err)}, err
}

// outcomeOf returns the outcome of a call that returned err.
func outcomeOf(err error) outcome {
	if err == nil {
		return outOK
	}
	// A call that gave up wraps ErrUnavailable and, perhaps, the
	// conflicts that kept it from writing: it is looked for first.
	for _, o := range []struct {
		err error
		is  outcome
	}{
		{store.ErrUnavailable, outUnknown}, {store.ErrExists, outExists}, {store.ErrNotFound, outNotFound},
		{store.ErrTerminal, outTerminal}, {store.ErrInvalidTransition, outInvalid},
	} {
		if errors.Is(err, o.err) {
			return o.is
		}
	}
	return outUnexpected
}

// errLinear is the cause the failing changes record.
var errLinear = errors.New("linearizability test")

// change returns the tracker's change c stands for.
func (c linChange) change() tracker.Change {
	step := linearSteps[c.step]
	switch c.kind {
	case createChange:
		return tracker.Create(planned(c.plan)...)
	case startStepChange:
		return tracker.StartStep(step)
	case retryStepChange:
		return tracker.RetryStep(step, errLinear)
	case succeedStepChange:
		return tracker.SucceedStep(step)
	case failStepChange:
		return tracker.FailStep(step, errLinear)
	case skipStepChange:
		return tracker.SkipStep(step)
	case progressChange:
		return tracker.SetProgress(store.Progress{Done: c.value})
	case resultChange:
		return tracker.SetResult(map[string]any{fieldName(c.field): c.value})
	case succeedChange:
		return tracker.Succeed()
	case failChange:
		return tracker.Fail(errLinear, nil)
	case cancelChange:
		return tracker.Cancel(errLinear)
	}
	return tracker.Retry()
}

// observe returns what the model keeps of st, or an error if st holds
// what no operation makes.
func observe(st store.State) (modelTask, error) {
	m := modelTask{status: st.Status, attempt: st.Attempt, version: st.Version, progress: st.Progress.Done}
	if len(st.Steps) > len(m.steps) {
		return m, fmt.Errorf("%d steps", len(st.Steps))
	}
	for i, s := range st.Steps {
		m.steps[i] = modelStep{name: s.Name, status: s.Status, attempt: s.Attempt}
	}
	for name, raw := range st.Result {
		i, err := strconv.Atoi(strings.TrimPrefix(name, "f"))
		if err != nil || i < 0 || i >= linearFields {
			return m, fmt.Errorf("result field %q", name)
		}
		if err := json.Unmarshal(raw, &m.result[i]); err != nil {
			return m, fmt.Errorf("result field %q: %w", name, err)
		}
	}
	return m, nil
}

// check fails the test unless the history is linearizable, and then
// writes its visualization to a file.
func (r *linearRun) check() {
	t := r.t
	start := time.Now()
	limit := linearCheckTime + time.Duration(len(r.history))*time.Millisecond
	res, info := porcupine.CheckOperationsVerbose(linearModel, r.history, limit)
	t.Logf("checked in %v: %s", time.Since(start).Round(time.Millisecond), res)
	if res == porcupine.Ok {
		return
	}
	f, err := os.CreateTemp("", "taskstatus-linearizable-*.html")
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, porcupine.Visualize(linearModel, info, f))
	if res == porcupine.Unknown {
		t.Fatalf("the history of %d operations was not checked within %v; the check so far: %s", len(r.history), limit, f.Name())
	}
	t.Fatalf("the history of %d operations is not linearizable; its visualization: %s", len(r.history), f.Name())
}

// report logs what the run did and, for a run of some length, checks
// that it injected the faults the test is about.
func (r *linearRun) report() {
	counts := map[outcome]int{}
	for _, op := range r.history {
		counts[op.Output.(linOutput).outcome]++
	}
	var lost, reset int
	for _, p := range r.proxies {
		l, rs := p.injected()
		lost, reset = lost+l, reset+rs
	}
	r.t.Logf("%d operations recorded in %v: %v; %d replies lost, %d commands reset",
		len(r.history), r.ran.Round(time.Millisecond), counts, lost, reset)
	if len(r.history) >= 1000 {
		require.Positive(r.t, lost, "replies were lost")
		require.Positive(r.t, reset, "connections were reset")
		require.Positive(r.t, counts[outUnknown], "calls ended with their outcome unknown")
	}
}

// changeWeights are the odds of each change in a random operation.
var changeWeights = [...]int{
	createChange: 12, startStepChange: 14, retryStepChange: 5, succeedStepChange: 10,
	failStepChange: 3, skipStepChange: 2, progressChange: 8, resultChange: 8,
	succeedChange: 5, failChange: 2, cancelChange: 2, retryChange: 14,
}

// randomInput returns a random operation, whose values come from value.
func randomInput(rng *rand.Rand, value func() int64) linInput {
	in := linInput{task: rng.IntN(linearTasks)}
	switch n := rng.IntN(100); {
	case n < 20:
		in.kind = readOp
	case n < 23:
		in.kind = deleteOp
	default:
		in.changes = []linChange{randomChange(rng, value)}
		// Now and then two changes in one write; a create comes first.
		if second := randomChange(rng, value); n < 33 && second.kind != createChange {
			in.changes = append(in.changes, second)
		}
	}
	return in
}

// randomChange returns a random change, whose value comes from value.
func randomChange(rng *rand.Rand, value func() int64) linChange {
	total := 0
	for _, w := range changeWeights {
		total += w
	}
	n, kind := rng.IntN(total), createChange
	for n >= changeWeights[kind] {
		n -= changeWeights[kind]
		kind++
	}
	return linChange{
		kind: kind, plan: uint8(rng.IntN(1 << len(linearSteps))), step: rng.IntN(len(linearSteps)),
		field: rng.IntN(linearFields), value: value(),
	}
}

// fault is what a proxy does to the commands of one operation.
type fault struct {
	lose  int // the replies to the next lose scripts are lost
	reset int // the next reset commands are cut before Redis
}

func (f fault) String() string {
	switch {
	case f.lose > 0:
		return fmt.Sprintf("%d replies lost", f.lose)
	case f.reset > 0:
		return fmt.Sprintf("%d commands reset", f.reset)
	}
	return "no fault"
}

// randomFault returns a random fault: mostly none, sometimes one or two
// replies lost or commands reset, which go-redis recovers from by sending
// the command again, and now and then as many as it sends, so that the
// call fails.
func randomFault(rng *rand.Rand) fault {
	switch n := rng.IntN(100); {
	case n < 8:
		return fault{lose: 1 + n%2}
	case n < 9:
		return fault{lose: linearRetries + 1}
	case n < 15:
		return fault{reset: 1 + n%2}
	case n < 16:
		return fault{reset: linearRetries + 1}
	}
	return fault{}
}

// resendGuard keeps the workload of TestLinearizable within what a store
// guarantees of a write resent after its reply was lost (see store.Write):
// it is recognised as applied if at most store.MinWriteIDs-1 other writes
// of its task were applied after it, and if the task was not deleted in
// between, since Delete forgets the task's write ids (see store.Store).
// Otherwise the tracker takes the resend for a conflict, and applies the
// call again or refuses it: a retry resent after a delete returns
// ErrNotFound though it was applied, which this test finds without the
// guard. While an operation whose replies may be lost is in flight, the
// guard lets at most that many other writing operations be in flight or
// start, and no delete.
type resendGuard struct {
	mu      sync.Mutex
	ended   *sync.Cond // broadcast when the lossy operation ends
	lossy   bool       // an operation whose replies may be lost is in flight
	budget  int        // writing operations that may start while lossy
	writing int        // writing operations in flight, but the lossy one
	deletes int        // deletes in flight
}

func newResendGuard() *resendGuard {
	g := &resendGuard{}
	g.ended = sync.NewCond(&g.mu)
	return g
}

// beginLossy reports whether an operation whose replies may be lost can
// start now. If so, until endLossy, begin holds back deletes and the
// writing operations beyond the budget.
func (g *resendGuard) beginLossy() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lossy || g.deletes > 0 {
		return false
	}
	g.lossy = true
	g.budget = max(0, store.MinWriteIDs-1-g.writing)
	return true
}

// endLossy ends what beginLossy began.
func (g *resendGuard) endLossy() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lossy = false
	g.ended.Broadcast()
}

// begin waits until an operation of kind k may start; end must follow.
// Reads write nothing and never wait.
func (g *resendGuard) begin(k opKind) {
	if k == readOp {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.lossy && (k == deleteOp || g.budget == 0) {
		g.ended.Wait()
	}
	if g.lossy {
		g.budget--
	}
	g.writing++
	if k == deleteOp {
		g.deletes++
	}
}

// end ends what begin began.
func (g *resendGuard) end(k opKind) {
	if k == readOp {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writing--
	if k == deleteOp {
		g.deletes--
	}
}
