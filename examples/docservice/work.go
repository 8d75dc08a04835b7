package main

import (
	"context"
	"log/slog"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/tracker"
)

// The steps of the pipeline, as the origin service names them.
const (
	stepFileNode  = "file_node_creation"
	stepGraph     = "memgraph_storage"
	stepEmbedding = "embedding_generation"
	stepIndexing  = "qdrant_indexing"
	stepFreshness = "freshness_analysis"
)

// How long each step works at a delay scale of 1: about 3 seconds in all,
// so that a client polling every second sees the task running.
const (
	fileNodeDelay  = 300 * time.Millisecond
	graphDelay     = 600 * time.Millisecond
	embeddingDelay = 1200 * time.Millisecond
	indexingDelay  = 500 * time.Millisecond
	freshnessDelay = 400 * time.Millisecond
)

// Embedding works on chunks of chunkWords words, at most maxChunks of
// them, and reports its progress after each one.
const (
	chunkWords = 200
	maxChunks  = 8
)

// operation returns what step does, as its failure message names it, and
// whether step is a step of the pipeline.
func operation(step string) (string, bool) {
	switch step {
	case stepFileNode:
		return "File node creation", true
	case stepGraph:
		return "Graph storage", true
	case stepEmbedding:
		return "Vectorization", true
	case stepIndexing:
		return "Vector indexing", true
	case stepFreshness:
		return "Freshness analysis", true
	}
	return "", false
}

// ConnectionError is the error of a step whose backing service refused the
// connection: the failure the origin service reports as Python's
// ConnectionError.
type ConnectionError struct {
	Op string // what failed, such as "Vectorization"
}

// Error returns the origin's message, such as
// "Vectorization failed: Connection refused".
func (e *ConnectionError) Error() string {
	return e.Op + " failed: Connection refused"
}

// Unwrap returns syscall.ECONNREFUSED.
func (e *ConnectionError) Unwrap() error { return syscall.ECONNREFUSED }

// document is a document to process: a valid submission.
type document struct {
	ID       string
	Project  string
	Content  string
	Entities int    // the entities found in Content
	FailAt   string // the step to fail (on the first attempt only), or ""
}

// sourcePath returns the document's URI, as the origin records it in the
// details of a failure.
func (d *document) sourcePath() string {
	return "archon://projects/" + d.Project + "/documents/" + d.ID
}

// countEntities returns the number of entities in text: a stand-in for
// entity extraction that counts its distinct capitalised words.
func countEntities(text string) int {
	seen := make(map[string]bool)
	for w := range strings.FieldsFuncSeq(text, notWordRune) {
		if r := []rune(w)[0]; unicode.IsUpper(r) {
			seen[w] = true
		}
	}
	return len(seen)
}

func notWordRune(r rune) bool {
	return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '_'
}

// job is the processing of one document: the work of each step of its
// pipeline.
type job struct {
	doc       *document
	log       *slog.Logger
	scale     float64       // applied to each step's delay
	heartbeat time.Duration // how often a long step renews the task's lease; 0: never
}

// pipeline returns the pipeline that processes j's document. Each document
// gets its own, cheap to make, so that its steps have the document at hand;
// every one has the same steps. Vector indexing needs the embeddings, so it
// fails when their generation does; freshness analysis is optional: its
// failure does not fail the task.
func (j *job) pipeline() (*pipeline.Pipeline, error) {
	return pipeline.New(
		pipeline.Step(stepFileNode, j.logged(stepFileNode, j.createFileNode)),
		pipeline.Step(stepGraph, j.logged(stepGraph, j.storeGraph)),
		pipeline.Step(stepEmbedding, j.logged(stepEmbedding, j.generateEmbeddings)),
		pipeline.Step(stepIndexing, j.logged(stepIndexing, j.indexVectors),
			pipeline.DependsOn(stepEmbedding)),
		pipeline.Step(stepFreshness, j.logged(stepFreshness, j.analyseFreshness),
			pipeline.Optional()),
	)
}

// logged returns fn with the details of its failure attached as the origin
// records them, and one log line when it ends, with the task id and the
// correlation id.
func (j *job) logged(step string, fn pipeline.Func) pipeline.Func {
	return func(ctx context.Context, task *pipeline.Task) error {
		start := time.Now()
		task.Detail("project_id", j.doc.Project)
		task.Detail("source_path", j.doc.sourcePath())
		err := fn(ctx, task)

		attrs := []slog.Attr{
			slog.String("document_id", task.ID()),
			slog.String("correlation_id", tracker.CorrelationID(ctx)),
			slog.String("step", step),
			slog.Duration("duration", time.Since(start)),
		}
		if err == nil {
			j.log.LogAttrs(ctx, slog.LevelInfo, "step succeeded", attrs...)
			return nil
		}
		attrs = append(attrs, slog.String("err", err.Error()))
		if ctx.Err() != nil { // stopped by a shutdown or a cancel request: not the step's failure
			attrs = append(attrs, slog.String("cause", context.Cause(ctx).Error()))
			j.log.LogAttrs(ctx, slog.LevelInfo, "step canceled", attrs...)
			return err
		}
		task.Detail(tracker.ExceptionTypeKey, exceptionType(err))
		j.log.LogAttrs(ctx, slog.LevelWarn, "step failed", attrs...)
		return err
	}
}

// exceptionType names the type of err for the error details: the type
// [tracker.ErrorType] names, without "main." for the types of this program,
// as Python names built-in exceptions ("ConnectionError").
func exceptionType(err error) string {
	return strings.TrimPrefix(tracker.ErrorType(err), "main.")
}

func (j *job) createFileNode(ctx context.Context, task *pipeline.Task) error {
	return j.work(ctx, task, stepFileNode, fileNodeDelay)
}

func (j *job) storeGraph(ctx context.Context, task *pipeline.Task) error {
	return j.work(ctx, task, stepGraph, graphDelay)
}

// generateEmbeddings embeds the document chunk by chunk, reporting the
// step's progress after each one (written at most once a second, and at
// the step's end: see pipeline.ProgressInterval).
func (j *job) generateEmbeddings(ctx context.Context, task *pipeline.Task) error {
	n := min(max(1, (len(strings.Fields(j.doc.Content))+chunkWords-1)/chunkWords), maxChunks)
	for i := range n {
		if err := j.work(ctx, task, stepEmbedding, embeddingDelay/time.Duration(n)); err != nil {
			return err
		}
		task.StepProgress(int64(i+1), int64(n), "chunks embedded")
	}
	return nil
}

// indexVectors indexes the embeddings and records that the document's
// vectors are indexed.
func (j *job) indexVectors(ctx context.Context, task *pipeline.Task) error {
	if err := j.work(ctx, task, stepIndexing, indexingDelay); err != nil {
		return err
	}
	task.SetResult(map[string]any{"vector_indexed": true})
	return nil
}

func (j *job) analyseFreshness(ctx context.Context, task *pipeline.Task) error {
	return j.work(ctx, task, stepFreshness, freshnessDelay)
}

// work simulates d (scaled) of the work of step: it waits, renewing the
// task's lease while it does, and then fails with a [ConnectionError] if
// the document asked for step to fail. It returns ctx's cause if ctx is
// done first.
func (j *job) work(ctx context.Context, task *pipeline.Task, step string, d time.Duration) error {
	timer := time.NewTimer(time.Duration(float64(d) * j.scale))
	defer timer.Stop()
	var beat <-chan time.Time
	if j.heartbeat > 0 {
		heartbeat := time.NewTicker(j.heartbeat)
		defer heartbeat.Stop()
		beat = heartbeat.C
	}
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-beat:
			task.Heartbeat() // its errors go to the tracker's error handler
		case <-timer.C:
			if j.doc.FailAt == step {
				op, _ := operation(step)
				return &ConnectionError{Op: op}
			}
			return nil
		}
	}
}
