// Package pipeline runs the named steps of a background task and records
// each one through a [tracker.Run], so that what a client reads at the
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
// The service creates each task when it accepts the work, with the
// pipeline's steps as its plan, so that a client sees the task pending and
// its whole plan at once; then it runs the pipeline for it, in the calling
// goroutine with [Pipeline.Run] or in the background with a [Runner]:
//
//	err = tr.Apply(ctx, "doc-123", tracker.Create(p.Steps()...))
//	...
//	err = p.Run(ctx, tr, "doc-123")
//
// A step is a [Func]: it receives the run's context and a [*Task], through
// which it reports progress, sets result fields such as
// "entities_extracted", renews the task's lease and attaches details to
// its failure.
//
// # The start
//
// Run starts the task, which must be pending, with
// [tracker.Tracker.Start], and records everything after through the
// attempt's [tracker.Run]; the start of the task and of its first step
// are one write. Run does not create the task: a task that does not exist,
// is running or has ended is not run, and Run returns an error wrapping
// [store.ErrNotFound], [store.ErrInvalidTransition] or [store.ErrTerminal]
// (start a new attempt of an ended task with [tracker.Retry]). A step the
// task was created without is added when the run first records it, so a
// task created without the plan shows no step the run did not reach.
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
// the end of the task, in one atomic write. A 5-step run is 6 writes, not
// 12, and a client never reads a step failed while the task still runs,
// or a step ended with no step running between two steps. Steps of a group
// write their own start and end, as they happen.
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
// each records through the one [tracker.Run] of the task, which orders the
// writes so that none is lost. The group runs to its end: a failing member
// does not stop its siblings, whose outcomes are recorded as they are.
// The group fails if a required member failed; the first of them, in
// declaration order, fails the task.
//
// # Progress, results and heartbeats
//
// [Task.SetResult] is recorded at once, a write of the task, so a client
// sees it while the work goes on; result fields are merged, and kept
// whatever the outcome. [Task.Progress] reports the task's progress, shared
// by its steps (the members of a group too): the last report wins.
// [Task.StepProgress] reports the step's own, shown on the step. Progress
// is written at most once per [ProgressInterval] (a second) a task, and the
// last report of a step at the latest with the step's end, so that a step
// reporting in a tight loop neither floods the store nor wakes every
// watcher at each report. A step that can run longer than the tracker's
// lease (see [tracker.WithLease]) without recording anything calls
// [Task.Heartbeat], so that its task is not taken for abandoned.
//
// # Sub-steps
//
// [Task.SubStep] runs a part of a step as a sub-step, recorded on the step
// with its status, times and error (one level deep: a sub-step has none of
// its own, and a step at most [store.MaxSubSteps]). [Optional] and
// [DependsOn] apply as they do to steps: a required sub-step that fails
// makes SubStep return its error, which the step returns to fail; one
// whose dependency failed is recorded failed and not run. When the step
// ends, sub-steps still running end as it did; a retried step starts its
// new attempt without the sub-steps and progress of the failed one.
//
// # Retries and timeouts
//
// A step declared with [Retry] makes several attempts, waiting between them
// with exponential backoff and jitter; each retry is recorded with
// [tracker.RetryStep], so the step's Attempt counts the attempts and its
// Error holds the last attempt's error while it is retried. Retry(n, 0, 0)
// retries without waiting. A step with a [Timeout] gets a context that
// ends that long after each attempt begins; an attempt that fails because
// of it is retried like any other. An attempt is not retried when it
// panicked, or when the run's context is done.
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
// # Cancel requests
//
// The cancellation of a task can be asked for from any process, with
// [tracker.RequestCancel] (an HTTP handler or a dashboard does). The run
// follows its task through the store's watch ([tracker.Run.WatchCancel]):
// on a request it cancels the context of the steps under way, with a
// cause that wraps [tracker.ErrCancelRequested] and gives the reason, and
// goes on as for a canceled context: no further step runs, a step that
// stopped is recorded failed with the cause, one that finished its work
// anyway is recorded as it ended, and the task is recorded canceled. A
// task canceled before its run starts was never started: Run runs nothing
// and returns an error wrapping [store.ErrTerminal].
//
// # Runs that are no longer the task's
//
// A run records only its own attempt of the task. If the task is retried
// or created anew while the run goes on (the process was thought dead and
// its task retried: the run is a zombie), its writes are refused with
// [store.ErrStale]; if the task ends elsewhere (a rescuer fails it), with
// [store.ErrTerminal]. The run then records nothing more,
// cancels the context of the steps under way (its cause wraps the
// refusal), runs no further step, logs why once with [slog.Default], and
// Run returns an error wrapping the refusal.
//
// # Tracking never fails the work
//
// Other errors of the tracker, such as a store that is down, do not change
// what runs or what Run returns: the steps run and their outcomes decide
// the result. The tracker reports each of its errors to its error handler
// (see [tracker.WithErrorHandler]), and the pipeline reports nothing more.
// What the store did not take is kept by the [tracker.Run] and written
// when the store answers again; [tracker.Tracker.Close] writes what is
// still kept when the service stops.
//
// # Running in the background
//
// A [Runner] starts runs in their own goroutines with [Runner.Go], with
// the request's context stripped of its cancellation so the run outlives
// the request but keeps its values (the correlation id among them).
// [Runner.Shutdown] refuses new runs and waits for those in flight; if its
// context ends first it cancels them, and waits until each has recorded its
// end, so that no task is left running. Shut the Runner down before the
// tracker is closed.
package pipeline
