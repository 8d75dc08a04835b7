package pipeline

import (
	"sync"
	"time"

	"github.com/taskstatus/taskstatus/tracker"
)

// ProgressInterval is how often, at most, the progress a task's steps
// report ([Task.Progress], [Task.StepProgress]) is written, by the
// tracker's clock: a report within ProgressInterval of the last one
// written is held, and written with the next one after the interval, or
// with the end of its step, so that the last value is always recorded. A
// step that reports progress in a tight loop thus makes one write a
// second, and wakes the task's watchers once a second, whatever its pace.
const ProgressInterval = time.Second

// progress is the progress a run's steps reported and that is not written
// yet. Its methods are safe for concurrent use.
type progress struct {
	mu      sync.Mutex
	written time.Time                 // when progress was last written; zero: never
	held    map[string]tracker.Change // the last report held, by step; "" for the task's own
}

// report returns the changes to write now for c, the report of step
// ("" for the task's progress) at now: c, after the task's report held if
// any, or nothing if c is held. The reports held of other steps wait for
// their steps' next reports or ends: written with c, one of a step that
// has ended would have the write refused.
func (p *progress) report(now time.Time, step string, c tracker.Change) []tracker.Change {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.written.IsZero() && now.Sub(p.written) < ProgressInterval {
		if p.held == nil {
			p.held = make(map[string]tracker.Change)
		}
		p.held[step] = c
		return nil
	}
	p.written = now
	var changes []tracker.Change
	if h, ok := p.held[""]; ok && step != "" {
		changes = append(changes, h)
	}
	delete(p.held, "")
	delete(p.held, step) // c replaces it
	return append(changes, c)
}

// take returns the reports held of step and of the task, which the end of
// step writes, and forgets them.
func (p *progress) take(step string) []tracker.Change {
	p.mu.Lock()
	defer p.mu.Unlock()
	var changes []tracker.Change
	for _, k := range []string{"", step} {
		if c, ok := p.held[k]; ok {
			changes = append(changes, c)
			delete(p.held, k)
		}
	}
	return changes
}

// drop forgets the report held of step, whose attempt failed: the next
// attempt reports its own.
func (p *progress) drop(step string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.held, step)
}
