package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/taskstatus/taskstatus/tracker"
)

// Func is the work of one step. It honors ctx: when ctx is done it returns
// soon, with ctx's error or its own. task reports progress and result
// fields and attaches failure details; it is valid while the run lasts.
// A nil error means the step succeeded.
type Func func(ctx context.Context, task *Task) error

// Pipeline is an ordered list of named steps, run for one task at a time by
// [Pipeline.Run]. It does not change once made, and may be run for many
// tasks at once. Create one with [New].
type Pipeline struct {
	steps  []step   // every step, in order
	stages [][]step // the stages, each a part of steps; several steps make a group
	names  []string // the names of the steps, in order
}

// step is a declared step and, once in a pipeline, its place there.
type step struct {
	name     string
	fn       Func
	optional bool
	after    []string      // names of the steps it depends on
	deps     []int         // their indexes, resolved by New
	index    int           // its index in Pipeline.steps
	timeout  time.Duration // per attempt; 0 means none
	attempts int           // at least 1
	initial  time.Duration // the first wait before a retry
	maxWait  time.Duration // the longest wait before a retry
}

// Stage is one entry of a pipeline: a step made by [Step], or steps run
// concurrently made by [Group]. The zero Stage is invalid.
type Stage struct {
	steps []step
	err   error // an invalid StepOption, reported by New
}

// StepOption configures one step: see [Optional], [DependsOn], [Timeout]
// and [Retry]. It returns an error if its arguments are invalid, which
// [New] reports.
type StepOption func(*step) error

// Step declares a step named name that runs fn. Names are unique within a
// pipeline and are the names recorded for the task's steps.
func Step(name string, fn Func, opts ...StepOption) Stage {
	s := step{name: name, fn: fn, attempts: 1}
	for _, opt := range opts {
		if opt == nil {
			return Stage{err: fmt.Errorf("pipeline: step %q: nil option", name)}
		}
		if err := opt(&s); err != nil {
			return Stage{err: fmt.Errorf("pipeline: step %q: %w", name, err)}
		}
	}
	return Stage{steps: []step{s}}
}

// Group declares steps that run concurrently, each in its own goroutine;
// the next stage starts when all of them have ended. A group within a group
// adds its steps to the outer one. A step of a group may depend only on
// steps of earlier stages.
func Group(stages ...Stage) Stage {
	var g Stage
	for _, s := range stages {
		if s.err != nil {
			return Stage{err: s.err}
		}
		g.steps = append(g.steps, s.steps...)
	}
	return g
}

// Optional lets the pipeline go on when the step fails. Its failure is
// recorded as the step's, but does not fail the task.
func Optional() StepOption {
	return func(s *step) error {
		s.optional = true
		return nil
	}
}

// DependsOn declares that the step needs the named steps, which must come
// in earlier stages, to have succeeded. If one of them failed, the step is
// not run and is recorded as failed with a [*DependencyError].
func DependsOn(names ...string) StepOption {
	return func(s *step) error {
		s.after = append(s.after, names...)
		return nil
	}
}

// Timeout bounds each attempt of the step: its ctx ends d after the attempt
// starts, and an error it returns because of that says so. d must be
// positive. By default an attempt is bounded only by the run's context.
func Timeout(d time.Duration) StepOption {
	return func(s *step) error {
		if d <= 0 {
			return fmt.Errorf("Timeout(%v): not positive", d)
		}
		s.timeout = d
		return nil
	}
}

// Retry lets the step make up to attempts attempts in all, with exponential
// backoff and jitter between them: before retry n (from 1) it waits a
// random duration between d/2 and d, where d is initial doubled n-1 times,
// and at most maxWait. attempts must be at least 1, and
// 0 <= initial <= maxWait; Retry(n, 0, 0) retries at once. By default a
// step makes one attempt.
func Retry(attempts int, initial, maxWait time.Duration) StepOption {
	return func(s *step) error {
		switch {
		case attempts < 1:
			return fmt.Errorf("Retry(%d, %v, %v): fewer than 1 attempt", attempts, initial, maxWait)
		case initial < 0 || maxWait < initial:
			return fmt.Errorf("Retry(%d, %v, %v): want 0 <= initial <= maxWait", attempts, initial, maxWait)
		}
		s.attempts, s.initial, s.maxWait = attempts, initial, maxWait
		return nil
	}
}

// New returns a pipeline of stages, run in order. It reports an invalid
// declaration: no stages, an empty stage, a step without a name or
// function, a name used twice or longer than [tracker.MaxStepNameLen],
// more than [tracker.MaxSteps] steps, a dependency that is not an earlier
// stage's step, or an invalid option.
func New(stages ...Stage) (*Pipeline, error) {
	if len(stages) == 0 {
		return nil, errors.New("pipeline: no steps")
	}
	p := &Pipeline{}
	ends := make([]int, 0, len(stages)) // the index in p.steps after each stage's last step
	for _, s := range stages {
		if err := p.add(s); err != nil {
			return nil, err
		}
		ends = append(ends, len(p.steps))
	}
	// Cut the stages only now that appending no longer moves the steps.
	start := 0
	for _, end := range ends {
		p.stages = append(p.stages, p.steps[start:end])
		start = end
	}
	return p, nil
}

// add appends the steps of stage s, checking them.
func (p *Pipeline) add(s Stage) error {
	switch {
	case s.err != nil:
		return s.err
	case len(s.steps) == 0:
		return errors.New("pipeline: empty stage")
	case len(p.steps)+len(s.steps) > tracker.MaxSteps:
		return fmt.Errorf("pipeline: more than %d steps", tracker.MaxSteps)
	}
	first := len(p.steps) // steps from here on are this stage's
	for _, st := range s.steps {
		if err := p.check(st); err != nil {
			return err
		}
		st.index = len(p.steps)
		st.deps = make([]int, 0, len(st.after))
		for _, name := range st.after {
			i := p.find(name)
			if i < 0 || i >= first {
				return fmt.Errorf("pipeline: step %q depends on %q, which is not a step of an earlier stage", st.name, name)
			}
			st.deps = append(st.deps, i)
		}
		p.steps = append(p.steps, st)
		p.names = append(p.names, st.name)
	}
	return nil
}

// check reports whether st may be added to the pipeline, dependencies
// aside.
func (p *Pipeline) check(st step) error {
	switch {
	case st.name == "":
		return errors.New("pipeline: step without a name")
	case len(st.name) > tracker.MaxStepNameLen:
		return fmt.Errorf("pipeline: step name of %d bytes (%d allowed)", len(st.name), tracker.MaxStepNameLen)
	case st.fn == nil:
		return fmt.Errorf("pipeline: step %q: nil function", st.name)
	case p.find(st.name) >= 0:
		return fmt.Errorf("pipeline: step %q declared twice", st.name)
	}
	return nil
}

// find returns the index of the step named name, or -1.
func (p *Pipeline) find(name string) int {
	return slices.Index(p.names, name)
}

// Steps returns the names of the pipeline's steps in order: the plan to
// record when the task is created, before it is run:
//
//	err := tr.Apply(ctx, id, tracker.Create(p.Steps()...))
func (p *Pipeline) Steps() []string {
	return slices.Clone(p.names)
}
