package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// scrape returns the metric families the service serves at /metrics.
func scrape(t *testing.T, baseURL string) map[string]*dto.MetricFamily {
	t.Helper()
	resp := do(t, http.MethodGet, baseURL+"/metrics", nil)
	require.Equal(t, http.StatusOK, resp.code)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(resp.body))
	require.NoError(t, err, "%s", resp.body)
	return families
}

// series returns the series of family name whose labels include want.
func series(families map[string]*dto.MetricFamily, name string, want map[string]string) []*dto.Metric {
	var found []*dto.Metric
	for _, m := range families[name].GetMetric() {
		labels := make(map[string]string)
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		matches := true
		for k, v := range want {
			matches = matches && labels[k] == v
		}
		if matches {
			found = append(found, m)
		}
	}
	return found
}

// counter returns the sum of the counters or gauges of family name whose
// labels include want.
func counter(families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var n float64
	for _, m := range series(families, name, want) {
		n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return n
}

// stepRun is a step that ran, as a histogram counts it.
type stepRun struct{ step, outcome string }

// TestMetricsEndToEnd runs the service, processes documents that succeed
// and documents that fail, scrapes /metrics and checks that its counts
// and histograms are those of what ran, as the store recorded it.
func TestMetricsEndToEnd(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer func() { require.NoError(t, tp.Shutdown(t.Context())) }()
	svc := startTracedService(t, config{shutdownTimeout: time.Second, lease: 30 * time.Second}, nil, tp)

	ids := map[string]string{ // document id -> the step that fails, or ""
		"ok-1": "", "ok-2": "", "ok-3": "", "bad-1": stepEmbedding, "bad-2": stepEmbedding,
	}
	for id, failAt := range ids {
		var metadata map[string]any
		if failAt != "" {
			metadata = map[string]any{"simulate_failure": failAt}
		}
		resp := submit(t, svc.url, request(t, id, metadata), "")
		await(t, svc.url+resp["status_url"].(string), ended)
	}
	svc.runner.Wait() // the writes that ended the tasks have been observed

	// What ran, as recorded.
	ranSteps := make(map[stepRun]int)
	stepSeconds := make(map[stepRun]float64)
	statuses := make(map[string]int)
	for id := range ids {
		st := svc.get(t, id)
		statuses[string(st.Status)]++
		for _, s := range st.Steps {
			if s.StartedAt.IsZero() {
				continue
			}
			k := stepRun{s.Name, string(s.Status)}
			ranSteps[k]++
			stepSeconds[k] += s.CompletedAt.Sub(s.StartedAt).Seconds()
		}
	}
	require.Equal(t, map[string]int{"success": 3, "failed": 2}, statuses)

	families := scrape(t, svc.url)
	doc := map[string]string{"kind": taskKind}
	assert.InDelta(t, 5, counter(families, "taskstatus_tasks_created_total", doc), 0)
	assert.InDelta(t, 0, counter(families, "taskstatus_tasks_running", doc), 0, "none left running")
	for status, n := range statuses {
		assert.InDelta(t, n, counter(families, "taskstatus_tasks_ended_total", map[string]string{"kind": taskKind, "status": status}), 0, status)
	}
	assert.InDelta(t, 2, counter(families, "taskstatus_tasks_failures_total",
		map[string]string{"kind": taskKind, "step": stepEmbedding, "exception_type": "ConnectionError"}), 0)

	counted := 0
	for k, n := range ranSteps {
		got := series(families, "taskstatus_step_duration_seconds", map[string]string{"kind": taskKind, "step": k.step, "outcome": k.outcome})
		require.Len(t, got, 1, "%v", k)
		h := got[0].GetHistogram()
		assert.EqualValues(t, n, h.GetSampleCount(), "%v: count", k)
		// The store keeps times to the millisecond.
		assert.InDelta(t, stepSeconds[k], h.GetSampleSum(), 0.001*float64(n), "%v: sum", k)
		counted += n
	}
	assert.Len(t, series(families, "taskstatus_step_duration_seconds", doc), len(ranSteps), "no other step series")
	assert.Equal(t, 3*5+2*3, counted, "the steps of 3 successes, and of 2 failures at the third step, which skip the fourth")
	for status, n := range statuses {
		got := series(families, "taskstatus_task_duration_seconds", map[string]string{"kind": taskKind, "status": status})
		require.Len(t, got, 1, status)
		assert.EqualValues(t, n, got[0].GetHistogram().GetSampleCount(), status)
	}

	assert.InDelta(t, 5, counter(families, "taskstatus_http_requests_total", map[string]string{"route": "POST /process/document", "code": "200"}), 0)
	assert.GreaterOrEqual(t, counter(families, "taskstatus_http_requests_total", map[string]string{"route": statusPattern, "code": "200"}), 5.0)
	puts := series(families, "taskstatus_store_duration_seconds", map[string]string{"operation": "put", "outcome": "ok"})
	require.Len(t, puts, 1)
	assert.GreaterOrEqual(t, puts[0].GetHistogram().GetSampleCount(), uint64(5*3), "a create, a start and an end per task at least")
	assert.Empty(t, series(families, "taskstatus_store_duration_seconds", map[string]string{"outcome": "unavailable"}))

	// The spans of each task are in the trace of the request that
	// submitted it.
	requests := make(map[string]bool) // span ids of the submissions
	for _, s := range spans.GetSpans() {
		if s.Name == "POST /process/document" {
			requests[s.SpanContext.SpanID().String()] = true
		}
	}
	tasks := 0
	for _, s := range spans.GetSpans() {
		if s.Name == "task "+taskKind {
			tasks++
			assert.True(t, requests[s.Parent.SpanID().String()], "a task's span is a child of a submission's")
		}
	}
	assert.Equal(t, 5, tasks)
}

// dashboardFile is the Grafana dashboard of the service.
const dashboardFile = "grafana-dashboard.json"

// metricName matches the names of the service's metrics in a query, and
// the labels it selects ({a="b"}) or aggregates by (by (a, b)).
var (
	metricName = regexp.MustCompile(`taskstatus_[a-z_]+`)
	byLabels   = regexp.MustCompile(`by \(([^)]*)\)`)
	selectors  = regexp.MustCompile(`(taskstatus_[a-z_]+)\{([^}]*)\}`)
	matcher    = regexp.MustCompile(`([a-z_]+)\s*(=~|!~|!=|=)`)
)

// TestDashboard: every query of every panel of the Grafana dashboard
// names metrics and labels that the service exports.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var dashboard struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Query string `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(b, &dashboard))
	require.NotEmpty(t, dashboard.Panels)

	// A service that has run a success and a failure exports every series.
	svc := startService(t, 0, time.Second)
	for id, metadata := range map[string]map[string]any{"ok": nil, "bad": {"simulate_failure": stepGraph}} {
		resp := submit(t, svc.url, request(t, id, metadata), "")
		await(t, svc.url+resp["status_url"].(string), ended)
	}
	svc.runner.Wait()
	labels := exported(scrape(t, svc.url))

	for _, v := range dashboard.Templating.List {
		for _, name := range metricName.FindAllString(v.Query, -1) {
			_, ok := labels[name]
			assert.True(t, ok, "variable query %s: %s is not exported", v.Query, name)
		}
	}
	for _, p := range dashboard.Panels {
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, target := range p.Targets {
			names := metricName.FindAllString(target.Expr, -1)
			require.NotEmpty(t, names, "panel %q: %s names no metric", p.Title, target.Expr)
			for _, name := range names {
				_, ok := labels[name]
				require.True(t, ok, "panel %q: %s is not exported", p.Title, name)
			}
			for _, m := range selectors.FindAllStringSubmatch(target.Expr, -1) {
				for _, l := range matcher.FindAllStringSubmatch(m[2], -1) {
					assert.True(t, labels[m[1]][l[1]], "panel %q: %s has no label %s", p.Title, m[1], l[1])
				}
			}
			for _, by := range byLabels.FindAllStringSubmatch(target.Expr, -1) {
				for l := range strings.SplitSeq(by[1], ",") {
					l = strings.TrimSpace(l)
					for _, name := range names {
						assert.True(t, labels[name][l], "panel %q: %s has no label %s to aggregate by", p.Title, name, l)
					}
				}
			}
		}
	}
}

// exported returns the labels of each series name that families hold: a
// histogram's _bucket (with le), _count and _sum too.
func exported(families map[string]*dto.MetricFamily) map[string]map[string]bool {
	labels := make(map[string]map[string]bool)
	add := func(name string, m *dto.Metric, extra ...string) {
		if labels[name] == nil {
			labels[name] = make(map[string]bool)
		}
		for _, l := range m.GetLabel() {
			labels[name][l.GetName()] = true
		}
		for _, l := range extra {
			labels[name][l] = true
		}
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			if f.GetType() != dto.MetricType_HISTOGRAM {
				add(name, m)
				continue
			}
			add(name+"_bucket", m, "le")
			add(name+"_count", m)
			add(name+"_sum", m)
		}
	}
	return labels
}

func TestOTLPAsked(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, ""},
		{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{[]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://127.0.0.1:4318"}, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"},
		{[]string{"OTEL_TRACES_EXPORTER=otlp"}, "OTEL_TRACES_EXPORTER"},
		{[]string{"OTEL_TRACES_EXPORTER=none", "OTEL_SERVICE_NAME=docs"}, ""},
	} {
		assert.Equal(t, tc.want, otlpAsked(getenv(tc.env...)), "%v", tc.env)
	}
}
