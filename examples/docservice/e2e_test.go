package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/store"
)

// The end-to-end tests build the service's binary and run it as a user
// would, talking to it over HTTP only.

// binDir holds the binary they run; TestMain removes it.
var binDir string

// buildBinary builds the service's binary, once, with the race detector if
// the tests have it.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "docservice-e2e-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "docservice")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	// go test puts the go command that runs it first in PATH.
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		return "", &buildError{err: err, out: out}
	}
	return bin, nil
})

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + string(e.out) }

// instance is the service running as a child process.
type instance struct {
	url    string // the base URL
	cmd    *exec.Cmd
	stderr *lockedBuffer // its logs, as JSON lines
	exited chan struct{} // closed when it has exited
	err    error         // the error of cmd.Wait, once exited is closed
}

// startInstance builds the binary if needed and starts it on a free port
// of the loopback interface, with its steps 50 times faster than by
// default and the environment env (NAME=value, which wins). The process is
// killed when t ends, if it is still running.
func startInstance(t *testing.T, env ...string) *instance {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the binary")
	}
	if runtime.GOOS == "windows" {
		t.Skip("end-to-end test: stops the service with SIGTERM")
	}
	bin, err := buildBinary()
	require.NoError(t, err)

	addr := make(chan string, 1)
	in := &instance{stderr: &lockedBuffer{}, exited: make(chan struct{})}
	in.cmd = exec.CommandContext(t.Context(), bin, "-addr", "127.0.0.1:0", "-log-format", "json")
	in.cmd.Env = append([]string{"DELAY_SCALE=0.02", "LOG_LEVEL=debug"}, env...)
	in.cmd.Stdout = &firstLine{prefix: "listening on ", ch: addr}
	in.cmd.Stderr = in.stderr
	require.NoError(t, in.cmd.Start())
	go func() {
		in.err = in.cmd.Wait()
		close(in.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-in.exited:
		default:
			_ = in.cmd.Process.Kill()
			<-in.exited
		}
		if t.Failed() {
			t.Logf("logs of %s:\n%s", in.url, in.stderr)
		}
	})
	in.url = "http://" + waitAddr(t, addr, in.exited)
	return in
}

// stop stops the instance with SIGTERM and requires it to exit cleanly,
// without a data race, within 30 seconds.
func (in *instance) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, in.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-in.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit within 30s of SIGTERM", in.url)
	}
	require.NoError(t, in.err, "exit status of %s", in.url)
	require.NotContains(t, in.stderr.String(), "DATA RACE")
}

// TestE2E follows the origin's walk-through against the binary: submit a
// document, then follow its status_url until it ends, in success and in
// failure.
func TestE2E(t *testing.T) {
	in := startInstance(t)

	t.Run("success", func(t *testing.T) {
		resp := submit(t, in.url, loadFixture(t, "request.json"), "abc-456-def")
		requireShape(t, loadFixture(t, "submit_response.json"), resp, nil)
		assert.Equal(t, "/process/document/doc-123/status", resp["status_url"])

		doc := await(t, in.url+resp["status_url"].(string), ended)
		want := loadFixture(t, "status_success.json")
		requireShape(t, want, doc, statusExtras)
		assert.Equal(t, want["pipeline_steps"], doc["pipeline_steps"])
		assert.Equal(t, "success", doc["status"])
		assert.Equal(t, "abc-456-def", doc["correlation_id"])
		assert.Equal(t, resp["entities_extracted"], doc["entities_extracted"])
		assert.Equal(t, true, doc["vector_indexed"])
		assert.Nil(t, doc["lease_until"], "an ended task keeps no lease")
	})

	t.Run("failed", func(t *testing.T) {
		resp := submit(t, in.url, request(t, "doc-456", map[string]any{"simulate_failure": stepEmbedding}), "")
		doc := await(t, in.url+resp["status_url"].(string), ended)
		want := loadFixture(t, "status_failed.json")
		requireShape(t, want, doc, statusExtras)
		assert.Equal(t, want["pipeline_steps"], doc["pipeline_steps"])
		assert.Equal(t, "failed", doc["status"])
		assert.Equal(t, want["error_message"], doc["error_message"])
		details := doc["error_details"].(map[string]any)
		assert.Equal(t, "ConnectionError", details["exception_type"])
		assert.Equal(t, "my-project", details["project_id"])
		assert.Equal(t, "archon://projects/my-project/documents/doc-456", details["source_path"])
		assert.Equal(t, false, doc["vector_indexed"])
		assert.Equal(t, resp["entities_extracted"], doc["entities_extracted"])
		assert.NotEmpty(t, doc["correlation_id"], "the service makes a correlation id when the request has none")
	})

	t.Run("errors", func(t *testing.T) {
		r := do(t, http.MethodGet, in.url+"/process/document/doc-404/status", nil)
		assert.Equal(t, http.StatusNotFound, r.code)
		r = do(t, http.MethodPost, in.url+"/process/document", []byte(`{"document_id":"doc-1"}`),
			"Content-Type", "application/json")
		assert.Equal(t, http.StatusBadRequest, r.code)
		assert.Equal(t, "project_id", r.object(t)["field"])
	})

	in.stop(t)
	assert.Contains(t, in.stderr.String(), `"msg":"store: memory;`)
}

// TestE2ETwoInstances runs two instances on the same Redis, and on the same
// PostgreSQL database: a document submitted to one is followed, to its
// end, through the other.
func TestE2ETwoInstances(t *testing.T) {
	for _, backend := range []struct {
		name  string
		env   func(t *testing.T) []string
		store string // the start-up log line that names the store
	}{
		{"redis", redisEnv, "store: redis"},
		{"postgres", postgresEnv, "store: postgres"}, // both migrate at once
	} {
		t.Run(backend.name, func(t *testing.T) {
			env := backend.env(t)
			a, b := startInstance(t, env...), startInstance(t, env...)

			resp := submit(t, a.url, loadFixture(t, "request.json"), "abc-456-def")
			doc := await(t, b.url+resp["status_url"].(string), ended)
			requireShape(t, loadFixture(t, "status_success.json"), doc, statusExtras)
			assert.Equal(t, "success", doc["status"])
			assert.Equal(t, "abc-456-def", doc["correlation_id"])

			// The Go client reads it from b too.
			client := httpapi.Client{HTTPClient: httpClient, BaseURL: b.url, IDField: "document_id"}
			st, err := client.Wait(t.Context(), resp["status_url"].(string))
			require.NoError(t, err)
			assert.Equal(t, store.StatusSuccess, st.Status)

			// a ran the steps, and logged each with the ids; b ran none.
			lines := logLines(t, a.stderr, "step succeeded", "doc-123")
			assert.Len(t, lines, 5)
			for _, l := range lines {
				assert.Equal(t, "abc-456-def", l["correlation_id"])
			}
			assert.Empty(t, logLines(t, b.stderr, "step succeeded", "doc-123"))

			a.stop(t)
			b.stop(t)
			for _, in := range []*instance{a, b} {
				assert.Contains(t, in.stderr.String(), `"msg":"`+backend.store+`"`)
			}
		})
	}
}

// TestE2EShutdown stops an instance with SIGTERM while it runs a task: the
// task ends as it would have (the run finishes within the shutdown timeout)
// or canceled (it does not), and is never left running. Another instance on
// the same Redis reads it after the first has exited.
func TestE2EShutdown(t *testing.T) {
	env := redisEnv(t)
	reader := startInstance(t, env...)
	for _, tc := range []struct {
		name   string
		env    []string
		status string
	}{
		{"drains", []string{"DELAY_SCALE=0.2", "SHUTDOWN_TIMEOUT=30s"}, "success"}, // 0.6s of work
		{"cancels", []string{"DELAY_SCALE=100", "SHUTDOWN_TIMEOUT=100ms"}, "canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := startInstance(t, append(env, tc.env...)...)
			id := "doc-shutdown-" + tc.name
			resp := submit(t, in.url, request(t, id, nil), "")
			url := reader.url + resp["status_url"].(string)
			await(t, url, running)

			in.stop(t)
			doc := do(t, http.MethodGet, url, nil).object(t)
			assert.Equal(t, tc.status, doc["status"])
			for name, status := range doc["pipeline_steps"].(map[string]any) {
				assert.NotContains(t, []string{"pending", "running"}, status, "step %s", name)
			}
		})
	}
	reader.stop(t)
}

func TestE2EHelp(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the binary")
	}
	bin, err := buildBinary()
	require.NoError(t, err)
	out, err := exec.CommandContext(t.Context(), bin, "-h").CombinedOutput()
	require.NoError(t, err)
	for _, flag := range []string{"-addr", "-delay-scale", "-shutdown-timeout", "-log-level", "-log-format"} {
		assert.Contains(t, string(out), flag)
	}
	assert.True(t, strings.HasPrefix(string(out), "Usage of docservice"), "%s", out)
}
