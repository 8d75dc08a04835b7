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
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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
// task of its own.
const pushConns = 10000

// BenchmarkPush measures the push of changes to pushConns clients, each
// following a task of its own, on redisstore (redis) and on memstore
// (mem), by event stream (sse) and by WebSocket (ws), in alternate
// sub-benchmarks of the same run: on memstore the store's share is small,
// and the transports' costs show. The clients run in a process of their
// own (TestPushClients), alike for both transports: a goroutine per
// connection reading it through a 4 KB buffer, counting messages. The
// figures are the server process's. It reports
//
//   - B/conn: heap and stacks in use per open connection, the store's
//     watch included;
//   - goroutines/conn: goroutines per open connection;
//   - cpu-ns/update: the process's CPU time per change delivered, the
//     write of the change through a tracker and the store's read of it
//     included;
//   - ns/update: the elapsed time per change delivered;
//   - pubsub-conns: the store's pub/sub connections to Redis while every
//     task is followed (on a real server only).
//
// Against the Redis server named by TASKSTATUS_REDIS_ADDR, or miniredis
// when it is unset (whose CPU then counts too):
//
//	go test -c -o /tmp/httpapi.test ./httpapi/
//	TASKSTATUS_REDIS_ADDR=127.0.0.1:6379 /tmp/httpapi.test -test.run '^$' -test.bench Push -test.benchtime 3x
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
	clients := startPushClients(b, p, srv.Listener.Addr().String())
	clients.waitRound(b, 0) // every client has the current state
	after := inUse()
	subscribers := pubsub()

	cpu := cpuTime(b)
	var done int64
	for b.Loop() {
		done++
		for _, id := range ids {
			require.NoError(b, tr.Apply(ctx, id, tracker.SetProgress(store.Progress{Done: done, Total: 1 << 20})))
		}
		clients.waitRound(b, done)
	}
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N*pushConns), "cpu-ns/update")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*pushConns), "ns/update")
	// Reported after the loop, which resets what is reported before it.
	b.ReportMetric(float64(after.bytes-before.bytes)/pushConns, "B/conn")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/pushConns, "goroutines/conn")
	if subscribers >= 0 {
		b.ReportMetric(float64(subscribers), "pubsub-conns")
	}

	clients.stop(b)
	serving.Wait()
}

// pushClientsEnv, when set, makes TestPushClients the clients of
// BenchmarkPush, in a process of their own: the name of a pushClient and
// the server's address, space-separated.
const pushClientsEnv = "TASKSTATUS_PUSH_CLIENTS"

// pushClients is the process of the clients of BenchmarkPush.
type pushClients struct {
	cmd   *exec.Cmd
	stdin io.Closer
	lines *bufio.Scanner
}

// startPushClients starts a process of pushConns clients of p, each
// following a task of its own on the server at addr.
func startPushClients(b *testing.B, p pushClient, addr string) *pushClients {
	b.Helper()
	cmd := exec.CommandContext(b.Context(), os.Args[0], "-test.run=^TestPushClients$")
	cmd.Env = append(os.Environ(), pushClientsEnv+"="+p.name()+" "+addr)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(b, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	return &pushClients{cmd, stdin, bufio.NewScanner(stdout)}
}

// waitRound waits until every client has had n+1 messages.
func (c *pushClients) waitRound(b *testing.B, n int64) {
	b.Helper()
	want := fmt.Sprintf("round %d", n)
	for c.lines.Scan() {
		if c.lines.Text() == want {
			return
		}
	}
	b.Fatalf("the clients ended before %s: %v", want, c.lines.Err())
}

// stop ends the clients' process and waits for it.
func (c *pushClients) stop(b *testing.B) {
	b.Helper()
	require.NoError(b, c.stdin.Close())
	for c.lines.Scan() {
		// The test's own output.
	}
	require.NoError(b, c.cmd.Wait())
}

// TestPushClients is the clients of BenchmarkPush when it runs it in a
// process of its own, so that each end of the connections has the file
// limit to itself and the benchmark's figures are the server's: it opens
// pushConns connections to the server named by pushClientsEnv, each
// following a task, prints "round n" when every connection has had n+1
// messages, and closes them when its standard input ends.
func TestPushClients(t *testing.T) {
	spec := os.Getenv(pushClientsEnv)
	if spec == "" {
		t.Skip("the clients of BenchmarkPush, which runs them in a process of their own")
	}
	kind, addr, _ := strings.Cut(spec, " ")
	p := map[string]pushClient{"sse": sseClient{}, "ws": wsClient{}}[kind]
	require.NotNil(t, p, "client %q", kind)
	var got atomic.Int64 // messages, on all connections
	delivered := func() {
		if n := got.Add(1); n%pushConns == 0 {
			fmt.Printf("round %d\n", n/pushConns-1) // a round's last message: the next round has not begun
		}
	}
	var dialer net.Dialer
	var reading sync.WaitGroup
	conns := make([]net.Conn, pushConns)
	for i := range conns {
		c, err := dialer.DialContext(t.Context(), "tcp", addr)
		require.NoError(t, err)
		conns[i] = c
		r := bufio.NewReaderSize(c, 4096)
		require.NoError(t, p.open(c, r, fmt.Sprintf("doc-%05d", i)))
		reading.Go(func() { p.read(r, delivered) })
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // until the benchmark is done
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	reading.Wait()
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
