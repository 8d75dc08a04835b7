package redisstore_test

import (
	"bytes"
	"net"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/internal/redisserver"
)

// This file holds the servers the tests run against besides miniredis and
// the servers named by the environment: a redis-server a test starts
// itself, a server that never answers, and a proxy that can freeze a
// connection or drop a reply.

// startRedisServer starts a redis-server of the test's own (see package
// redisserver), persistent or not. It skips t unless TASKSTATUS_REDIS_ADDR
// is set: the tests that start one run with the other real-server tests.
func startRedisServer(t *testing.T, persistent bool) *redisserver.Server {
	t.Helper()
	if os.Getenv(envAddr) == "" {
		t.Skipf("%s is not set: the fault tests, which start a redis-server of their own, run with the other real-server tests", envAddr)
	}
	return redisserver.Start(t, persistent)
}

// unusedAddr returns a loopback address on which nothing listens.
func unusedAddr(t *testing.T) string {
	ln, err := new(net.ListenConfig).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// silentServer returns the address of a server, closed when t ends, that
// accepts connections and never answers on them: a blackholed Redis.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := new(net.ListenConfig).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		accepting sync.WaitGroup
		mu        sync.Mutex
		held      []net.Conn // open, never answered
	)
	accepting.Go(func() {
		for {
			cn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, cn)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		accepting.Wait()
		for _, cn := range held {
			_ = cn.Close()
		}
	})
	return ln.Addr().String()
}

// proxy forwards the TCP connections it accepts to a server, and can, on
// demand, freeze the pub/sub connections open (stop forwarding on them in
// both directions without closing them: a half-open connection, as when
// the server's side is gone and the client's side hears nothing), drop
// the reply to the next script a client sends (as when a connection fails
// after Redis ran a command and before its reply arrived), or cut the
// connections of the next commands, after their replies or before the
// commands reach the server.
type proxy struct {
	target  string
	ln      net.Listener
	done    chan struct{} // closed by close
	dropped chan *proxyConn
	wg      sync.WaitGroup

	mu     sync.Mutex
	conns  map[*proxyConn]struct{}
	drop   bool // drop the reply to the next script
	losses int  // the replies to the next scripts still to lose
	resets int  // the next commands still to cut before the server
	lost   int  // replies lost so far
	reset  int  // commands cut so far
	closed bool
}

// proxyConn is one connection through a proxy. Its flags are guarded by
// the proxy's mu.
type proxyConn struct {
	client, server net.Conn

	pubsub   bool // the client sent SUBSCRIBE on it
	frozen   bool // nothing is forwarded any more
	dropping bool // what the server sends is dropped
	losing   bool // the connection is cut when the server answers
	lost     bool // it was, and the reply counted in the proxy's lost
}

// verdict is what a proxy does with data it read.
type verdict uint8

const (
	relay   verdict = iota // the data is forwarded
	swallow                // the data is dropped, the connection kept
	sever                  // the data is dropped and the connection cut
)

// newProxy returns a proxy to the server at target, listening on a
// loopback address of its own, closed when t ends.
func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := new(net.ListenConfig).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{
		target: target, ln: ln, done: make(chan struct{}), dropped: make(chan *proxyConn, 1),
		conns: make(map[*proxyConn]struct{}),
	}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

// addr returns the address clients connect to.
func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := new(net.Dialer).Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		c := &proxyConn{client: client, server: server}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.cut()
			return
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(c, client, server, true) })
		p.wg.Go(func() { p.pipe(c, server, client, false) })
	}
}

// pipe forwards what comes from one side of c to the other, up (from the
// client) or down, until either side closes.
func (p *proxy) pipe(c *proxyConn, from, to net.Conn, up bool) {
	defer c.cut()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 && p.pass(c, buf[:n], up) {
			if _, err := to.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// pass looks at data, which came from the client if up, and reports
// whether to forward it. On a frozen connection it waits until the proxy
// closes, and reports false.
func (p *proxy) pass(c *proxyConn, data []byte, up bool) bool {
	p.mu.Lock()
	v := p.judge(c, data, up)
	frozen := c.frozen
	p.mu.Unlock()
	switch v {
	case swallow:
		select {
		case p.dropped <- c:
		default:
		}
		return false
	case sever:
		c.cut()
		return false
	}
	if frozen {
		<-p.done
		return false
	}
	return true
}

// judge returns what to do with data on c, which came from the client if
// up, and notes what it tells of c. It must be called with p.mu held.
func (p *proxy) judge(c *proxyConn, data []byte, up bool) verdict {
	if !up {
		return p.judgeReply(c)
	}
	lower := bytes.ToLower(data)
	script := bytes.Contains(lower, []byte("eval"))
	switch {
	case bytes.Contains(lower, []byte("subscribe")):
		c.pubsub = true
	case p.resets > 0 && (script || bytes.Contains(lower, []byte("hgetall"))):
		p.resets--
		p.reset++
		return sever
	case p.drop && script:
		p.drop, c.dropping = false, true
	case p.losses > 0 && script:
		p.losses--
		c.losing = true
	}
	return relay
}

// judgeReply returns what to do with what the server sent on c. It must
// be called with p.mu held.
func (p *proxy) judgeReply(c *proxyConn) verdict {
	switch {
	case c.losing:
		if !c.lost {
			c.lost = true
			p.lost++
		}
		return sever
	case c.dropping:
		return swallow
	}
	return relay
}

// freezePubSub freezes the pub/sub connections open now, and returns how
// many it froze. Connections opened later are forwarded.
func (p *proxy) freezePubSub() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.conns {
		if c.pubsub && !c.frozen {
			c.frozen = true
			n++
		}
	}
	return n
}

// dropNextReply makes the proxy drop what the server sends on the
// connection of the next script (EVAL or EVALSHA) a client sends, and
// send the connection on p.dropped once the server has answered: the
// script has run. The connection stays open until cut.
func (p *proxy) dropNextReply() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop = true
}

// loseReplies makes the proxy lose the replies to the next n scripts
// (EVAL or EVALSHA) that clients send: each script reaches the server and
// runs, and its connection is cut when the server answers, so that the
// client never reads the reply. go-redis then sends the script again, on
// a new connection, and the proxy loses the reply to that too while n
// lasts.
func (p *proxy) loseReplies(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.losses = n
}

// resetCommands makes the proxy cut the connections of the next n scripts
// or HGETALLs that clients send, before the commands reach the server: a
// connection reset, after which go-redis sends the command again.
func (p *proxy) resetCommands(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resets = n
}

// disarm cancels the faults of loseReplies and resetCommands not yet
// injected.
func (p *proxy) disarm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.losses, p.resets = 0, 0
}

// injected returns how many replies the proxy lost and how many commands
// it cut before the server, so far.
func (p *proxy) injected() (lost, reset int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lost, p.reset
}

// cut closes both sides of c.
func (c *proxyConn) cut() {
	_ = c.client.Close()
	_ = c.server.Close()
}

// close closes the proxy and every connection through it, and waits for
// its goroutines.
func (p *proxy) close() {
	_ = p.ln.Close()
	close(p.done)
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.cut()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
