package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/taskstatus/taskstatus/otelstatus"
)

// metricsPattern is the pattern of the endpoint that serves the metrics in
// the Prometheus text format.
const metricsPattern = "GET /metrics"

// telemetry is the service's metrics and traces: a meter provider read by
// a Prometheus registry of its own, and the tracer provider it is given.
type telemetry struct {
	*otelstatus.Telemetry
	meters  *sdkmetric.MeterProvider
	metrics http.Handler // serves the registry
}

// newTelemetry returns the service's telemetry, whose spans go to tp (none
// if tp is nil). The meter provider's resource takes OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES from the environment.
func newTelemetry(tp trace.TracerProvider) (*telemetry, error) {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	tel, err := otelstatus.New(otelstatus.WithMeterProvider(mp), otelstatus.WithTracerProvider(tp))
	if err != nil {
		return nil, err
	}
	return &telemetry{Telemetry: tel, meters: mp, metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}, nil
}

// shutdown stops the meter provider.
func (t *telemetry) shutdown(ctx context.Context) error {
	return t.meters.Shutdown(ctx)
}

// otlpAsked returns the standard variable of the environment, read
// through getenv, that asks for OTLP export, or "" if none does.
func otlpAsked(getenv func(string) string) string {
	for _, v := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"} {
		if getenv(v) != "" {
			return v
		}
	}
	for _, v := range []string{"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"} {
		if getenv(v) == "otlp" {
			return v
		}
	}
	return ""
}

// warnOTLP logs that the environment, read through getenv, asks for OTLP
// export, which this program does not build in (see the README).
func warnOTLP(logger *slog.Logger, getenv func(string) string) {
	if v := otlpAsked(getenv); v != "" {
		logger.Warn("OTLP export is not built in: metrics are served at /metrics only, and spans are not exported", "variable", v)
	}
}
