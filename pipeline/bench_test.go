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

// BenchmarkPipelineOverheadPerStep runs a 5-step pipeline of no-op steps
// for a new task per iteration, on memstore with the tracker's defaults.
// It reports, per step:
//
//   - ns/step: what the pipeline adds, recording included, over calling
//     the same functions directly in the same loop;
//   - by-hand-ns/step: what recording the same outcomes by hand adds
//     (create, start, start and succeed each step, succeed), so that
//     ns/step minus by-hand-ns/step is the pipeline's own share.
func BenchmarkPipelineOverheadPerStep(b *testing.B) {
	mem, err := memstore.New()
	require.NoError(b, err)
	b.Cleanup(func() { mem.Close() })
	tr, err := tracker.New(mem)
	require.NoError(b, err)

	names := []string{"file_node_creation", "memgraph_storage", "embedding_generation", "qdrant_indexing", "freshness_analysis"}
	noop := func(context.Context, *pipeline.Task) error { return nil }
	stages := make([]pipeline.Option, len(names))
	for i, name := range names {
		stages[i] = pipeline.Step(name, noop)
	}
	p, err := pipeline.New(stages...)
	require.NoError(b, err)
	// A request's correlation id, as a service with CorrelationHandler has.
	ctx := tracker.ContextWithCorrelationID(context.Background(), "c9a7f417-c2d2-48a3-802b-fa00e20dd207")

	direct := func() error {
		for range names {
			if err := noop(ctx, nil); err != nil {
				return err
			}
		}
		return nil
	}
	byHand := func(id string) error {
		if err := tr.Create(ctx, id, names...); err != nil {
			return err
		}
		if err := tr.Start(ctx, id); err != nil {
			return err
		}
		for _, name := range names {
			if err := tr.StartStep(ctx, id, name); err != nil {
				return err
			}
			if err := noop(ctx, nil); err != nil {
				return err
			}
			if err := tr.SucceedStep(ctx, id, name); err != nil {
				return err
			}
		}
		return tr.Succeed(ctx, id)
	}

	var directTime, byHandTime, pipelineTime time.Duration
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n++
		id := strconv.Itoa(n)
		t0 := time.Now()
		if err := direct(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := byHand("h" + id); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := p.Run(ctx, tr, "p"+id); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		directTime += t1.Sub(t0)
		byHandTime += t2.Sub(t1)
		pipelineTime += t3.Sub(t2)
	}
	steps := float64(b.N * len(names))
	b.ReportMetric(float64((pipelineTime-directTime).Nanoseconds())/steps, "ns/step")
	b.ReportMetric(float64((byHandTime-directTime).Nanoseconds())/steps, "by-hand-ns/step")
}
