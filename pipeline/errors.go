package pipeline

import (
	"errors"
	"fmt"
	"strconv"
)

// FailedStepKey is the error detail that names the step whose failure
// failed the task.
const FailedStepKey = "failed_step"

// ErrShuttingDown is the error of [Runner.Go] once [Runner.Shutdown] has
// been called, and the recorded cause of runs that Shutdown cancels.
var ErrShuttingDown = errors.New("pipeline: runner is shutting down")

// StepError is the error [Pipeline.Run] returns when a required step
// fails: the step and its error, which errors.Is and errors.As see
// through.
type StepError struct {
	Step string // the step's name
	Err  error  // the step's error
}

// Error returns the step's name and its error's message.
func (e *StepError) Error() string {
	return "pipeline: step " + strconv.Quote(e.Step) + ": " + e.Err.Error()
}

// Unwrap returns the step's error.
func (e *StepError) Unwrap() error { return e.Err }

// PanicError is the error of a step that panicked: the value it panicked
// with and the stack of its goroutine at that moment.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the stack trace, as runtime/debug.Stack formats it
}

// Error returns "panic: " and the panic value.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap returns the panic value if it is an error, or nil.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// DependencyError is the error of a step that was not run because a step
// it depends on (see [DependsOn]) failed.
type DependencyError struct {
	Dependency string // the name of the step that failed
}

// Error returns "dependency X failed", X being the dependency's name.
func (e *DependencyError) Error() string {
	return "dependency " + e.Dependency + " failed"
}
