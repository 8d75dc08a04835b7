package redisstore_test

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/assert"

	"github.com/taskstatus/taskstatus/store"
)

// This file holds the sequential model of a task that TestLinearizable
// checks its histories against: the state machine of package tracker
// (tracker/change.go), reduced to what the operations observe.

// linearSteps are the names of the steps the operations change, and
// linearFields the number of result fields they set ("f0", "f1"...).
var linearSteps = [...]string{"parse", "embed", "index"}

const linearFields = 2

// modelStep is what the model keeps of a step.
type modelStep struct {
	name    string // "" for no step
	status  store.StepStatus
	attempt int
}

// modelTask is what the model keeps of a task: what the operations
// observe of it. Its zero value is no task. It is comparable, so that
// porcupine compares states with ==.
type modelTask struct {
	status   store.Status // "" for no task
	attempt  int
	version  int64
	steps    [len(linearSteps)]modelStep // in the task's order; unused ones last
	result   [linearFields]int64         // 0 for no field
	progress int64                       // Progress.Done
}

// outcome is how an operation ended, as the model tells them apart.
type outcome uint8

const (
	outOK         outcome = iota // applied, or read
	outUnknown                   // the store did not answer: applied or not
	outExists                    // store.ErrExists
	outNotFound                  // store.ErrNotFound
	outTerminal                  // store.ErrTerminal
	outInvalid                   // store.ErrInvalidTransition
	outUnexpected                // any other error: the test fails
)

func (o outcome) String() string {
	return [...]string{"ok", "unknown", "exists", "not found", "terminal", "invalid", "unexpected"}[o]
}

// changeKind names the changes the operations apply.
type changeKind uint8

const (
	createChange changeKind = iota
	startStepChange
	retryStepChange
	succeedStepChange
	failStepChange
	skipStepChange
	progressChange
	resultChange
	succeedChange
	failChange
	cancelChange
	retryChange
)

// linChange is one change of an operation.
type linChange struct {
	kind  changeKind
	plan  uint8 // createChange: the steps planned, a bit per linearSteps index
	step  int   // a step change: the index of its step in linearSteps
	field int   // resultChange: the index of the field
	value int64 // resultChange, progressChange: the value set, unique in the run
}

func (c linChange) String() string {
	name := [...]string{
		"create", "start step", "retry step", "succeed step", "fail step", "skip step",
		"progress", "result", "succeed", "fail", "cancel", "retry",
	}[c.kind]
	switch {
	case c.kind == createChange:
		return name + " " + strings.Join(planned(c.plan), ",")
	case c.kind >= startStepChange && c.kind <= skipStepChange:
		return name + " " + linearSteps[c.step]
	case c.kind == progressChange:
		return fmt.Sprintf("%s %d", name, c.value)
	case c.kind == resultChange:
		return fmt.Sprintf("%s %s=%d", name, fieldName(c.field), c.value)
	}
	return name
}

// planned returns the names of the steps that plan, a bit per index of
// linearSteps, holds.
func planned(plan uint8) []string {
	var steps []string
	for i, name := range linearSteps {
		if plan&(1<<i) != 0 {
			steps = append(steps, name)
		}
	}
	return steps
}

func fieldName(i int) string { return "f" + strconv.Itoa(i) }

// opKind names the operations on a task.
type opKind uint8

const (
	applyOp  opKind = iota // Tracker.Apply of changes
	readOp                 // Tracker.Get
	deleteOp               // Tracker.Delete
)

// linInput is an operation, as porcupine's input.
type linInput struct {
	task    int // the index of the task
	kind    opKind
	changes []linChange // applyOp
}

func (in linInput) String() string {
	switch in.kind {
	case readOp:
		return "get"
	case deleteOp:
		return "delete"
	}
	names := make([]string, len(in.changes))
	for i, c := range in.changes {
		names[i] = c.String()
	}
	return strings.Join(names, ", ")
}

// linOutput is how an operation ended, as porcupine's output.
type linOutput struct {
	outcome outcome
	read    modelTask // readOp: what it read
}

// linearModel is the model of the histories of TestLinearizable: each
// task apart, a sequential task as package tracker defines it.
var linearModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		var parts [][]porcupine.Operation // by task index
		for _, op := range history {
			task := op.Input.(linInput).task
			for len(parts) <= task {
				parts = append(parts, nil)
			}
			parts[task] = append(parts[task], op)
		}
		return slices.DeleteFunc(parts, func(ops []porcupine.Operation) bool { return len(ops) == 0 })
	},
	Init: func() any { return modelTask{} },
	Step: func(state, input, output any) (bool, any) {
		return modelStepOp(state.(modelTask), input.(linInput), output.(linOutput))
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		if in.kind == readOp {
			return "get -> " + out.read.String()
		}
		return in.String() + " -> " + out.outcome.String()
	},
	DescribeState: func(state any) string { return state.(modelTask).String() },
	DescribeOperationMetadata: func(info any) string {
		if info == nil {
			return ""
		}
		return fmt.Sprint(info)
	},
}

// modelStepOp reports whether operation in can end with out when the task
// is m, and returns the task after it. An operation whose outcome is
// unknown can end either way; porcupine places it after every other
// operation when it had no effect (its return time is the end of time).
func modelStepOp(m modelTask, in linInput, out linOutput) (bool, modelTask) {
	switch in.kind {
	case readOp:
		return out.read == m, m
	case deleteOp:
		return true, modelTask{}
	}
	next, o := m.apply(in.changes)
	return out.outcome == outUnknown || out.outcome == o, next
}

// apply returns m with changes applied in one write, or m as it was and
// the outcome of the first change refused.
func (m modelTask) apply(changes []linChange) (modelTask, outcome) {
	next := m
	for _, c := range changes {
		var o outcome
		if next, o = next.applyOne(c); o != outOK {
			return m, o
		}
	}
	next.version++
	return next, outOK
}

// applyOne returns m with c applied, or the outcome of its refusal.
func (m modelTask) applyOne(c linChange) (modelTask, outcome) {
	switch c.kind {
	case createChange:
		return m.create(c.plan)
	case retryChange:
		return m.retry()
	}
	switch {
	case m.status == "":
		return m, outNotFound
	case m.status.Terminal():
		return m, outTerminal
	}
	switch c.kind {
	case progressChange:
		m.start()
		m.progress = c.value
	case resultChange:
		m.result[c.field] = c.value
	case succeedChange:
		if m.status != store.StatusRunning {
			return m, outInvalid
		}
		m.end(store.StatusSuccess)
	case failChange:
		m.end(store.StatusFailed)
	case cancelChange:
		m.end(store.StatusCanceled)
	default:
		return m.applyStep(c)
	}
	return m, outOK
}

// create applies tracker.Create.
func (m modelTask) create(plan uint8) (modelTask, outcome) {
	if m.status != "" {
		return m, outExists
	}
	next := modelTask{status: store.StatusPending, attempt: 1}
	for i, name := range planned(plan) {
		next.steps[i] = modelStep{name: name, status: store.StepPending}
	}
	return next, outOK
}

// retry applies tracker.Retry (the operations keep no lease: no task is
// abandoned).
func (m modelTask) retry() (modelTask, outcome) {
	switch {
	case m.status == "":
		return m, outNotFound
	case !m.status.Terminal():
		return m, outInvalid
	}
	next := modelTask{status: store.StatusPending, attempt: m.attempt + 1, version: m.version}
	for i, s := range m.steps {
		if s.name != "" {
			next.steps[i] = modelStep{name: s.name, status: store.StepPending}
		}
	}
	return next, outOK
}

// applyStep applies a step change to m, a task that has not ended.
func (m modelTask) applyStep(c linChange) (modelTask, outcome) {
	s := m.step(linearSteps[c.step])
	if s.status.Terminal() {
		return m, outTerminal
	}
	switch c.kind {
	case startStepChange:
		if s.status == store.StepRunning {
			return m, outInvalid
		}
		s.status, s.attempt = store.StepRunning, 1
		m.start()
	case retryStepChange:
		if s.status != store.StepRunning {
			return m, outInvalid
		}
		s.attempt++
	case succeedStepChange:
		s.status = store.StepSuccess
		m.start()
	case failStepChange:
		s.status = store.StepFailed
	case skipStepChange:
		s.status = store.StepSkipped
	}
	return m, outOK
}

// step returns the step named name, added as pending if m has none by
// that name. m has room for every name of linearSteps.
func (m *modelTask) step(name string) *modelStep {
	i := 0
	for i < len(m.steps)-1 && m.steps[i].name != name && m.steps[i].name != "" {
		i++
	}
	if m.steps[i].name == "" {
		m.steps[i] = modelStep{name: name, status: store.StepPending}
	}
	return &m.steps[i]
}

// start marks a pending task running.
func (m *modelTask) start() {
	if m.status == store.StatusPending {
		m.status = store.StatusRunning
	}
}

// end ends m with status, and its open steps with it.
func (m *modelTask) end(status store.Status) {
	m.status = status
	for i, s := range m.steps {
		switch {
		case s.name == "" || s.status.Terminal():
		case s.status == store.StepPending:
			m.steps[i].status = store.StepSkipped
		case status == store.StatusSuccess:
			m.steps[i].status = store.StepSuccess
		default:
			m.steps[i].status = store.StepFailed
		}
	}
}

func (m modelTask) String() string {
	if m.status == "" {
		return "none"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "v%d %s #%d", m.version, m.status, m.attempt)
	for _, s := range m.steps {
		if s.name != "" {
			fmt.Fprintf(&b, " %s:%s#%d", s.name, s.status, s.attempt)
		}
	}
	for i, v := range m.result {
		if v != 0 {
			fmt.Fprintf(&b, " %s=%d", fieldName(i), v)
		}
	}
	if m.progress != 0 {
		fmt.Fprintf(&b, " done=%d", m.progress)
	}
	return b.String()
}

// TestLinearModel checks that the model tells linearizable histories of
// one task from others, so that TestLinearizable can fail: a change
// applied twice, a read of a state already overwritten, a refusal that no
// state explains.
func TestLinearModel(t *testing.T) {
	apply := func(kind changeKind) linInput {
		return linInput{kind: applyOp, changes: []linChange{{kind: kind}}} // on step "parse"
	}
	created := modelTask{status: store.StatusPending, attempt: 1, version: 1}
	started := created
	started.status, started.version = store.StatusRunning, 2
	started.steps[0] = modelStep{name: "parse", status: store.StepRunning, attempt: 1}
	retried := started
	retried.version, retried.steps[0].attempt = 3, 2
	twice := retried // a step retried once, its retry applied twice
	twice.version, twice.steps[0].attempt = 4, 3
	canceled := created
	canceled.status, canceled.version = store.StatusCanceled, 2
	create := apply(createChange)

	for _, tc := range []struct {
		name    string
		ok      bool
		history []porcupine.Operation
	}{
		{"writes read once", true, []porcupine.Operation{
			linearOp(create, 0, 10, outOK), linearOp(apply(startStepChange), 20, 30, outOK),
			linearRead(started, 40, 50),
		}},
		{"a read of an overwritten state", false, []porcupine.Operation{
			linearOp(create, 0, 10, outOK), linearOp(apply(startStepChange), 20, 30, outOK),
			linearRead(created, 40, 50),
		}},
		{"a refusal before a concurrent create", true, []porcupine.Operation{
			linearOp(create, 0, 30, outOK), linearOp(apply(startStepChange), 10, 20, outNotFound),
		}},
		{"a refusal no state explains", false, []porcupine.Operation{
			linearOp(create, 0, 10, outOK), linearOp(apply(startStepChange), 20, 30, outNotFound),
		}},
		{"an unknown outcome not applied", true, []porcupine.Operation{
			linearOp(create, 0, 10, outOK), linearOp(apply(cancelChange), 20, math.MaxInt64, outUnknown),
			linearRead(created, 30, 40),
		}},
		{"an unknown outcome applied", true, []porcupine.Operation{
			linearOp(create, 0, 10, outOK), linearOp(apply(cancelChange), 20, math.MaxInt64, outUnknown),
			linearRead(canceled, 30, 40),
		}},
		{"a success applied twice", false, []porcupine.Operation{
			linearOp(create, 0, 10, outOK), linearOp(apply(startStepChange), 20, 30, outOK),
			linearOp(apply(retryStepChange), 40, 50, outOK), linearRead(twice, 60, 70),
		}},
		{"an unknown outcome applied once", true, []porcupine.Operation{
			linearOp(create, 0, 10, outOK), linearOp(apply(startStepChange), 20, 30, outOK),
			linearOp(apply(retryStepChange), 40, math.MaxInt64, outUnknown), linearRead(retried, 50, 60),
		}},
		{"an unknown outcome applied twice", false, []porcupine.Operation{
			linearOp(create, 0, 10, outOK), linearOp(apply(startStepChange), 20, 30, outOK),
			linearOp(apply(retryStepChange), 40, math.MaxInt64, outUnknown), linearRead(twice, 50, 60),
		}},
	} {
		res, _ := porcupine.CheckOperationsVerbose(linearModel, tc.history, 0)
		assert.Equal(t, tc.ok, res == porcupine.Ok, "%s: %s", tc.name, res)
	}
}

// linearOp returns an operation that made in from call to ret and ended
// with o.
func linearOp(in linInput, call, ret int64, o outcome) porcupine.Operation {
	return porcupine.Operation{Input: in, Call: call, Output: linOutput{outcome: o}, Return: ret}
}

// linearRead returns a read from call to ret that read m.
func linearRead(m modelTask, call, ret int64) porcupine.Operation {
	return porcupine.Operation{Input: linInput{kind: readOp}, Call: call, Output: linOutput{read: m}, Return: ret}
}
