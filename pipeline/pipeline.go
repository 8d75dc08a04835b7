package pipeline

import (
	"context"
	"errors"
	"fmt"
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
	ends   []int    // the index in steps after each stage's last step
	stages [][]step // the stages, each a part of steps; several steps make a group
	names  []string // the names of the steps, in order
	sleep  func(ctx context.Context, d time.Duration) error
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

// Option configures a [Pipeline]: a [Stage] adds steps, in order; other
// options, such as [WithSleep], change a setting.
type Option interface {
	apply(p *Pipeline) error
}

type optionFunc func(p *Pipeline) error

func (f optionFunc) apply(p *Pipeline) error { return f(p) }

// Stage is one entry of a pipeline: a step made by [Step], or steps run
// concurrently made by [Group]. It is an [Option] of [New].
type Stage struct {
	steps []step
	err   error // an invalid StepOption, reported by New
}

// StepOption configures one step: see [Optional], [DependsOn], [Timeout]
// and [Retry].
type StepOption interface {
	applyStep(s *step) error
}

type stepOptionFunc func(s *step) error

func (f stepOptionFunc) applyStep(s *step) error { return f(s) }

// Step declares a step named name that runs fn. Names are unique within a
// pipeline and are the names recorded for the task's steps.
func Step(name string, fn Func, opts ...StepOption) Stage {
	s := step{name: name, fn: fn, attempts: 1}
	for _, opt := range opts {
		if opt == nil {
			return Stage{err: fmt.Errorf("pipeline: step %q: nil option", name)}
		}
		if err := opt.applyStep(&s); err != nil {
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
	return stepOptionFunc(func(s *step) error {
		s.optional = true
		return nil
	})
}

// DependsOn declares that the step needs the named steps, which must come
// in earlier stages, to have succeeded. If one of them failed, the step is
// not run and is recorded as failed with a [*DependencyError].
func DependsOn(names ...string) StepOption {
	return stepOptionFunc(func(s *step) error {
		s.after = append(s.after, names...)
		return nil
	})
}

// Timeout bounds each attempt of the step: its ctx ends d after the attempt
// starts, and an error it returns because of that says so. d must be
// positive. By default an attempt is bounded only by the run's context.
func Timeout(d time.Duration) StepOption {
	return stepOptionFunc(func(s *step) error {
		if d <= 0 {
			return fmt.Errorf("Timeout(%v): not positive", d)
		}
		s.timeout = d
		return nil
	})
}

// Retry lets the step make up to attempts attempts in all, with exponential
// backoff and jitter between them: before retry n (from 1) it waits a
// random duration between d/2 and d, where d is initial doubled n-1 times,
// and at most maxWait. attempts must be at least 1, and
// 0 <= initial <= maxWait. By default a step makes one attempt.
func Retry(attempts int, initial, maxWait time.Duration) StepOption {
	return stepOptionFunc(func(s *step) error {
		switch {
		case attempts < 1:
			return fmt.Errorf("Retry(%d, %v, %v): fewer than 1 attempt", attempts, initial, maxWait)
		case initial < 0 || maxWait < initial:
			return fmt.Errorf("Retry(%d, %v, %v): want 0 <= initial <= maxWait", attempts, initial, maxWait)
		}
		s.attempts, s.initial, s.maxWait = attempts, initial, maxWait
		return nil
	})
}

// WithSleep sets how the pipeline waits before retrying a step: sleep
// returns nil after d, or an error as soon as ctx is done. The default
// waits on a timer. Tests use it to retry without waiting.
func WithSleep(sleep func(ctx context.Context, d time.Duration) error) Option {
	return optionFunc(func(p *Pipeline) error {
		if sleep == nil {
			return errors.New("pipeline: WithSleep: nil function")
		}
		p.sleep = sleep
		return nil
	})
}

// New returns a pipeline of the stages given in opts, in order. It reports
// an invalid declaration: no steps, a step without a name or function, a
// name used twice or longer than [tracker.MaxStepNameLen], more than
// [tracker.MaxSteps] steps, a dependency that is not an earlier stage's
// step, or an invalid option.
func New(opts ...Option) (*Pipeline, error) {
	p := &Pipeline{sleep: sleep}
	for _, opt := range opts {
		if opt == nil {
			return nil, errors.New("pipeline: nil option")
		}
		if err := opt.apply(p); err != nil {
			return nil, err
		}
	}
	if len(p.steps) == 0 {
		return nil, errors.New("pipeline: no steps")
	}
	// Cut the stages only now that appending no longer moves the steps.
	start := 0
	for _, end := range p.ends {
		p.stages = append(p.stages, p.steps[start:end])
		start = end
	}
	return p, nil
}

func (s Stage) apply(p *Pipeline) error {
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
	p.ends = append(p.ends, len(p.steps))
	return nil
}

// find returns the index of the step named name, or -1.
func (p *Pipeline) find(name string) int {
	for i, s := range p.steps {
		if s.name == name {
			return i
		}
	}
	return -1
}

// Steps returns the names of the pipeline's steps in order: the plan that
// [Pipeline.Run] records. Pass them to [tracker.Tracker.Create] to record a
// task as pending with its plan before the run starts.
func (p *Pipeline) Steps() []string {
	return append([]string(nil), p.names...)
}
