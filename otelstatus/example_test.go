package otelstatus_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/otelstatus"
	"github.com/taskstatus/taskstatus/tracker"
)

// Example attaches the adapter to a Tracker and its store, records a task
// that fails, and reads the failures counted, as a Prometheus exporter or
// an OTLP reader would.
func Example() {
	reader := sdkmetric.NewManualReader()
	tel, err := otelstatus.New(otelstatus.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	if err != nil {
		log.Fatal(err)
	}
	mem, err := memstore.New()
	if err != nil {
		log.Fatal(err)
	}
	tr, err := tracker.New(tel.Store(mem), tracker.WithObserver(tel.Observe),
		tracker.WithErrorHandler(func(context.Context, error) {}))
	if err != nil {
		log.Fatal(err)
	}
	defer mem.Close()
	defer tr.Close(context.Background())

	ctx := context.Background()
	_ = tr.Apply(ctx, "doc-1", tracker.Create("embed", "index"), tracker.Kind("document"))
	run, _ := tr.Start(ctx, "doc-1", tracker.StartStep("embed"))
	cause := errors.New("connection refused")
	_ = run.Apply(ctx, tracker.FailStep("embed", cause), tracker.Fail(cause, map[string]any{"failed_step": "embed"}))

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name != "taskstatus.tasks.failures" {
			continue
		}
		for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
			fmt.Println(m.Name, dp.Value, dp.Attributes.Encoded(attribute.DefaultEncoder()))
		}
	}
	// Output:
	// taskstatus.tasks.failures 1 exception_type=error,kind=document,step=embed
}
