package pgstore_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/internal/pgtest"
	"github.com/taskstatus/taskstatus/pgstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// TestLostReplies loses the replies of updates that PostgreSQL ran, some
// of them batched, while runs write their steps: the connection is cut
// when the server answers, so that the run hears the store is unavailable
// although its write applied. The runs go on; once they end, every task
// is stored as its run left it, and its history holds each of its
// versions once: a write sent again after its reply was lost is told
// from a conflict, and applies nothing twice.
func TestLostReplies(t *testing.T) {
	proxy := newReplyLoser(t, pgtest.URL(t))
	losing := &loseUpdates{proxy: proxy}
	cfg, err := pgxpool.ParseConfig(proxy.url)
	require.NoError(t, err)
	cfg.ConnConfig.Tracer = losing
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	s := newStore(t, pool)
	tr, err := tracker.New(s, tracker.WithErrorHandler(func(context.Context, error) {}))
	require.NoError(t, err)

	const runs, losses = 16, 12
	steps := []string{"parse", "embed", "index", "store", "notify"}
	ids := make([]string, runs)
	for i := range ids {
		ids[i] = fmt.Sprintf("lost-%02d", i)
		require.NoError(t, tr.Apply(t.Context(), ids[i], tracker.Create(steps...)))
	}
	losing.arm(s.schema, losses)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			ctx := t.Context()
			run, err := tr.Start(ctx, id) // a lost reply's error comes with the Run
			if run == nil {
				assert.NoError(t, err, "start %s", id)
				return
			}
			for _, step := range steps {
				// Errors are the lost replies': the run keeps the changes and goes on.
				_ = run.Apply(ctx, tracker.StartStep(step))
				_ = run.Apply(ctx, tracker.SucceedStep(step))
			}
			_ = run.Apply(ctx, tracker.Succeed())
		})
	}
	wg.Wait()
	require.NoError(t, tr.Close(ctxTimeout(t, time.Minute)), "every kept change is written")

	lost, batched := losing.injected()
	require.Equal(t, losses, lost, "the replies of %d updates are to be lost", losses)
	require.Equal(t, losses, proxy.cut(), "the replies of %d updates were lost", losses)
	require.Positive(t, batched, "some of them were batched")
	for _, id := range ids {
		st, err := s.Get(t.Context(), id)
		require.NoError(t, err)
		require.Equal(t, store.StatusSuccess, st.Status, "task %s is stored as its run ended it", id)
		for _, step := range st.Steps {
			require.Equal(t, store.StepSuccess, step.Status, "task %s step %s", id, step.Name)
		}
		history, err := s.History(t.Context(), id)
		require.NoError(t, err)
		for i, h := range history {
			require.Equal(t, int64(i+1), h.Version, "task %s: the history holds each version once, in order", id)
		}
		require.Equal(t, st.Version, history[len(history)-1].Version, "task %s: the history ends with the stored state", id)
	}
}

// loseUpdates is a pgx tracer that, once armed, has its proxy lose the
// replies of the next updates of a store's tasks (single or batched).
type loseUpdates struct {
	proxy *replyLoser

	mu      sync.Mutex
	schema  string // of the store; "" until armed
	left    int    // updates whose replies are still to lose
	lost    int
	batched int // of the lost, how many were batches
}

func (l *loseUpdates) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.left == 0 {
		return ctx
	}
	ids := pgstore.Updated(l.schema, data.SQL, data.Args)
	if ids == nil {
		return ctx
	}
	l.proxy.lose(conn.PgConn().Conn().LocalAddr().String())
	l.left--
	l.lost++
	if len(ids) > 1 {
		l.batched++
	}
	return ctx
}

func (*loseUpdates) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// arm loses the replies of the next n updates of the store on schema.
func (l *loseUpdates) arm(schema string, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.schema, l.left = schema, n
}

// injected returns how many replies were lost, and how many of those
// were of batches.
func (l *loseUpdates) injected() (lost, batched int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost, l.batched
}

// replyLoser forwards the TCP connections it accepts to a server, and
// cuts a connection that lose marked as soon as the server sends on it:
// the statement sent on it ran, and its client never hears how it went.
type replyLoser struct {
	url    string // of the server, through the proxy
	target string // the server's address
	ln     net.Listener
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[string]*lossConn // by the client's address
	cuts   int                  // connections cut as their server answered
	closed bool
}

// lossConn is one connection through a replyLoser.
type lossConn struct {
	client, server net.Conn
	losing         bool // guarded by the replyLoser's mu
}

// newReplyLoser returns a proxy to the server of rawURL, listening on a
// loopback address of its own, closed when t ends.
func newReplyLoser(t *testing.T, rawURL string) *replyLoser {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	ln, err := new(net.ListenConfig).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	u.Host = ln.Addr().String()
	p := &replyLoser{url: u.String(), target: target, ln: ln, conns: make(map[string]*lossConn)}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *replyLoser) accept() {
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
		c := &lossConn{client: client, server: server}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.cut()
			return
		}
		p.conns[client.RemoteAddr().String()] = c
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(c, client, server, false) })
		p.wg.Go(func() { p.pipe(c, server, client, true) })
	}
}

// pipe forwards what comes from one side of c to the other until either
// side closes. What the server sends (down) on a connection marked by
// lose cuts the connection instead.
func (p *replyLoser) pipe(c *lossConn, from, to net.Conn, down bool) {
	defer c.cut()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			p.mu.Lock()
			losing := down && c.losing
			if losing {
				p.cuts++
			}
			p.mu.Unlock()
			if losing {
				return
			}
			if _, err := to.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// lose marks the connection from client address addr: the next thing the
// server sends on it cuts it.
func (p *replyLoser) lose(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.conns[addr]; c != nil {
		c.losing = true
	}
}

// cut returns how many connections p cut as their server answered.
func (p *replyLoser) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

// close stops accepting, cuts every connection and waits for the proxy's
// goroutines.
func (p *replyLoser) close() {
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		c.cut()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}

// cut closes both sides of c.
func (c *lossConn) cut() {
	_ = c.client.Close()
	_ = c.server.Close()
}
