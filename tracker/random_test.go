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
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/memstore"
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
//   - every acknowledged call is one version (but a cancel request made
//     when one was made already, which writes nothing), and every
//     acknowledged step and sub-step update, progress report (of the task
//     or a step) and result field is in the history (and, in rounds
//     without Retry, in the final state);
//   - every refused call returns a *tracker.Error wrapping a sentinel error
//     its doc names, is reported to the error handler, and writes nothing;
//   - a watcher sees strictly increasing versions, each as written.
//
// It runs on memstore, on redisstore over miniredis, and on pgstore on the
// server TASKSTATUS_POSTGRES_URL names, each Tracker with a client (a pool)
// of its own, as in processes of their own. Set -tracker.seed to replay a failing seed.
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
			return func(t *testing.T) store.Store { return redisStore(t, mr.Addr(), "") }
		}},
		{"pgstore", 12, pgStores},
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

func (r recorder) Put(ctx context.Context, w store.Write) error {
	if err := r.Store.Put(ctx, w); err != nil {
		return err
	}
	st := w.State
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
		tr := trackers[i]
		t.Cleanup(func() { require.NoError(t, tr.Close(context.Background())) })
	}

	// Every Tracker creates the task at once: one succeeds.
	created := make([]error, workers)
	var wg sync.WaitGroup
	for i, tr := range trackers {
		wg.Go(func() { created[i] = tr.Apply(ctx, id, tracker.Create(stepNames[:2]...)) })
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
	checkVersions(t, states, all)

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
	other := stepNames[(slices.Index(stepNames, step)+1+rng.IntN(len(stepNames)-1))%len(stepNames)]
	n := rng.IntN(100)
	if !retries && n >= 92 {
		n = 90 // a cancel instead of a retry
	}
	for _, c := range randomCalls(step, other, tag) {
		if n < c.below {
			return c.call, func(ctx context.Context) error { return c.do(ctx, tr, id) }, c.allowed
		}
	}
	panic("unreachable")
}

// randomCallKind is a kind of call randomCall makes, with the odds of
// below minus the previous kind's below, in 100.
type randomCallKind struct {
	below   int
	call    call
	do      func(ctx context.Context, tr *tracker.Tracker, id string) error
	allowed []error
}

// randomCalls returns the kinds of call of randomCall, on steps step and
// other and on sub-step sub of step (named after other), recording tag.
func randomCalls(step, other, tag string) []randomCallKind {
	sub := "part-" + other
	terminal, transition := store.ErrTerminal, store.ErrInvalidTransition
	apply := func(changes ...tracker.Change) func(context.Context, *tracker.Tracker, string) error {
		return func(ctx context.Context, tr *tracker.Tracker, id string) error { return tr.Apply(ctx, id, changes...) }
	}
	start := func(ctx context.Context, tr *tracker.Tracker, id string) error {
		_, err := tr.Start(ctx, id)
		return err
	}
	return []randomCallKind{
		{5, call{kind: "start"}, start, []error{terminal, transition}},
		{16, call{kind: "start step", step: step}, apply(tracker.StartStep(step)), []error{terminal, transition}},
		{18, call{kind: "start sub-step", step: step + "/" + sub}, apply(tracker.StartSubStep(step, sub)), []error{terminal, transition}},
		{20, call{kind: "succeed sub-step", step: step + "/" + sub}, apply(tracker.SucceedSubStep(step, sub)), []error{terminal, transition}},
		{27, call{kind: "retry step", step: step, text: tag}, apply(tracker.RetryStep(step, errors.New(tag))), []error{terminal, transition}},
		{40, call{kind: "succeed step", step: step}, apply(tracker.SucceedStep(step)), []error{terminal}},
		{46, call{kind: "fail step", step: step, text: tag}, apply(tracker.FailStep(step, errors.New(tag))), []error{terminal}},
		{50, call{kind: "skip step", step: step}, apply(tracker.SkipStep(step)), []error{terminal}},
		{56, call{kind: "set progress", text: tag}, apply(tracker.SetProgress(store.Progress{Done: 1, Total: 2, Message: tag})), []error{terminal}},
		{58, call{kind: "set step progress", step: step, text: tag}, apply(tracker.StepProgress(step, store.Progress{Done: 1, Message: tag})), []error{terminal, transition}},
		{60, call{kind: "fail sub-step", step: step + "/" + sub, text: tag}, apply(tracker.FailSubStep(step, sub, errors.New(tag))), []error{terminal, transition}},
		{62, call{kind: "set progress"}, apply(tracker.SetProgress(store.Progress{Done: 3, Total: 2})), []error{store.ErrInvalidInput}},
		{70, call{kind: "set result", text: tag}, apply(tracker.SetResult(map[string]any{tag[:2]: tag})), []error{terminal}},
		{73, call{kind: "heartbeat"}, apply(tracker.Heartbeat()), []error{terminal}},
		{75, call{kind: "start step", step: ""}, apply(tracker.StartStep("")), []error{terminal, store.ErrInvalidInput}},
		// Two changes in one write, on different steps so that each shows
		// in the history as it would alone.
		{85, call{kind: "apply succeed step, start step", parts: []call{{kind: "succeed step", step: step}, {kind: "start step", step: other}}},
			apply(tracker.SucceedStep(step), tracker.StartStep(other)), []error{terminal, transition}},
		{88, call{kind: "succeed"}, apply(tracker.Succeed()), []error{terminal, transition}},
		{90, call{kind: "fail", text: tag}, apply(tracker.Fail(errors.New(tag), map[string]any{"tag": tag})), []error{terminal}},
		{91, call{kind: "cancel", text: tag}, apply(tracker.Cancel(errors.New(tag))), []error{terminal}},
		{92, call{kind: "request cancel", text: tag}, apply(tracker.RequestCancel(tag)), []error{terminal}},
		{100, call{kind: "retry"}, apply(tracker.Retry()), []error{transition}},
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
	fail := func(format string, args ...any) {
		t.Fatalf("version %d -> %d: %s\nbefore %+v\nafter  %+v", next.Version-1, next.Version, fmt.Sprintf(format, args...), prev, next)
	}
	if next.ID != prev.ID || next.Incarnation != prev.Incarnation || !next.CreatedAt.Equal(prev.CreatedAt) || next.CorrelationID != prev.CorrelationID {
		fail("the id, incarnation, creation time or correlation id changed")
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
		if !next.Equal(retried(prev, next)) {
			fail("an ended task changed other than by Retry")
		}
		return
	}
	if msg := taskChange(prev, next); msg != "" {
		fail("%s", msg)
	}
	if msg := stepsChange(prev, next); msg != "" {
		fail("%s", msg)
	}
}

// checkVersions fails t unless each acknowledged call of all is one
// version of states, but a cancel request made when one was made already,
// which writes nothing; and nothing else writes.
func checkVersions(t *testing.T, states []store.State, all []call) {
	t.Helper()
	requests, requestWrites := 0, 0
	for _, c := range all {
		if c.kind == "request cancel" {
			requests++
		}
	}
	for v := 2; v < len(states); v++ {
		if requested(states[v-1], states[v]) {
			requestWrites++
		}
	}
	require.Len(t, states, 2+len(all)-requests+requestWrites,
		"each acknowledged call is one version, but cancel requests made already, and nothing else writes")
	require.LessOrEqual(t, requestWrites, requests, "each cancel request written was acknowledged")
	if requests > 0 {
		require.Positive(t, requestWrites, "an acknowledged cancel request was written, or found one written")
	}
}

// requested reports whether next records a cancel request that prev, of
// the same attempt, did not.
func requested(prev, next store.State) bool {
	return prev.Attempt == next.Attempt && prev.CancelRequestedAt.IsZero() && !next.CancelRequestedAt.IsZero()
}

// retried returns the state a Retry makes of prev, ended, with the times
// and version of next.
func retried(prev, next store.State) store.State {
	outcome := store.Attempt{Attempt: prev.Attempt, Status: prev.Status, StartedAt: prev.StartedAt,
		CompletedAt: prev.CompletedAt, ErrorMessage: prev.ErrorMessage, ErrorDetails: prev.ErrorDetails}
	previous := append(slices.Clone(prev.PreviousAttempts), outcome)
	want := store.State{ID: prev.ID, Incarnation: prev.Incarnation, CorrelationID: prev.CorrelationID, Status: store.StatusPending,
		CreatedAt: prev.CreatedAt, UpdatedAt: next.UpdatedAt, LeaseUntil: next.LeaseUntil,
		Attempt: prev.Attempt + 1, PreviousAttempts: previous[max(0, len(previous)-store.MaxPreviousAttempts):],
		Version: next.Version}
	for _, s := range prev.Steps {
		want.Steps = append(want.Steps, store.Step{Name: s.Name, Status: store.StepPending})
	}
	return want
}

// taskChange says what is wrong with the change of the task's own fields
// from prev, which has not ended, to next, or "".
func taskChange(prev, next store.State) string {
	switch {
	case next.Attempt != prev.Attempt:
		return "the attempt changed without a Retry"
	case cancelChange(prev, next) != "":
		return cancelChange(prev, next)
	case prev.Status == store.StatusPending && next.Status == store.StatusSuccess,
		prev.Status == store.StatusRunning && next.Status == store.StatusPending:
		return fmt.Sprintf("%s -> %s is not a transition", prev.Status, next.Status)
	case !prev.StartedAt.IsZero() && !next.StartedAt.Equal(prev.StartedAt):
		return "started_at changed"
	case next.Status.Terminal() == next.CompletedAt.IsZero():
		return "completed_at is set if and only if the task has ended"
	case next.Status.Terminal() && !next.LeaseUntil.IsZero(), !next.Status.Terminal() && next.LeaseUntil.IsZero():
		return "a task that has not ended holds a lease, an ended one none"
	}
	for k := range prev.Result {
		if _, ok := next.Result[k]; !ok {
			return fmt.Sprintf("result field %q was dropped", k)
		}
	}
	return ""
}

// cancelChange says what is wrong with the change of the cancel request
// from prev, which has not ended, to next, or "": a request never changes,
// and one made ends a pending task at once, and no other.
func cancelChange(prev, next store.State) string {
	switch {
	case !prev.CancelRequestedAt.IsZero() && (!next.CancelRequestedAt.Equal(prev.CancelRequestedAt) || next.CancelReason != prev.CancelReason):
		return "a cancel request changed"
	case requested(prev, next) && next.Status != prev.Status && (prev.Status != store.StatusPending || next.Status != store.StatusCanceled):
		return fmt.Sprintf("a cancel request took the task from %s to %s", prev.Status, next.Status)
	}
	return ""
}

// stepsChange says what is wrong with the change of the steps from prev
// to next, or "".
func stepsChange(prev, next store.State) string {
	if len(next.Steps) < len(prev.Steps) {
		return "steps were dropped"
	}
	for i, p := range prev.Steps {
		n := next.Steps[i]
		switch {
		case n.Name != p.Name:
			return fmt.Sprintf("step %d changed name from %q to %q", i, p.Name, n.Name)
		case p.Status.Terminal() && !stepEqual(p, n):
			return fmt.Sprintf("step %q ended as %s and then changed to %+v", p.Name, p.Status, n)
		case p.Status == store.StepRunning && n.Status == store.StepPending:
			return fmt.Sprintf("step %q went back from running to pending", p.Name)
		}
	}
	return ""
}

// transitionKey names a kind of transition: a call's kind and its step.
type transitionKey struct{ kind, step string }

// checkAcknowledged fails t unless every acknowledged call is in the
// history: each step change, end and retry is a transition of its own
// kind, and each recorded text is found where it was recorded.
func checkAcknowledged(t *testing.T, history []store.State, all []call, retries bool) {
	t.Helper()
	want, texts := expectedTransitions(all)
	got, found := historyTransitions(history)
	require.Equal(t, want, got, "each acknowledged change is one transition of its kind in the history")
	for text, c := range texts {
		require.True(t, found[text], "the %s recorded as %q is in the history", c.kind, text)
	}
	if !retries {
		checkFinalSteps(t, history[len(history)-1], all)
	}
}

// changes returns the changes of c, one or several.
func (c call) changes() []call {
	if c.parts == nil {
		return []call{c}
	}
	return c.parts
}

// expectedTransitions counts the transitions that the acknowledged calls
// all made, by kind, and returns the texts they recorded.
func expectedTransitions(all []call) (map[transitionKey]int, map[string]call) {
	want := map[transitionKey]int{}
	texts := map[string]call{}
	for _, c := range all {
		for _, p := range c.changes() {
			switch p.kind {
			case "start step", "retry step", "succeed step", "fail step", "skip step",
				"start sub-step", "succeed sub-step", "fail sub-step":
				want[transitionKey{p.kind, p.step}]++
			case "succeed", "fail", "cancel", "retry":
				want[transitionKey{p.kind, ""}]++
			}
			if p.text != "" && p.kind != "request cancel" {
				texts[p.text] = p
			}
		}
	}
	return want, texts
}

// historyTransitions counts the transitions of history by kind, and
// returns the texts it holds.
func historyTransitions(history []store.State) (map[transitionKey]int, map[string]bool) {
	got := map[transitionKey]int{}
	found := map[string]bool{}
	ends := map[store.Status]string{store.StatusSuccess: "succeed", store.StatusFailed: "fail", store.StatusCanceled: "cancel"}
	for v := 2; v < len(history); v++ {
		prev, next := history[v-1], history[v]
		switch {
		case prev.Status.Terminal():
			got[transitionKey{"retry", ""}]++
			continue
		case requested(prev, next):
			found[next.CancelReason] = true
			continue // counted apart: a request made already writes nothing
		case next.Status.Terminal():
			got[transitionKey{ends[next.Status], ""}]++
			found[next.ErrorMessage] = true
			continue
		}
		found[next.Progress.Message] = true
		for _, raw := range next.Result {
			found[string(raw[1:len(raw)-1])] = true
		}
		for _, n := range next.Steps {
			p, _ := prev.Step(n.Name)
			if kind := stepTransition(p, n); kind != "" {
				got[transitionKey{kind, n.Name}]++
				found[n.Error] = true
			}
			found[n.Progress.Message] = true
			if p.Status != store.StepRunning || n.Status != store.StepRunning || p.Attempt != n.Attempt {
				continue // the step's start, end or retry changes its sub-steps as a whole
			}
			for _, ns := range n.SubSteps {
				i := slices.IndexFunc(p.SubSteps, func(s store.SubStep) bool { return s.Name == ns.Name })
				var ps store.SubStep
				if i >= 0 {
					ps = p.SubSteps[i]
				}
				if kind := subStepTransition(ps, ns); kind != "" {
					got[transitionKey{kind, n.Name + "/" + ns.Name}]++
					found[ns.Error] = true
				}
			}
		}
	}
	return got, found
}

// stepTransition names the call that took a step from p to n, or "" if
// the step did not change. A step p that did not exist yet was pending.
func stepTransition(p, n store.Step) string {
	if p.Status == "" {
		p.Status = store.StepPending
	}
	switch {
	case p.Status.Terminal() || (p.Status == n.Status && p.Attempt == n.Attempt):
		return ""
	case n.Status == store.StepRunning && p.Status == store.StepRunning:
		return "retry step"
	case n.Status == store.StepRunning:
		return "start step"
	}
	return map[store.StepStatus]string{store.StepSuccess: "succeed step", store.StepFailed: "fail step", store.StepSkipped: "skip step"}[n.Status]
}

// subStepTransition names the call that took a sub-step from p to n, or
// "" if it did not change. A sub-step p that did not exist yet was pending.
func subStepTransition(p, n store.SubStep) string {
	if p.Status == "" {
		p.Status = store.StepPending
	}
	if p.Status.Terminal() || p.Status == n.Status {
		return ""
	}
	return map[store.StepStatus]string{store.StepRunning: "start sub-step", store.StepSuccess: "succeed sub-step", store.StepFailed: "fail sub-step"}[n.Status]
}

// checkFinalSteps fails t unless every acknowledged step end is in final:
// without Retry, a step that ended stays as it ended.
func checkFinalSteps(t *testing.T, final store.State, all []call) {
	t.Helper()
	statuses := map[string]store.StepStatus{"succeed step": store.StepSuccess, "skip step": store.StepSkipped, "fail step": store.StepFailed}
	for _, c := range all {
		for _, p := range c.changes() {
			want, ok := statuses[p.kind]
			if !ok {
				continue
			}
			s, _ := final.Step(p.step)
			require.Equal(t, want, s.Status, "step %q", p.step)
			if p.kind == "fail step" {
				require.Equal(t, p.text, s.Error, "step %q", p.step)
			}
		}
	}
}

func stepEqual(a, b store.Step) bool {
	return a.Name == b.Name && a.Status == b.Status && a.StartedAt.Equal(b.StartedAt) &&
		a.CompletedAt.Equal(b.CompletedAt) && a.Error == b.Error && a.Attempt == b.Attempt
}
