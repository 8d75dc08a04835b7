package pgstore_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// envBin names the directory of initdb and postgres, for the tests that
// start a server of their own; PATH and /usr/lib/postgresql/*/bin are
// searched when it is unset.
const envBin = "TASKSTATUS_PG_BIN"

// server is a PostgreSQL cluster that a test made with initdb and runs as
// its child, on a port of its own.
type server struct {
	t    *testing.T
	bin  string
	dir  string // the data directory, which also holds the socket
	port int
	cred *syscall.Credential // whom it runs as; nil: this process's user
	cmd  *exec.Cmd
	done chan struct{} // closed when the running server has exited
}

// startServer makes a cluster in a new directory and starts it. It is
// stopped and removed when t ends. PostgreSQL refuses to run as root: a
// test run as root runs it as the user postgres.
func startServer(t *testing.T) *server {
	t.Helper()
	srv := &server{t: t, bin: pgBin(t), port: freePort(t)}
	dir, err := os.MkdirTemp("", "pgstore-test-")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, os.RemoveAll(dir)) })
	srv.dir = filepath.Join(dir, "data")
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		require.NoError(t, err, "running as root, the server must run as the user postgres")
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		srv.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		require.NoError(t, os.Chown(dir, int(uid), int(gid)))
	}
	initdb := srv.command("initdb", "-D", srv.dir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
	out, err := initdb.CombinedOutput()
	require.NoError(t, err, "initdb: %s", out)
	srv.start()
	t.Cleanup(srv.stop)
	return srv
}

// command returns the command of program name of the server's binaries,
// run as the server's user.
func (srv *server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(srv.t.Context(), filepath.Join(srv.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: srv.cred, Setpgid: true}
	// A server still running when the test ends shuts down at once, its
	// backends with it; SIGKILL would leave them running.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	return cmd
}

// url returns the URL of the server's database postgres.
func (srv *server) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?connect_timeout=2", srv.port)
}

// start starts the server and returns once it accepts connections, which
// its log says.
func (srv *server) start() {
	t := srv.t
	t.Helper()
	srv.cmd = srv.command("postgres", "-D", srv.dir, "-p", strconv.Itoa(srv.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+srv.dir,
		"-c", "fsync=off", "-c", "logging_collector=off")
	stderr, err := srv.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, srv.cmd.Start())
	ready := make(chan struct{})
	done := make(chan struct{})
	srv.done = done
	cmd := srv.cmd
	go func() {
		defer close(done)
		var once sync.Once
		lines := bufio.NewScanner(stderr)
		for lines.Scan() {
			if strings.Contains(lines.Text(), "ready to accept connections") {
				once.Do(func() { close(ready) })
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case <-ready:
	case <-done:
		require.FailNow(t, "the server exited before it was ready")
	case <-time.After(time.Minute):
		require.FailNow(t, "the server was not ready within a minute")
	}
}

// stop stops the server at once, as a crash would (an immediate shutdown:
// SIGQUIT to the postmaster, by its pid), and returns once it has exited.
// Stopping a stopped server does nothing.
func (srv *server) stop() {
	select {
	case <-srv.done:
		return
	default:
	}
	require.NoError(srv.t, srv.cmd.Process.Signal(syscall.SIGQUIT))
	<-srv.done
}

// pgBin returns the directory of initdb and postgres.
func pgBin(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv(envBin); dir != "" {
		return dir
	}
	if path, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(path)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	require.NotEmpty(t, dirs, "no initdb: set %s", envBin)
	return dirs[len(dirs)-1]
}

// freePort returns a loopback TCP port that nothing listened on just now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ctxTimeout is a context of t that ends after d.
func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
