package pipeline

import (
	"context"
	"errors"
	"sync"

	"github.com/taskstatus/taskstatus/tracker"
)

// Runner runs pipelines in the background, beyond the requests that start
// them, and stops them gracefully when the service shuts down. Create one
// with [NewRunner]. Its methods are safe for concurrent use.
type Runner struct {
	ctx    context.Context // ended by a forced shutdown; every run follows it
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	shutdown bool
	running  int
	idle     chan struct{} // closed while running is 0
}

// NewRunner returns a Runner ready to start runs.
func NewRunner() *Runner {
	ctx, cancel := context.WithCancelCause(context.Background())
	idle := make(chan struct{})
	close(idle)
	return &Runner{ctx: ctx, cancel: cancel, idle: idle}
}

// Go starts p.Run for task id through tr in a new goroutine and returns at
// once. The run's context is ctx without its cancellation
// ([context.WithoutCancel]): the run outlives the request that started it
// and keeps its values, such as the correlation id. Only [Runner.Shutdown]
// cancels it.
//
// Go starts nothing and returns an error if p or tr is nil, or once
// Shutdown has been called ([ErrShuttingDown]). What the run does is
// recorded by tr; a run whose start tr refuses (the task is not pending,
// or id is invalid) is reported to tr's error handler, and a run stopped
// because the task is no longer its to record is logged by [Pipeline.Run].
func (r *Runner) Go(ctx context.Context, p *Pipeline, tr *tracker.Tracker, id string) error {
	switch {
	case p == nil:
		return errors.New("pipeline: Runner.Go: nil pipeline")
	case tr == nil:
		return errors.New("pipeline: Runner.Go: nil tracker")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shutdown {
		return ErrShuttingDown
	}
	if r.running == 0 {
		r.idle = make(chan struct{})
	}
	r.running++

	ctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(r.ctx, func() { cancel(context.Cause(r.ctx)) })
	go func() {
		defer r.done()
		defer cancel(nil)
		defer stop()
		_ = p.Run(ctx, tr, id) // its outcome is the task's, recorded
	}()
	return nil
}

// done notes the end of a run.
func (r *Runner) done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running--
	if r.running == 0 {
		close(r.idle)
	}
}

// Wait waits until no run is in flight. Runs started while it waits are
// waited for too.
func (r *Runner) Wait() {
	for {
		r.mu.Lock()
		idle, running := r.idle, r.running
		r.mu.Unlock()
		if running == 0 {
			return
		}
		<-idle
	}
}

// Shutdown stops the Runner: [Runner.Go] refuses new runs from then on,
// and Shutdown waits for the runs in flight to end. If ctx ends first, it
// cancels them with the cause [ErrShuttingDown], so that each is recorded
// as canceled (its running step sees its context done, the steps not run
// are skipped), waits until they have returned, and returns ctx's error.
// So when Shutdown returns, no run it started is still running. A step
// that does not return when its context is done delays Shutdown as long.
func (r *Runner) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.shutdown = true
	idle := r.idle
	r.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
	}
	r.cancel(ErrShuttingDown)
	<-idle
	return ctx.Err()
}
