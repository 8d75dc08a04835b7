package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/httpapi"
)

// TestAbusiveIDs sends ids that must not reach the store or must be
// answered as unknown, through a real server and ServeMux.
func TestAbusiveIDs(t *testing.T) {
	f := newFixture(t)
	f.running(t, "a/b")
	f.running(t, "t")
	srv := httptest.NewServer(f.handler(t))
	defer srv.Close()
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	for _, tc := range []struct {
		path    string
		code    int
		problem bool // answered by the status handler
	}{
		{"/tasks/../status", http.StatusTemporaryRedirect, false},        // cleaned by the mux
		{"/tasks/t/../t/status", http.StatusTemporaryRedirect, false},    // likewise
		{"/tasks/%2E%2E/status", http.StatusBadRequest, true},            // the id ".."
		{"/tasks/%2e/status", http.StatusBadRequest, true},               // the id "."
		{"/tasks/a/b/status", http.StatusNotFound, false},                // no route
		{"/tasks/a%2Fb/status", http.StatusOK, false},                    // the id "a/b"
		{"/tasks/a%2fb/status", http.StatusOK, false},                    // likewise
		{"/tasks/%00/status", http.StatusBadRequest, true},               // unprintable
		{"/tasks/t%00/status", http.StatusBadRequest, true},              // likewise
		{"/tasks/%0D%0AX-Evil:%201/status", http.StatusBadRequest, true}, // header injection
		{"/tasks/%7Bt%7D/status", http.StatusBadRequest, true},           // hash tag
		{"/tasks/%FF/status", http.StatusBadRequest, true},               // not UTF-8
		{"/tasks/" + strings.Repeat("x", 10<<10) + "/status", http.StatusBadRequest, true},
		{"/tasks/" + strings.Repeat("%E6%97%A5", 100) + "/status", http.StatusBadRequest, true}, // 300 bytes
		{"/tasks/" + strings.Repeat("x", 256) + "/status", http.StatusNotFound, true},           // longest id
		{"/tasks/t%20/status", http.StatusNotFound, true},                                       // not "t"
	} {
		name := tc.path
		if len(name) > 60 {
			name = name[:60] + "..."
		}
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+tc.path, nil)
			require.NoError(t, err)
			resp, err := client.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tc.code, resp.StatusCode, "%s", body)
			assert.Empty(t, resp.Header.Get("X-Evil"))
			if tc.problem {
				var p httpapi.Problem
				require.NoError(t, json.Unmarshal(body, &p))
				assert.Equal(t, tc.code, p.Status)
				assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
			}
			if tc.code == http.StatusOK {
				assert.Equal(t, "a/b", document(t, body)["task_id"])
			}
		})
	}
}

// TestWaitCapped asks for a wait of 999 hours and checks that the watch
// made for it ends within the default cap.
func TestWaitCapped(t *testing.T) {
	f := newFixture(t)
	f.running(t, "t")
	ctx, cancel := context.WithCancel(t.Context())
	req := get(fmt.Sprintf("/tasks/t/status?wait=999h&version=%d", f.version(t, "t"))).WithContext(ctx)
	start := time.Now()
	done := serveAsync(f.handler(t), req)
	f.store.waitFor(t, 1)
	deadline := f.store.lastDeadline()
	assert.WithinRange(t, deadline, start.Add(httpapi.DefaultMaxWait), time.Now().Add(httpapi.DefaultMaxWait))
	cancel()
	await(t, done)
	f.store.waitFor(t, 0)
}
