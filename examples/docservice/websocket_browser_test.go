package main

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chromiumPathEnv names the Chromium binary the browser tests drive. The
// test fails, not skips, when it is set and Chromium cannot run.
const chromiumPathEnv = "TASKSTATUS_CHROMIUM"

// headlessChromium starts a headless Chromium for t, or skips t if
// chromiumPathEnv is not set, and returns the context of a tab in it,
// whose browser is stopped when t ends.
func headlessChromium(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv(chromiumPathEnv)
	if path == "" {
		t.Skipf("%s is not set: no browser to test with", chromiumPathEnv)
	}
	_, err := exec.LookPath(path)
	require.NoError(t, err, "%s=%s", chromiumPathEnv, path)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.Flag("disable-background-networking", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		require.NoError(t, chromedp.Cancel(ctx), "stop the browser")
		cancelTab()
		cancelAlloc()
	})
	// The first action starts the browser: it must not have a deadline.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")), "start the browser")
	return ctx
}

// followScript follows a document over a WebSocket from a page of the
// service, and resolves with the close code and the statuses and versions
// of the documents it was sent.
const followScript = `new Promise((resolve) => {
  const ws = new WebSocket("ws://" + location.host + "/process/document/doc-ws/ws");
  const seen = [];
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    seen.push({status: m.document.status, version: m.document.version, id: m.id});
  };
  ws.onclose = (e) => resolve({code: e.code, reason: e.reason, seen: seen});
})`

// followed is what followScript resolves with.
type followed struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
	Seen   []struct {
		Status  string `json:"status"`
		Version int64  `json:"version"`
		ID      string `json:"id"`
	} `json:"seen"`
}

// TestWebSocketBrowser follows a document to success from a page in
// headless Chromium, with the browser's own WebSocket.
func TestWebSocketBrowser(t *testing.T) {
	ctx := headlessChromium(t)
	svc := startService(t, 1, time.Second) // about 3 s a document
	navCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(navCtx, chromedp.Navigate(svc.url+"/process/documents")))
	submit(t, svc.url, request(t, "doc-ws", nil), "")

	runCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	got, err := chromedp.Run(runCtx, chromedp.Evaluate[followed](followScript, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	require.Equal(t, 1000, got.Code, "closed after the final state (reason %q)", got.Reason)
	require.NotEmpty(t, got.Seen)
	assert.NotEqual(t, "success", got.Seen[0].Status, "followed while it ran, not only read at the end")
	assert.Equal(t, "success", got.Seen[len(got.Seen)-1].Status)
	for i, m := range got.Seen {
		assert.Equal(t, "doc-ws", m.ID)
		if i > 0 {
			assert.Greater(t, m.Version, got.Seen[i-1].Version, "versions in order")
		}
	}
}
