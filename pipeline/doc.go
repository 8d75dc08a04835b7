// Package pipeline runs the named steps of a background task and records
// each one through a [tracker.Tracker], so that what a client reads at the
// status endpoint follows from how the steps were declared.
//
// A pipeline is declared once, as an ordered list of stages, each a step or
// a group of steps run concurrently:
//
//	p, err := pipeline.New(
//		pipeline.Step("file_node_creation", createNode),
//		pipeline.Step("memgraph_storage", storeGraph),
//		pipeline.Step("embedding_generation", embed,
//			pipeline.Retry(3, 100*time.Millisecond, 2*time.Second),
//			pipeline.Timeout(10*time.Second)),
//		pipeline.Step("qdrant_indexing", index, pipeline.DependsOn("embedding_generation")),
//		pipeline.Step("freshness_analysis", analyse, pipeline.Optional()),
//	)
//
// and then run for a task, in the calling goroutine with [Pipeline.Run] or
// in the background with a [Runner]:
//
//	err = p.Run(ctx, tr, "doc-123")
//
// A step is a [Func]: it receives the run's context and a [*Task], through
// which it reports progress, sets result fields such as
// "entities_extracted", and attaches details to its failure.
//
// # The plan
//
// When a run starts, every step is recorded as pending, in order, and the
// task as running: a client sees the whole plan at once. Run creates the
// task if it does not exist and starts it if it is pending (a service may
// create it beforehand, with [Pipeline.Steps] as the plan, to answer its
// status before the run begins). A task that is running or has ended is
// not run again: Run returns an error wrapping [store.ErrInvalidTransition]
// or [store.ErrTerminal] (start a new attempt with [tracker.Tracker.Retry]).
//
// # Steps
//
// Stages run in order. Each step is marked running when it starts, then
// success or failed with its error's message; the tracker stamps the times.
// When every required step has succeeded the task succeeds.
//
// # Writes
//
// A run writes the task as few times as a client can tell apart: the end
// of a step is written together with the start of the next one, or with
// the end of the task, in one atomic write ([tracker.Tracker.Apply]). A
// 5-step run is 6 writes, not 12, and a client never reads a step failed
// while the task still runs, or a step ended with no step running between
// two steps. Steps of a group write their own start and end, as they
// happen.
//
// # Failure
//
// When a required step fails, the run stops: the steps left that depend on
// a failed step (see below) are marked failed, every other step left is
// marked skipped, and the task is marked failed with the step's error
// message. Its error details hold what the step attached with
// [Task.Detail], the failed step's name under [FailedStepKey], and the
// type of its error under [tracker.ExceptionTypeKey] (see
// [tracker.ErrorType]) unless the step attached one. Run returns a
// [*StepError].
//
// # Optional steps
//
// A step declared [Optional] may fail without failing the task: its
// failure is recorded as the step's and the run goes on. Its attached
// details are dropped.
//
// # Dependencies
//
// A step declared with [DependsOn] needs steps of earlier stages to have
// succeeded. If one of them failed, the step is not run and is marked
// failed with a [*DependencyError] ("dependency X failed"), which counts as
// the step's failure: a required step failed this way fails the task, like
// any other. Failure thus follows dependencies: in a run where
// embedding_generation fails, a qdrant_indexing that depends on it is
// failed and a freshness_analysis that does not is skipped, as the origin
// service reports.
//
// # Groups
//
// The steps of a [Group] run concurrently, each in its own goroutine, and
// each outcome is recorded (the tracker serializes the writes of one task,
// so none is lost). The group runs to its end: a failing member does not
// stop its siblings, whose outcomes are recorded as they are. The group
// fails if a required member failed; the first of them, in declaration
// order, fails the task.
//
// # Progress and results
//
// [Task.Progress] and [Task.SetResult] are recorded at once, each a write of
// the task, so a client sees them while the work goes on. Progress is the
// task's, shared by its steps (the members of a group too): the last report
// wins. Result fields are merged, and kept whatever the outcome.
//
// # Retries and timeouts
//
// A step declared with [Retry] makes several attempts, waiting between them
// with exponential backoff and jitter; each retry is recorded with
// [tracker.Tracker.RetryStep], so the step's Attempt counts the attempts and
// its Error holds the last attempt's error while it is retried. A step with
// a [Timeout] gets a context that ends that long after each attempt begins;
// an attempt that fails because of it is retried like any other. An attempt
// is not retried when it panicked, or when the run's context is done.
// [WithSleep] replaces the wait, for tests.
//
// # Panics
//
// A panic in a step is recovered and is the step's failure, with a
// [*PanicError] whose message holds the panic value ("panic: ..."), and
// whose exception type is recorded as "pipeline.PanicError". The stack is
// not recorded (it is no client's business) but is in the error Run
// returns. A step that starts goroutines must recover their panics itself.
//
// # Cancellation and deadlines
//
// The run's context reaches each step, which must return soon once it is
// done. The run checks the context before each stage: once it is done the
// run stops, the steps not run are skipped, and a step that failed while
// it was done is the context's failure, not its own. If the context was
// canceled, the task is marked canceled with the context's cause as its
// message. If its deadline passed, the task is marked failed with the
// cause ("context deadline exceeded" unless set with
// [context.WithDeadlineCause]): the work did not finish in the time it was
// given, which is a failure, whereas canceled means someone stopped it. Run
// returns an error wrapping ctx's error and its cause. Recording does not
// use the cancellation of the run's context, so the end of a canceled run
// is recorded too.
//
// # Tracking never fails the work
//
// The errors of the tracker, such as a store that is down, do not change
// what runs or what Run returns: the steps run and their outcomes decide
// the result. The tracker reports each of its errors to its error handler
// (see [tracker.WithErrorHandler]); the pipeline reports nothing more.
//
// # Running in the background
//
// A [Runner] starts runs in their own goroutines with [Runner.Go], with
// the request's context stripped of its cancellation so the run outlives
// the request but keeps its values (the correlation id among them).
// [Runner.Shutdown] refuses new runs and waits for those in flight; if its
// context ends first it cancels them, and waits until each has recorded its
// end, so that no task is left running.
package pipeline
