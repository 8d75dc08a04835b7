package pipeline_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/tracker"
)

// benchSteps are the steps of the origin service's pipeline.
var benchSteps = []string{"file_node_creation", "memgraph_storage", "embedding_generation", "qdrant_indexing", "freshness_analysis"}

func noop(context.Context, *pipeline.Task) error { return nil }

// BenchmarkPipelineOverheadPerStep runs a 5-step pipeline of no-op steps
// for a new task per iteration, on memstore with the tracker's defaults.
// It reports, per step:
//
//   - ns/step: what the pipeline adds, recording included, over calling
//     the same functions directly in the same loop;
//   - by-hand-ns/step: what recording the same outcomes by hand through a
//     tracker.Run adds, in as many writes (the start with the first
//     step's, each step's end with the next step's start, the last with
//     the task's end), so that ns/step minus by-hand-ns/step is the
//     pipeline's own share.
//
// Both create the task first, as a service does.
func BenchmarkPipelineOverheadPerStep(b *testing.B) {
	mem, err := memstore.New()
	require.NoError(b, err)
	b.Cleanup(func() { mem.Close() })
	tr, err := tracker.New(mem)
	require.NoError(b, err)
	stages := make([]pipeline.Stage, len(benchSteps))
	for i, name := range benchSteps {
		stages[i] = pipeline.Step(name, noop)
	}
	p, err := pipeline.New(stages...)
	require.NoError(b, err)
	// A request's correlation id, as a service with CorrelationHandler has.
	ctx := tracker.ContextWithCorrelationID(context.Background(), "c9a7f417-c2d2-48a3-802b-fa00e20dd207")

	direct := func(string) error {
		for range benchSteps {
			if err := noop(ctx, nil); err != nil {
				return err
			}
		}
		return nil
	}
	byHand := func(id string) error { return recordByHand(ctx, tr, id) }
	viaPipeline := func(id string) error {
		if err := tr.Apply(ctx, id, tracker.Create(p.Steps()...)); err != nil {
			return err
		}
		return p.Run(ctx, tr, id)
	}

	runs := []func(id string) error{direct, byHand, viaPipeline}
	var spent [3]time.Duration // by each of runs
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n++
		for i, run := range runs {
			start := time.Now()
			if err := run(strconv.Itoa(i) + "-" + strconv.Itoa(n)); err != nil {
				b.Fatal(err)
			}
			spent[i] += time.Since(start)
		}
	}
	steps := float64(b.N * len(benchSteps))
	b.ReportMetric(float64((spent[2]-spent[0]).Nanoseconds())/steps, "ns/step")
	b.ReportMetric(float64((spent[1]-spent[0]).Nanoseconds())/steps, "by-hand-ns/step")
}

// recordByHand creates task id and runs the no-op steps of benchSteps,
// recording them through a tracker.Run in as many writes as the pipeline.
func recordByHand(ctx context.Context, tr *tracker.Tracker, id string) error {
	if err := tr.Apply(ctx, id, tracker.Create(benchSteps...)); err != nil {
		return err
	}
	run, err := tr.Start(ctx, id, tracker.StartStep(benchSteps[0]))
	if err != nil {
		return err
	}
	for i, name := range benchSteps {
		if err := noop(ctx, nil); err != nil {
			return err
		}
		next := tracker.Succeed()
		if i+1 < len(benchSteps) {
			next = tracker.StartStep(benchSteps[i+1])
		}
		if err := run.Apply(ctx, tracker.SucceedStep(name), next); err != nil {
			return err
		}
	}
	return nil
}
