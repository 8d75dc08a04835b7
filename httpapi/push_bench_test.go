package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// pushConns is how many connections BenchmarkPush opens, each following a
// task of its own. Both ends of each connection are in the benchmark's
// process, whose file limit is often 20,000: 5,000 connections hold
// 10,000 descriptors.
const pushConns = 5000

// BenchmarkPush measures the push of changes to pushConns clients, each
// following a task of its own, on redisstore (redis) and on memstore
// (mem), by event stream (sse) and by WebSocket (ws), in alternate
// sub-benchmarks of the same run: on memstore the store's share is small,
// and the transports' costs show. The
// clients are alike for both: a goroutine per connection reading it
// through a 4 KB buffer, counting messages. It reports
//
//   - B/conn: heap and stacks in use per open connection, both ends and
//     the store's watch included;
//   - goroutines/conn: goroutines per open connection, both ends;
//   - cpu-ns/update: the process's CPU time per change delivered, the
//     write of the change through a tracker, the store's read of it and
//     the client's reading included;
//   - ns/update: the elapsed time per change delivered;
//   - pubsub-conns: the store's pub/sub connections to Redis while every
//     task is followed (on a real server only).
//
// Against the Redis server named by TASKSTATUS_REDIS_ADDR, or miniredis
// when it is unset (whose CPU then counts too):
//
//	TASKSTATUS_REDIS_ADDR=127.0.0.1:6379 go test -run '^$' -bench Push -benchtime 3x -count 5 ./httpapi/
func BenchmarkPush(b *testing.B) {
	for _, s := range []string{"redis", "mem"} {
		for _, p := range []pushClient{sseClient{}, wsClient{}} {
			b.Run(s+"/"+p.name(), func(b *testing.B) { benchPush(b, s == "redis", p) })
		}
	}
}

// benchPush measures the push to p's clients on redisstore if redis is
// true, else on memstore.
func benchPush(b *testing.B, redis bool, p pushClient) {
	ctx := context.Background()
	rs, pubsub := benchPushStore(b, redis)
	tr, err := tracker.New(rs)
	require.NoError(b, err)
	defer tr.Close(ctx)

	ids := make([]string, pushConns)
	for i := range ids {
		ids[i] = fmt.Sprintf("doc-%05d", i)
		require.NoError(b, tr.Apply(ctx, ids[i], tracker.Create(seedSteps...)))
		_, err := tr.Start(ctx, ids[i])
		require.NoError(b, err)
	}
	defer func() {
		for _, id := range ids {
			require.NoError(b, rs.Delete(ctx, id))
		}
	}()

	opts := []httpapi.Option{httpapi.WithMaxWatchers(0), httpapi.WithHeartbeat(0)}
	status, err := httpapi.StatusHandler(rs, opts...)
	require.NoError(b, err)
	ws, err := httpapi.WebSocketHandler(rs, opts...)
	require.NoError(b, err)
	var serving sync.WaitGroup // hijacked connections are not the server's to wait for
	mux := http.NewServeMux()
	mux.Handle(pattern, status)
	mux.HandleFunc(wsPattern, func(w http.ResponseWriter, r *http.Request) {
		serving.Add(1)
		defer serving.Done()
		ws.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	before := inUse()
	var delivered, reading sync.WaitGroup
	delivered.Add(pushConns) // the current state first
	conns := make([]net.Conn, pushConns)
	var dialer net.Dialer
	for i, id := range ids {
		c, err := dialer.DialContext(ctx, "tcp", srv.Listener.Addr().String())
		require.NoError(b, err)
		conns[i] = c
		r := bufio.NewReaderSize(c, 4096)
		require.NoError(b, p.open(c, r, id))
		reading.Go(func() { p.read(r, delivered.Done) })
	}
	delivered.Wait()
	after := inUse()
	subscribers := pubsub()

	cpu := cpuTime(b)
	var done int64
	for b.Loop() {
		done++
		delivered.Add(pushConns)
		for _, id := range ids {
			require.NoError(b, tr.Apply(ctx, id, tracker.SetProgress(store.Progress{Done: done, Total: 1 << 20})))
		}
		delivered.Wait()
	}
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N*pushConns), "cpu-ns/update")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*pushConns), "ns/update")
	// Reported after the loop, which resets what is reported before it.
	b.ReportMetric(float64(after.bytes-before.bytes)/pushConns, "B/conn")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/pushConns, "goroutines/conn")
	if subscribers >= 0 {
		b.ReportMetric(float64(subscribers), "pubsub-conns")
	}

	for _, c := range conns {
		c.Close()
	}
	reading.Wait()
	serving.Wait()
}

// benchPushStore returns the store of benchPush, closed when b ends, and
// a function that counts its pub/sub connections, or returns -1 if it
// cannot: redisstore on the Redis server named by TASKSTATUS_REDIS_ADDR,
// or on miniredis if it is unset, if redis is true; else memstore.
func benchPushStore(b *testing.B, redis bool) (store.Store, func() int) {
	none := func() int { return -1 }
	if !redis {
		mem, err := memstore.New()
		require.NoError(b, err)
		b.Cleanup(func() { require.NoError(b, mem.Close()) })
		return mem, none
	}
	addr, real := os.Getenv("TASKSTATUS_REDIS_ADDR"), true
	if addr == "" {
		addr, real = miniredis.RunT(b).Addr(), false
	}
	name := fmt.Sprintf("tsbench%016x", rand.Uint64())
	client := goredis.NewClient(&goredis.Options{Addr: addr, DisableIdentity: true, ClientName: name, PoolSize: 32})
	b.Cleanup(func() { require.NoError(b, client.Close()) })
	rs, err := redisstore.New(client, redisstore.WithPrefix(name+":"))
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, rs.Close()) })
	if !real {
		return rs, none
	}
	return rs, func() int { return subscribers(b, client, name) }
}

// memory is what the process holds: heap and stacks in use, goroutines.
type memory struct {
	bytes      uint64
	goroutines int
}

func inUse() memory {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memory{m.HeapInuse + m.StackInuse, runtime.NumGoroutine()}
}

// cpuTime returns the CPU time the process has used, user and system.
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	require.NoError(tb, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// subscribers returns how many connections named name have subscriptions
// on the Redis server.
func subscribers(tb testing.TB, c *goredis.Client, name string) int {
	tb.Helper()
	list, err := c.ClientList(context.Background()).Result()
	require.NoError(tb, err)
	n := 0
	for line := range strings.Lines(list) {
		if strings.Contains(line, " name="+name+" ") && !strings.Contains(line, " sub=0 ") {
			n++
		}
	}
	return n
}

// pushClient is the client end of a connection that follows a task.
type pushClient interface {
	name() string
	// open asks for the task's push on c, whose reader is r, and reads
	// the answer's header.
	open(c net.Conn, r *bufio.Reader, id string) error
	// read reads r until it fails, calling delivered once per message.
	read(r *bufio.Reader, delivered func())
}

// readHeader reads an HTTP answer's header from r and checks its status.
func readHeader(r *bufio.Reader, want string) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "HTTP/1.1 "+want) {
		return fmt.Errorf("answer %q, want %s", line, want)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil || line == "\r\n" {
			return err
		}
	}
}

type sseClient struct{}

func (sseClient) name() string { return "sse" }

func (sseClient) open(c net.Conn, r *bufio.Reader, id string) error {
	if _, err := fmt.Fprintf(c, "GET /tasks/%s/status HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n", id); err != nil {
		return err
	}
	return readHeader(r, "200")
}

// read counts the events' "event: status" lines; the chunks of the
// answer's body hold whole events, so no line is split.
func (sseClient) read(r *bufio.Reader, delivered func()) {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
		if bytes.Equal(line, []byte("event: status\n")) {
			delivered()
		}
	}
}

type wsClient struct{}

func (wsClient) name() string { return "ws" }

func (wsClient) open(c net.Conn, r *bufio.Reader, id string) error {
	if _, err := fmt.Fprintf(c, "GET /tasks/%s/ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", id); err != nil {
		return err
	}
	return readHeader(r, "101")
}

// read counts the text frames the server sends (unmasked, unfragmented:
// coder/websocket writes each message as one frame).
func (wsClient) read(r *bufio.Reader, delivered func()) {
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:2]); err != nil {
			return
		}
		op, n := hdr[0]&0x0f, uint64(hdr[1]&0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(r, hdr[:2]); err != nil {
				return
			}
			n = uint64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			if _, err := io.ReadFull(r, hdr[:8]); err != nil {
				return
			}
			n = binary.BigEndian.Uint64(hdr[:8])
		}
		if _, err := r.Discard(int(n)); err != nil {
			return
		}
		if op == 1 {
			delivered()
		}
	}
}
