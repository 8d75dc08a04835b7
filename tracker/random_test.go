package tracker_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

var randomSeed = flag.Uint64("tracker.seed", 0, "seed of TestRandomTransitions; 0 picks one")

// TestRandomTransitions drives one task from several Trackers at once (as
// several service instances would), each calling random methods, and checks
// the history the store acknowledged against the state machine:
//
//   - every version from 1 to the last was written exactly once, and the
//     stored state is the last one written (no lost or phantom write);
//   - each version follows from the one before by a legal transition: a
//     terminal task changes only through Retry, a terminal step never
//     changes, steps are never dropped, times never run backwards;
//   - every acknowledged call is one version, and every acknowledged step
//     update, progress report and result field is in the history (and, in
//     rounds without Retry, in the final state);
//   - every refused call returns a *tracker.Error wrapping a sentinel error
//     its doc names, is reported to the error handler, and writes nothing;
//   - a watcher sees strictly increasing versions, each as written.
//
// It runs on memstore and on redisstore over miniredis, each Tracker with a
// client of its own. Set -tracker.seed to replay a failing seed.
func TestRandomTransitions(t *testing.T) {
	for _, b := range []struct {
		name   string
		rounds int
		// open returns a maker of handles on one store: each Tracker
		// gets its own, closed when the round ends.
		open func(t *testing.T) func(t *testing.T) store.Store
	}{
		{"memstore", 40, func(t *testing.T) func(*testing.T) store.Store {
			s, err := memstore.New()
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, s.Close()) })
			return func(*testing.T) store.Store { return s }
		}},
		{"redisstore", 12, func(t *testing.T) func(*testing.T) store.Store {
			mr := miniredis.RunT(t)
			return func(t *testing.T) store.Store {
				c := redis.NewClient(&redis.Options{Addr: mr.Addr(), DisableIdentity: true, ContextTimeoutEnabled: true})
				t.Cleanup(func() { _ = c.Close() })
				s, err := redisstore.New(c)
				require.NoError(t, err)
				return s
			}
		}},
	} {
		t.Run(b.name, func(t *testing.T) {
			seed := *randomSeed
			if seed == 0 {
				seed = rand.Uint64()
			}
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("replay with: go test ./tracker -run 'TestRandomTransitions/%s' -tracker.seed=%d", b.name, seed)
				}
			})
			rng := rand.New(rand.NewPCG(seed, 0))
			open := b.open(t)
			for round := range b.rounds {
				retries := round%2 == 1
				ok := t.Run(fmt.Sprintf("round-%02d", round), func(t *testing.T) {
					runRandomRound(t, open, fmt.Sprintf("rand-%d-%d", seed, round), rng.Uint64(), retries)
				})
				if !ok {
					return
				}
			}
		})
	}
}

// The shape of a round: workers Trackers, each making calls calls, on
// steps named from stepNames.
const (
	workers = 4
	calls   = 50
)

var stepNames = []string{"parse", "embed", "index", "store", "notify"}

// call is one call a worker made: its kind, the step it named, and the
// unique text it recorded (a failure message, a progress message or a
// result value), if any.
type call struct {
	kind  string // the Error.Op of the call, such as "succeed step"
	step  string
	text  string
	parts []call // the changes of an Apply
}

// history keeps every state a Put acknowledged, by version, whichever
// Tracker wrote it. Two acknowledged Puts of one version with different
// states would be a lost update.
type history struct {
	mu      sync.Mutex
	written map[int64]store.State
	dup     []string
}

// recorder is one Tracker's store: it writes through its own handle and
// records what the store acknowledged in the round's history.
type recorder struct {
	store.Store
	h *history
}

func (r recorder) Put(ctx context.Context, st store.State, ttl time.Duration) error {
	if err := r.Store.Put(ctx, st, ttl); err != nil {
		return err
	}
	r.h.mu.Lock()
	defer r.h.mu.Unlock()
	if old, ok := r.h.written[st.Version]; ok && !old.Equal(st) {
		r.h.dup = append(r.h.dup, fmt.Sprintf("version %d acknowledged twice:\n%+v\n%+v", st.Version, old, st))
	}
	r.h.written[st.Version] = st.Clone()
	return nil
}

func runRandomRound(t *testing.T, open func(t *testing.T) store.Store, id string, seed uint64, retries bool) {
	ctx := t.Context()
	h := &history{written: make(map[int64]store.State)}
	trackers := make([]*tracker.Tracker, workers)
	var reportedMu sync.Mutex
	reported := make([]int, workers)
	var watcher store.Watcher
	for i := range trackers {
		s := open(t)
		if i == 0 {
			var ok bool
			watcher, ok = s.(store.Watcher)
			require.True(t, ok, "the store implements store.Watcher")
		}
		var err error
		trackers[i], err = tracker.New(recorder{Store: s, h: h},
			tracker.WithLease(time.Minute),
			tracker.WithErrorHandler(func(context.Context, error) {
				reportedMu.Lock()
				defer reportedMu.Unlock()
				reported[i]++
			}))
		require.NoError(t, err)
	}

	// Every Tracker creates the task at once: one succeeds.
	created := make([]error, workers)
	var wg sync.WaitGroup
	for i, tr := range trackers {
		wg.Go(func() { created[i] = tr.Create(ctx, id, stepNames[:2]...) })
	}
	wg.Wait()
	wins := 0
	for i, err := range created {
		if err == nil {
			wins++
			continue
		}
		require.ErrorIs(t, err, store.ErrExists, "tracker %d: a second Create", i)
	}
	require.Equal(t, 1, wins, "exactly one Create succeeds")
	reportedMu.Lock()
	for i := range reported {
		reported[i] = 0 // the refused creates
	}
	reportedMu.Unlock()

	// A watcher follows the task until its first end.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	ch, err := watcher.Watch(wctx, id)
	require.NoError(t, err)
	var watched []store.State
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for st := range ch {
			watched = append(watched, st)
		}
	}()

	acks := make([][]call, workers)
	refused := make([]int, workers)
	for i, tr := range trackers {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		wg.Go(func() {
			for n := range calls {
				c, do, allowed := randomCall(rng, tr, id, fmt.Sprintf("w%d-c%d", i, n), retries)
				err := do(ctx)
				if err == nil {
					acks[i] = append(acks[i], c)
					continue
				}
				refused[i]++
				checkRefusal(t, err, id, c, allowed)
			}
		})
	}
	wg.Wait()
	stopWatch()
	<-watchDone

	final, err := trackers[0].Get(ctx, id)
	require.NoError(t, err)
	h.mu.Lock()
	defer h.mu.Unlock()
	require.Empty(t, h.dup, "no version is acknowledged twice with different states")
	states := make([]store.State, final.Version+1)
	for v := int64(1); v <= final.Version; v++ {
		st, ok := h.written[v]
		require.True(t, ok, "version %d of %d was never acknowledged", v, final.Version)
		states[v] = st
	}
	require.Len(t, h.written, int(final.Version), "a version beyond the stored one was acknowledged: a lost update")
	require.True(t, final.Equal(states[final.Version]), "the stored state is the last one written:\n%+v\n%+v", final, states[final.Version])

	var all []call
	reportedMu.Lock()
	for i := range workers {
		all = append(all, acks[i]...)
		require.Equal(t, refused[i], reported[i], "tracker %d reports every refused call", i)
	}
	reportedMu.Unlock()
	require.Equal(t, int64(1+len(all)), final.Version, "each acknowledged call is one version, and nothing else writes")

	for v := int64(2); v <= final.Version; v++ {
		checkTransition(t, states[v-1], states[v])
	}
	checkAcknowledged(t, states, all, retries)

	last := int64(0)
	for _, st := range watched {
		require.Greater(t, st.Version, last, "a watcher sees versions in increasing order")
		require.True(t, st.Equal(states[st.Version]), "a watcher sees version %d as written", st.Version)
		last = st.Version
	}
	require.NotEmpty(t, watched, "the watcher saw the task")
}

// randomCall picks a call of tr on task id, returning what it records if
// it succeeds, the call itself, and the sentinel errors its doc allows it
// to be refused with. tag makes its recorded text unique.
func randomCall(rng *rand.Rand, tr *tracker.Tracker, id, tag string, retries bool) (call, func(context.Context) error, []error) {
	step := stepNames[rng.IntN(len(stepNames))]
	terminal, transition := store.ErrTerminal, store.ErrInvalidTransition
	switch n := rng.IntN(100); {
	case n < 5:
		plan := slices.Clone(stepNames[:1+rng.IntN(len(stepNames))])
		return call{kind: "start"}, func(ctx context.Context) error { return tr.Start(ctx, id, plan...) }, []error{terminal, transition}
	case n < 20:
		return call{kind: "start step", step: step}, func(ctx context.Context) error { return tr.StartStep(ctx, id, step) }, []error{terminal, transition}
	case n < 27:
		return call{kind: "retry step", step: step, text: tag}, func(ctx context.Context) error {
			return tr.RetryStep(ctx, id, step, errors.New(tag))
		}, []error{terminal, transition}
	case n < 40:
		return call{kind: "succeed step", step: step}, func(ctx context.Context) error { return tr.SucceedStep(ctx, id, step) }, []error{terminal}
	case n < 46:
		return call{kind: "fail step", step: step, text: tag}, func(ctx context.Context) error {
			return tr.FailStep(ctx, id, step, errors.New(tag))
		}, []error{terminal}
	case n < 50:
		return call{kind: "skip step", step: step}, func(ctx context.Context) error { return tr.SkipStep(ctx, id, step) }, []error{terminal}
	case n < 60:
		return call{kind: "set progress", text: tag}, func(ctx context.Context) error {
			return tr.SetProgress(ctx, id, store.Progress{Done: 1, Total: 2, Message: tag})
		}, []error{terminal}
	case n < 62:
		return call{kind: "set progress"}, func(ctx context.Context) error {
			return tr.SetProgress(ctx, id, store.Progress{Done: 3, Total: 2})
		}, []error{store.ErrInvalidInput}
	case n < 70:
		return call{kind: "set result", text: tag}, func(ctx context.Context) error {
			return tr.SetResult(ctx, id, map[string]any{tag[:2]: tag})
		}, []error{terminal}
	case n < 73:
		return call{kind: "heartbeat"}, func(ctx context.Context) error { return tr.Heartbeat(ctx, id) }, []error{terminal}
	case n < 75:
		return call{kind: "start step", step: ""}, func(ctx context.Context) error { return tr.StartStep(ctx, id, "") }, []error{terminal, store.ErrInvalidInput}
	case n < 85:
		// Two changes in one write, on different steps so that each
		// shows in the history as it would alone.
		other := stepNames[(slices.Index(stepNames, step)+1+rng.IntN(len(stepNames)-1))%len(stepNames)]
		c := call{kind: "apply succeed step, start step", parts: []call{
			{kind: "succeed step", step: step}, {kind: "start step", step: other},
		}}
		return c, func(ctx context.Context) error {
			return tr.Apply(ctx, id, tracker.StepSucceeded(step), tracker.StepStarted(other))
		}, []error{terminal, transition}
	case n < 88:
		return call{kind: "succeed"}, func(ctx context.Context) error { return tr.Succeed(ctx, id) }, []error{terminal, transition}
	case n < 90:
		return call{kind: "fail", text: tag}, func(ctx context.Context) error {
			return tr.Fail(ctx, id, errors.New(tag), map[string]any{"tag": tag})
		}, []error{terminal}
	case n < 92 || !retries:
		return call{kind: "cancel", text: tag}, func(ctx context.Context) error { return tr.Cancel(ctx, id, errors.New(tag)) }, []error{terminal}
	default:
		return call{kind: "retry"}, func(ctx context.Context) error { return tr.Retry(ctx, id) }, []error{transition}
	}
}

// checkRefusal fails t unless err, returned by call c of task id, is a
// *tracker.Error naming c and wrapping one of the allowed sentinel errors.
func checkRefusal(t *testing.T, err error, id string, c call, allowed []error) {
	var te *tracker.Error
	if !errors.As(err, &te) || te.Op != c.kind || te.ID != id {
		t.Errorf("%s: error %v is not a *tracker.Error of op %q on %q", c.kind, err, c.kind, id)
		return
	}
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("%s: %v: a conflict is retried, and the store is up", c.kind, err)
		return
	}
	for _, want := range allowed {
		if errors.Is(err, want) {
			return
		}
	}
	t.Errorf("%s: %v wraps none of the documented errors %v", c.kind, err, allowed)
}

// checkTransition fails t unless next can follow prev.
func checkTransition(t *testing.T, prev, next store.State) {
	t.Helper()
	v := next.Version
	fail := func(format string, args ...any) {
		t.Fatalf("version %d -> %d: %s\nbefore %+v\nafter  %+v", v-1, v, fmt.Sprintf(format, args...), prev, next)
	}
	if next.ID != prev.ID || !next.CreatedAt.Equal(prev.CreatedAt) || next.CorrelationID != prev.CorrelationID {
		fail("the id, creation time or correlation id changed")
	}
	if next.UpdatedAt.Before(prev.UpdatedAt) {
		fail("updated_at went back from %v to %v", prev.UpdatedAt, next.UpdatedAt)
	}
	for _, s := range next.Steps {
		if !s.StartedAt.IsZero() && !s.CompletedAt.IsZero() && s.CompletedAt.Before(s.StartedAt) {
			fail("step %q completed at %v, before it started at %v", s.Name, s.CompletedAt, s.StartedAt)
		}
	}
	if prev.Status.Terminal() {
		// Only Retry changes an ended task: a new attempt from scratch.
		want := store.State{ID: prev.ID, CorrelationID: prev.CorrelationID, Status: store.StatusPending,
			CreatedAt: prev.CreatedAt, UpdatedAt: next.UpdatedAt, LeaseUntil: next.LeaseUntil,
			Attempt: prev.Attempt + 1, Version: v}
		for _, s := range prev.Steps {
			want.Steps = append(want.Steps, store.Step{Name: s.Name, Status: store.StepPending})
		}
		if !want.Equal(next) {
			fail("an ended task changed other than by Retry")
		}
		return
	}
	if next.Attempt != prev.Attempt {
		fail("the attempt changed without a Retry")
	}
	switch {
	case prev.Status == store.StatusPending && next.Status == store.StatusSuccess,
		prev.Status == store.StatusRunning && next.Status == store.StatusPending:
		fail("%s -> %s is not a transition", prev.Status, next.Status)
	case !prev.StartedAt.IsZero() && !next.StartedAt.Equal(prev.StartedAt):
		fail("started_at changed")
	case next.Status.Terminal() == next.CompletedAt.IsZero():
		fail("completed_at is set if and only if the task has ended")
	case next.Status.Terminal() && !next.LeaseUntil.IsZero(), !next.Status.Terminal() && next.LeaseUntil.IsZero():
		fail("a task that has not ended holds a lease, an ended one none")
	}
	if len(next.Steps) < len(prev.Steps) {
		fail("steps were dropped")
	}
	for i, p := range prev.Steps {
		n := next.Steps[i]
		switch {
		case n.Name != p.Name:
			fail("step %d changed name from %q to %q", i, p.Name, n.Name)
		case p.Status.Terminal() && !stepEqual(p, n):
			fail("step %q ended as %s and then changed to %+v", p.Name, p.Status, n)
		case p.Status == store.StepRunning && n.Status == store.StepPending:
			fail("step %q went back from running to pending", p.Name)
		}
	}
	for k := range prev.Result {
		if _, ok := next.Result[k]; !ok {
			fail("result field %q was dropped", k)
		}
	}
}

// checkAcknowledged fails t unless every acknowledged call is in the
// history: each step change, end and retry is a transition of its own
// kind, and each recorded text is found where it was recorded.
func checkAcknowledged(t *testing.T, history []store.State, all []call, retries bool) {
	t.Helper()
	type key struct{ kind, step string }
	want := map[key]int{}
	texts := map[string]call{}
	for _, c := range all {
		parts := c.parts
		if parts == nil {
			parts = []call{c}
		}
		for _, p := range parts {
			switch p.kind {
			case "start step", "retry step", "succeed step", "fail step", "skip step":
				want[key{p.kind, p.step}]++
			case "succeed", "fail", "cancel", "retry":
				want[key{p.kind, ""}]++
			}
			if p.text != "" {
				texts[p.text] = p
			}
		}
	}

	got := map[key]int{}
	found := map[string]bool{}
	for v := 2; v < len(history); v++ {
		prev, next := history[v-1], history[v]
		switch {
		case prev.Status.Terminal():
			got[key{"retry", ""}]++
			continue
		case next.Status.Terminal():
			got[key{map[store.Status]string{store.StatusSuccess: "succeed", store.StatusFailed: "fail", store.StatusCanceled: "cancel"}[next.Status], ""}]++
			found[next.ErrorMessage] = true
			continue
		}
		found[next.Progress.Message] = true
		for _, raw := range next.Result {
			found[string(raw[1:len(raw)-1])] = true
		}
		for _, n := range next.Steps {
			p, _ := prev.Step(n.Name)
			if p.Status == "" {
				p.Status = store.StepPending
			}
			switch {
			case p.Status.Terminal() || (p.Status == n.Status && p.Attempt == n.Attempt):
				continue
			case n.Status == store.StepRunning && p.Status == store.StepRunning:
				got[key{"retry step", n.Name}]++
				found[n.Error] = true
			case n.Status == store.StepRunning:
				got[key{"start step", n.Name}]++
			case n.Status == store.StepSuccess:
				got[key{"succeed step", n.Name}]++
			case n.Status == store.StepFailed:
				got[key{"fail step", n.Name}]++
				found[n.Error] = true
			case n.Status == store.StepSkipped:
				got[key{"skip step", n.Name}]++
			}
		}
	}
	require.Equal(t, want, got, "each acknowledged change is one transition of its kind in the history")
	for text, c := range texts {
		require.True(t, found[text], "the %s recorded as %q is in the history", c.kind, text)
	}

	if retries {
		return
	}
	// Without Retry a step that ended stays as it ended: every
	// acknowledged step end is in the final state.
	final := history[len(history)-1]
	for _, c := range all {
		parts := c.parts
		if parts == nil {
			parts = []call{c}
		}
		for _, p := range parts {
			s, _ := final.Step(p.step)
			switch p.kind {
			case "succeed step":
				require.Equal(t, store.StepSuccess, s.Status, "step %q", p.step)
			case "skip step":
				require.Equal(t, store.StepSkipped, s.Status, "step %q", p.step)
			case "fail step":
				require.Equal(t, store.StepFailed, s.Status, "step %q", p.step)
				require.Equal(t, p.text, s.Error, "step %q", p.step)
			}
		}
	}
}

func stepEqual(a, b store.Step) bool {
	return a.Name == b.Name && a.Status == b.Status && a.StartedAt.Equal(b.StartedAt) &&
		a.CompletedAt.Equal(b.CompletedAt) && a.Error == b.Error && a.Attempt == b.Attempt
}
