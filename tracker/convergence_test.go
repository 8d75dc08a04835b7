package tracker_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

var (
	convergenceSeed   = flag.Uint64("tracker.convergence.seed", 1, "seed of TestConvergence; 0 picks one")
	convergenceRounds = flag.Int("tracker.convergence.rounds", 3, "rounds of TestConvergence (make fuzz runs more)")
)

// TestConvergence runs many tasks' work at once over a store that fails at
// random: a write fails before it is applied, or after (its reply lost),
// reads fail, outages last a while, and the store forgets tasks (a restart
// without persistence). Each task's work is a random plan of steps, some
// retried, some failing, some optional, with results and progress; it
// records each step through a Run and ignores the tracker's errors, as a
// pipeline does. Once the work is done and the store answers again, Close
// writes what waits, and every task's stored state must be what its work
// did: its status and error, each step's status, attempts and error, its
// results and its last progress. No step that ran is skipped, no task that
// failed is a success.
//
// The seed is fixed so that every go test run checks the same histories;
// -tracker.convergence.seed=0 picks one at random, and
// -tracker.convergence.rounds runs more.
func TestConvergence(t *testing.T) {
	for _, b := range []struct {
		name string
		open func(t *testing.T) store.Store
	}{
		{"memstore", func(t *testing.T) store.Store {
			s, err := memstore.New()
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, s.Close()) })
			return s
		}},
		{"redisstore", func(t *testing.T) store.Store { return redisStore(t, miniredis.RunT(t).Addr(), "") }},
	} {
		t.Run(b.name, func(t *testing.T) {
			seed := *convergenceSeed
			if seed == 0 {
				seed = rand.Uint64()
			}
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("replay with: go test ./tracker -run 'TestConvergence/%s' -tracker.convergence.seed=%d", b.name, seed)
				}
			})
			for round := range *convergenceRounds {
				ok := t.Run(fmt.Sprintf("round-%02d", round), func(t *testing.T) {
					runConvergenceRound(t, b.open(t), seed+uint64(round))
				})
				if !ok {
					return
				}
			}
		})
	}
}

// chaos returns the faults of TestConvergence, for a faultyStore over s:
// calls fail at random, from a seeded source, and outages last a while; a
// write of a task that has not ended may also find its task forgotten
// first (a restart without persistence), which no final state sees, so
// that none is lost. The faultyStore's lock guards the source.
func chaos(s store.Store, rng *rand.Rand) func(op string, w store.Write) fault {
	outage := 0 // calls left in the current outage
	return func(op string, w store.Write) fault {
		if outage > 0 {
			outage--
			return down
		}
		switch n := rng.IntN(100); {
		case n < 3:
			outage = 5 + rng.IntN(40)
			return down
		case n < 10:
			return down
		case n < 17:
			return lose
		case op == "put" && n < 19 && !w.State.Status.Terminal() && w.Prev > 1:
			_ = s.Delete(context.Background(), w.State.ID)
		}
		return pass
	}
}

// planStep is one step of a task's plan.
type planStep struct {
	name     string
	attempts int    // attempts made, at least 1
	ok       bool   // whether the last attempt succeeds
	optional bool   // a failure does not fail the task
	result   string // a result field it sets, or ""
}

// plan is the work of one task.
type plan struct {
	id     string
	steps  []planStep
	cancel int // the step before which the work is canceled, or -1
}

func randomPlan(rng *rand.Rand, id string) plan {
	p := plan{id: id, cancel: -1}
	for i := range 2 + rng.IntN(5) {
		s := planStep{name: fmt.Sprintf("step-%d", i), attempts: 1, ok: rng.IntN(10) > 0, optional: rng.IntN(4) == 0}
		if rng.IntN(3) == 0 {
			s.attempts += 1 + rng.IntN(2)
		}
		if rng.IntN(2) == 0 {
			s.result = fmt.Sprintf("r%d", i)
		}
		p.steps = append(p.steps, s)
	}
	if rng.IntN(8) == 0 {
		p.cancel = rng.IntN(len(p.steps))
	}
	return p
}

// names returns the plan's step names.
func (p plan) names() []string {
	names := make([]string, len(p.steps))
	for i, s := range p.steps {
		names[i] = s.name
	}
	return names
}

// work does p's work, recording it through tr as a pipeline would, and
// returns what it did: the state the task must end in (times and versions
// aside). It fails t if the tracker refuses a change: with the store
// failing, the tracker may only say that it is unavailable.
func (p plan) work(t *testing.T, tr *tracker.Tracker) store.State {
	ctx := context.Background()
	want := store.State{ID: p.id, Status: store.StatusSuccess, Attempt: 1}
	for {
		err := tr.Apply(ctx, p.id, tracker.Create(p.names()...))
		if err == nil || errors.Is(err, store.ErrExists) { // ErrExists: its reply was lost
			break
		}
		require.ErrorIs(t, err, store.ErrUnavailable, "%s: create", p.id)
	}
	run, err := tr.Start(ctx, p.id)
	if err != nil {
		require.ErrorIs(t, err, store.ErrUnavailable, "%s: start", p.id)
	}
	record := func(changes ...tracker.Change) {
		if err := run.Apply(ctx, changes...); err != nil {
			assert.ErrorIs(t, err, store.ErrUnavailable, "%s: %v", p.id, err)
		}
	}
	end := func(status store.Status, msg string, from int) store.State {
		want.Status, want.ErrorMessage = status, msg
		for _, s := range p.steps[from:] {
			want.Steps = append(want.Steps, store.Step{Name: s.name, Status: store.StepSkipped})
		}
		return want
	}
	for i, s := range p.steps {
		if i == p.cancel {
			record(tracker.Cancel(errors.New("stopped")))
			return end(store.StatusCanceled, "stopped", i)
		}
		record(tracker.StartStep(s.name))
		for n := 1; n < s.attempts; n++ {
			record(tracker.RetryStep(s.name, fmt.Errorf("%s attempt %d", s.name, n)))
		}
		step := store.Step{Name: s.name, Status: store.StepSuccess, Attempt: s.attempts}
		if s.result != "" {
			record(tracker.SetResult(map[string]any{s.result: s.name}))
			if want.Result == nil {
				want.Result = map[string]json.RawMessage{}
			}
			want.Result[s.result] = json.RawMessage(`"` + s.name + `"`)
		}
		want.Progress = store.Progress{Done: int64(i + 1), Total: int64(len(p.steps))}
		record(tracker.SetProgress(want.Progress))
		if !s.ok {
			cause := fmt.Errorf("%s failed", s.name)
			step.Status, step.Error = store.StepFailed, cause.Error()
			want.Steps = append(want.Steps, step)
			if !s.optional {
				record(tracker.FailStep(s.name, cause), tracker.Fail(cause, nil))
				return end(store.StatusFailed, cause.Error(), i+1)
			}
			record(tracker.FailStep(s.name, cause))
			continue
		}
		want.Steps = append(want.Steps, step)
		record(tracker.SucceedStep(s.name))
	}
	record(tracker.Succeed())
	return want
}

func runConvergenceRound(t *testing.T, s store.Store, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	faulty := &faultyStore{Store: s}
	faulty.set(chaos(s, rand.New(rand.NewPCG(seed, 2))))
	tr, err := tracker.New(faulty, tracker.WithTimeout(time.Second), tracker.WithErrorHandler(func(context.Context, error) {}))
	require.NoError(t, err)

	const tasks = 40
	plans := make([]plan, tasks)
	for i := range plans {
		plans[i] = randomPlan(rng, fmt.Sprintf("conv-%d-%d", seed, i))
	}
	wants := make([]store.State, tasks)
	var wg sync.WaitGroup
	for i, p := range plans {
		wg.Go(func() { wants[i] = p.work(t, tr) })
	}
	wg.Wait()
	faulty.set(nil) // the store answers again
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, tr.Close(ctx), "every change kept is written once the store answers")

	for i, p := range plans {
		got, err := s.Get(t.Context(), p.id)
		require.NoError(t, err, "%s", p.id)
		requireDid(t, wants[i], got)
	}
}

// requireDid fails t unless got records what want says the work did.
func requireDid(t *testing.T, want, got store.State) {
	t.Helper()
	msg := fmt.Sprintf("task %s: the stored state is not what its work did:\nwant %+v\ngot  %+v", want.ID, want, got)
	require.Equal(t, want.Status, got.Status, msg)
	require.Equal(t, want.ErrorMessage, got.ErrorMessage, msg)
	require.Equal(t, want.Attempt, got.Attempt, msg)
	require.Equal(t, want.Progress, got.Progress, msg)
	require.Len(t, got.Steps, len(want.Steps), msg)
	for i, w := range want.Steps {
		g := got.Steps[i]
		require.Equal(t, w.Name, g.Name, msg)
		require.Equal(t, w.Status, g.Status, "step %s: %s", w.Name, msg)
		require.Equal(t, w.Error, g.Error, "step %s: %s", w.Name, msg)
		if w.Status != store.StepSkipped {
			require.Equal(t, w.Attempt, g.Attempt, "step %s: %s", w.Name, msg)
		}
	}
	require.Len(t, got.Result, len(want.Result), msg)
	for k, v := range want.Result {
		require.JSONEq(t, string(v), string(got.Result[k]), msg)
	}
}
