package main

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
	ctx := newBrowser(t)
	svc := startService(t, 1, time.Second) // about 3 s a document
	browse(ctx, t, "open a page of the service", chromedp.Navigate(svc.url+"/process/documents"))
	submit(t, svc.url, request(t, "doc-ws", nil), "")
	got := read(ctx, t, "follow the document", chromedp.Evaluate[followed](followScript, chromedp.EvalAwaitPromise))
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
