package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/tracker"
)

// wsMessage is a message of the service's WebSocket endpoints.
type wsMessage struct {
	Type     string         `json:"type"`
	ID       string         `json:"id"`
	EventID  string         `json:"event_id"`
	Document map[string]any `json:"document"`
	Code     int            `json:"code"`
}

// dialWS opens a WebSocket to path on the service, closed when t ends.
func dialWS(t *testing.T, svc *service, path string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(t.Context(), "ws"+strings.TrimPrefix(svc.url, "http")+path, nil) //nolint:bodyclose // a 101 answer has none
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.CloseNow() }) // most tests have closed it
	return c
}

// readWS returns the next message of c, or the error that ended it.
func readWS(t *testing.T, c *websocket.Conn) (wsMessage, error) {
	t.Helper()
	_, b, err := c.Read(t.Context())
	if err != nil {
		return wsMessage{}, err
	}
	var m wsMessage
	require.NoError(t, json.Unmarshal(b, &m), "message %s", b)
	return m, nil
}

func TestWebSocket(t *testing.T) {
	svc := startService(t, 0.05, time.Second)
	submit(t, svc.url, request(t, "doc-123", nil), "abc-456-def")
	c := dialWS(t, svc, "/process/document/doc-123/ws")

	var last wsMessage
	for {
		m, err := readWS(t, c)
		if err != nil {
			require.Equal(t, websocket.StatusNormalClosure, websocket.CloseStatus(err), "the end after the final state: %v", err)
			break
		}
		require.Equal(t, "status", m.Type)
		if last.Document != nil {
			assert.Greater(t, m.Document["version"], last.Document["version"], "versions in order")
		}
		last = m
	}
	assert.Equal(t, "doc-123", last.ID)
	assert.Equal(t, "success", last.Document["status"])
	assert.Equal(t, "doc-123", last.Document["document_id"])
	assert.Equal(t, "abc-456-def", last.Document["correlation_id"])
}

func TestWebSocketSeveralDocuments(t *testing.T) {
	svc := startService(t, 0.05, time.Second)
	c := dialWS(t, svc, "/process/documents/ws")
	ids := []string{"doc-1", "doc-2"}
	for _, id := range ids {
		submit(t, svc.url, request(t, id, nil), "")
		require.NoError(t, c.Write(t.Context(), websocket.MessageText, []byte(`{"type":"subscribe","id":"`+id+`"}`)))
	}
	final := map[string]any{}
	for len(final) < len(ids) {
		m, err := readWS(t, c)
		require.NoError(t, err)
		require.Equal(t, "status", m.Type, "message %+v", m)
		if st := m.Document["status"]; st == "success" || st == "failed" {
			final[m.ID] = st
		}
	}
	assert.Equal(t, map[string]any{"doc-1": "success", "doc-2": "success"}, final)
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
}

func TestShutdownClosesWebSockets(t *testing.T) {
	svc := startService(t, 0, time.Minute)
	require.NoError(t, svc.tracker.Apply(t.Context(), "doc-pending", tracker.Create(stepFileNode))) // never runs
	c := dialWS(t, svc, "/process/document/doc-pending/ws")
	m, err := readWS(t, c)
	require.NoError(t, err)
	require.Equal(t, "pending", m.Document["status"])

	start := time.Now()
	svc.stop()
	assert.Less(t, time.Since(start), 10*time.Second, "shutdown waited for the WebSocket")
	_, err = readWS(t, c)
	assert.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err), "closed as going away: %v", err)
}
