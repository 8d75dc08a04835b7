// Package redisserver runs a redis-server of a test's own, on a loopback
// port and in a directory of its own, for the tests that kill, pause or
// restart Redis: they must never disturb a server others use.
package redisserver

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// Server is a redis-server process started by a test. Its methods are
// called from the test's goroutine.
type Server struct {
	t    *testing.T
	bin  string
	addr string
	dir  string
	args []string
	cmd  *exec.Cmd // nil while no process runs
}

// Start starts a redis-server on a free loopback port, with its files in
// a temporary directory, waits until it answers PING, and stops it when t
// ends. With persistent, every write is appended to a file and synced
// before Redis acknowledges it (appendfsync always), so that a server
// killed and started again keeps what it acknowledged; without it, a
// restarted server is empty. It fails t if redis-server is not on PATH.
func Start(t *testing.T, persistent bool) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	require.NoError(t, err, "the test starts a redis-server of its own")
	ln, err := new(net.ListenConfig).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	dir := t.TempDir()
	s := &Server{t: t, bin: bin, addr: addr, dir: dir, args: []string{
		"--port", port, "--bind", "127.0.0.1", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"),
		"--daemonize", "no", "--save", "",
	}}
	if persistent {
		s.args = append(s.args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		s.args = append(s.args, "--appendonly", "no")
	}
	t.Cleanup(s.Stop)
	s.Restart()
	return s
}

// Addr returns the server's address, host:port.
func (s *Server) Addr() string { return s.addr }

// Restart starts the server process, on the same port and directory as
// before if it ran already, and waits until it answers PING.
func (s *Server) Restart() {
	s.t.Helper()
	require.Nil(s.t, s.cmd, "the server is running already")
	cmd := exec.CommandContext(context.Background(), s.bin, s.args...)
	require.NoError(s.t, cmd.Start())
	s.cmd = cmd
	s.WaitAnswers(nil)
}

// WaitAnswers waits until the server answers PING through client, or a new
// client if it is nil. It fails the test, showing the server's log, if
// that takes more than 15 seconds: the bound only guards against a server
// that does not come up.
func (s *Server) WaitAnswers(client *redis.Client) {
	s.t.Helper()
	if client == nil {
		client = redis.NewClient(&redis.Options{Addr: s.addr, DisableIdentity: true, MaxRetries: -1, DialTimeout: time.Second})
		defer func() { _ = client.Close() }()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(s.t.Context(), time.Second)
		err := client.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server %s does not answer PING: %v\n%s", s.addr, err, log)
		}
		time.Sleep(50 * time.Millisecond) // polling a process that is starting
	}
}

// Kill kills the server with SIGKILL, as a crash would, and waits until
// the process is gone: its port then refuses connections.
func (s *Server) Kill() {
	s.t.Helper()
	require.NotNil(s.t, s.cmd, "the server is not running")
	require.NoError(s.t, s.cmd.Process.Kill())
	_ = s.cmd.Wait() // "signal: killed"
	s.cmd = nil
}

// Pause stops the server with SIGSTOP: connections are still accepted by
// the kernel but nothing answers, so calls time out instead of being
// refused. Resume lets it go on with SIGCONT.
func (s *Server) Pause() {
	s.t.Helper()
	require.NoError(s.t, s.cmd.Process.Signal(syscall.SIGSTOP))
}

// Resume lets a paused server go on.
func (s *Server) Resume() {
	s.t.Helper()
	require.NoError(s.t, s.cmd.Process.Signal(syscall.SIGCONT))
}

// Stop kills the server if it runs. It is idempotent.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill() // SIGKILL ends a stopped process too
	_ = s.cmd.Wait()
	s.cmd = nil
}
