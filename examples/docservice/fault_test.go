package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/internal/redisserver"
	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

// TestE2ERedisKilled: 60 documents are submitted to the binary on a Redis
// of the test's own (appendonly), which is killed half a second after the
// last submission and started again 10 seconds later. The documents' work
// goes on meanwhile and ends while Redis is away. Within 15 seconds of the
// restart every document shows its true final state; and every line the
// service wrote to stderr meanwhile is JSON (-log-format json), go-redis's
// own lines included.
func TestE2ERedisKilled(t *testing.T) {
	if os.Getenv(redisAddrVar) == "" {
		t.Skipf("%s is not set: the test that kills a redis-server of its own runs with the other real-server tests", redisAddrVar)
	}
	srv := redisserver.Start(t, true)
	in := startInstance(t, "VALKEY_URL=redis://"+srv.Addr()+"/0", "DELAY_SCALE=1")

	const docs = 60
	want := make(map[string]string, docs) // document id -> final status
	for i := range docs {
		id := fmt.Sprintf("doc-%02d", i)
		var meta map[string]any
		want[id] = "success"
		if i%4 == 1 {
			meta = map[string]any{"simulate_failure": stepEmbedding}
			want[id] = "failed"
		}
		submit(t, in.url, request(t, id, meta), "")
	}
	time.Sleep(500 * time.Millisecond) // the outage begins half a second after the last submission
	srv.Kill()
	killed := in.stderr.Len()
	time.Sleep(10 * time.Second) // the outage lasts 10 seconds: every document's work ends meanwhile
	srv.Restart()
	restarted := time.Now()

	for len(want) > 0 && time.Since(restarted) < 15*time.Second {
		for id, status := range want {
			resp := do(t, http.MethodGet, in.url+"/process/document/"+id+"/status", nil)
			if resp.code == http.StatusOK && trueFinalState(resp.object(t), status) {
				delete(want, id)
			}
		}
		time.Sleep(100 * time.Millisecond) // observing the service, which writes in the background
	}
	require.Empty(t, want, "documents not in their true final state 15s after Redis restarted")
	t.Logf("all %d documents in their true final state %v after the restart", docs, time.Since(restarted).Round(time.Millisecond))

	in.stop(t)
	during := in.stderr.String()[killed:]
	require.Contains(t, during, "connection refused", "the outage was logged")
	for line := range strings.Lines(during) {
		assert.True(t, json.Valid([]byte(line)), "a line of stderr is not JSON: %s", line)
	}
}

// trueFinalState reports whether doc is the final state of a document
// whose work ended as status: every step as it ran, the results set.
func trueFinalState(doc map[string]any, status string) bool {
	steps, _ := doc["pipeline_steps"].(map[string]any)
	want := map[string]any{stepFileNode: "success", stepGraph: "success", stepEmbedding: "success",
		stepIndexing: "success", stepFreshness: "success"}
	indexed := true
	if status == "failed" {
		want[stepEmbedding], want[stepIndexing], want[stepFreshness] = "failed", "failed", "skipped"
		indexed = false
	}
	if doc["status"] != status || doc["vector_indexed"] != indexed || len(steps) != len(want) {
		return false
	}
	for name, s := range want {
		if steps[name] != s {
			return false
		}
	}
	return true
}

// TestE2EServiceKilled: the service is killed (SIGKILL) in the middle of a
// document's work. Another instance on the same Redis shows the task
// abandoned within one lease of the kill, and a new submission of the
// document there runs attempt 2 to success.
func TestE2EServiceKilled(t *testing.T) {
	env := append(redisEnv(t), "TASK_LEASE=1s")
	doomed := startInstance(t, append(env, "DELAY_SCALE=100")...) // steps of 30s and more
	resp := submit(t, doomed.url, request(t, "doc-123", nil), "")
	await(t, doomed.url+resp["status_url"].(string), running)

	other := startInstance(t, append(env, "RESCUE_EVERY=0")...) // TestE2ERescued rescues
	url := other.url + resp["status_url"].(string)
	require.NoError(t, doomed.cmd.Process.Kill())
	<-doomed.exited
	killed := time.Now()

	doc := await(t, url, func(doc map[string]any) bool { return doc["abandoned"] == true })
	assert.Equal(t, "running", doc["status"])
	assert.Less(t, time.Since(killed), time.Second+2*time.Second, "shown abandoned within one lease of the kill (and some slack)")

	submit(t, other.url, request(t, "doc-123", nil), "")
	doc = await(t, url, ended)
	assert.Equal(t, "success", doc["status"])
	assert.InDelta(t, 2, doc["attempt"], 0)
	assert.Equal(t, false, doc["abandoned"])
	other.stop(t)
}

// TestE2ERescued: the service is killed (SIGKILL) in the middle of a
// document's work and started again. Within a lease and the rescue
// interval (and some slack), the task is failed with TaskAbandoned, with
// no request made: the test watches the store itself.
func TestE2ERescued(t *testing.T) {
	const lease, every = time.Second, 500 * time.Millisecond
	env := append(redisEnv(t), "TASK_LEASE="+lease.String(), "RESCUE_EVERY="+every.String(), "DELAY_SCALE=100")
	doomed := startInstance(t, env...)
	resp := submit(t, doomed.url, request(t, "doc-123", nil), "")
	await(t, doomed.url+resp["status_url"].(string), running)
	require.NoError(t, doomed.cmd.Process.Kill())
	<-doomed.exited
	killed := time.Now()

	st := storeOf(t, env)
	changes, err := st.Watch(t.Context(), "doc-123")
	require.NoError(t, err)
	again := startInstance(t, env...)
	var final store.State
	for final = range changes {
		if final.Status.Terminal() {
			break
		}
	}
	took := time.Since(killed)
	require.Equal(t, store.StatusFailed, final.Status, "the watch ended")
	assert.JSONEq(t, `"TaskAbandoned"`, string(final.ErrorDetails["exception_type"]))
	assert.Less(t, took, lease+lease/10+every+time.Second, "rescued within a lease and the rescue interval (and some slack)")
	t.Logf("rescued %v after the kill", took.Round(time.Millisecond))
	again.stop(t)
}

// storeOf returns a redisstore on the Redis server and prefix of env, as
// redisEnv returns it.
func storeOf(t *testing.T, env []string) *redisstore.Store {
	t.Helper()
	var addr, prefix string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "VALKEY_URL=redis://"); ok {
			addr, _, _ = strings.Cut(v, "/")
		}
		if v, ok := strings.CutPrefix(kv, "TASKSTATUS_PREFIX="); ok {
			prefix = v
		}
	}
	client := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	t.Cleanup(func() { client.Close() })
	st, err := redisstore.New(client, redisstore.WithPrefix(prefix))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

// TestE2ECancelAcrossInstances: two instances on one Redis, steps of about
// 5 seconds. A document is submitted to A and canceled through B while a
// step runs: within a second the task is canceled, A's step saw its
// context canceled (its log line says so), and no later step ran.
func TestE2ECancelAcrossInstances(t *testing.T) {
	env := append(redisEnv(t), "DELAY_SCALE=17") // file_node_creation takes 5.1 s
	a := startInstance(t, env...)
	b := startInstance(t, env...)
	resp := submit(t, a.url, request(t, "doc-123", nil), "")
	await(t, a.url+resp["status_url"].(string), running)

	r := do(t, http.MethodPost, b.url+"/process/document/doc-123/cancel", []byte(`{"reason":"wrong file"}`),
		"Content-Type", "application/json")
	require.Equal(t, http.StatusAccepted, r.code, "body: %s", r.body)
	asked := time.Now()
	doc := await(t, b.url+resp["status_url"].(string), ended)
	took := time.Since(asked)
	assert.Equal(t, "canceled", doc["status"])
	assert.Less(t, took, time.Second, "canceled within a second of the request")
	assert.Equal(t, map[string]any{stepFileNode: "failed", stepGraph: "skipped", stepEmbedding: "skipped",
		stepIndexing: "skipped", stepFreshness: "skipped"}, doc["pipeline_steps"])
	t.Logf("canceled %v after the request", took.Round(time.Millisecond))

	a.stop(t)
	b.stop(t)
	lines := logLines(t, a.stderr, "step canceled", "doc-123")
	require.Len(t, lines, 1, "A's step saw its context canceled")
	assert.Equal(t, "cancellation requested: wrong file", lines[0]["cause"])
	assert.Empty(t, logLines(t, a.stderr, "step succeeded", "doc-123"), "no later step ran")
}
