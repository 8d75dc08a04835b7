package otelstatus

import (
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// maxCachedSets bounds each cache of attribute sets. The sets are bounded
// by the service's code (see the package doc); past this many, a service
// that uses ids as kinds or step names gets its sets made each time
// rather than a cache that grows without end.
const maxCachedSets = 1000

// setKey is the key of an attribute set in a setCache: the values of its
// attributes, which it makes the set of.
type setKey interface {
	comparable
	set() attribute.Set
}

// setCache holds the attribute sets that the metrics are recorded with,
// each made once: making a set for each record took 70% of the time of
// the observer's records, and the observer 8% of the process's CPU, in
// the CPU profile of BenchmarkRedisTransition with 32 tasks; a store
// call's set, 8% of the CPU profile of lifecycles on memstore.
type setCache[K setKey] struct {
	mu   sync.RWMutex
	sets map[K]metric.MeasurementOption
}

// get returns the measurement option of k's attribute set.
func (c *setCache[K]) get(k K) metric.MeasurementOption {
	c.mu.RLock()
	o, ok := c.sets[k]
	c.mu.RUnlock()
	if ok {
		return o
	}
	o = metric.WithAttributeSet(k.set())
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sets == nil {
		c.sets = make(map[K]metric.MeasurementOption)
	}
	if len(c.sets) < maxCachedSets {
		c.sets[k] = o
	}
	return o
}

// kindSet is the attribute set {kind}.
type kindSet struct{ kind string }

func (k kindSet) set() attribute.Set { return attribute.NewSet(KindKey.String(k.kind)) }

// endSet is the attribute set {kind, status} of a task that ended.
type endSet struct{ kind, status string }

func (k endSet) set() attribute.Set {
	return attribute.NewSet(KindKey.String(k.kind), StatusKey.String(k.status))
}

// stepSet is the attribute set {kind, step, outcome} of a step that ended.
type stepSet struct{ kind, step, outcome string }

func (k stepSet) set() attribute.Set {
	return attribute.NewSet(KindKey.String(k.kind), StepKey.String(k.step), OutcomeKey.String(k.outcome))
}

// storeSet is the attribute set {operation, outcome} of a store call.
type storeSet struct{ operation, outcome string }

func (k storeSet) set() attribute.Set {
	return attribute.NewSet(OperationKey.String(k.operation), OutcomeKey.String(k.outcome))
}
