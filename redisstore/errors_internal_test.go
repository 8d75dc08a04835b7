package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
)

// serverError is an error reply from Redis, as go-redis returns it.
type serverError string

func (e serverError) Error() string { return string(e) }
func (serverError) RedisError()     {}

// timeoutError is a network error that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var _ redis.Error = serverError("")

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want error // nil: no sentinel
	}{
		{"nil reply", redis.Nil, store.ErrNotFound},
		{"conflict", serverError("CONFLICT stored version is 3"), store.ErrConflict},
		{"corrupt", serverError("CORRUPT version field is not a number"), store.ErrCorrupt},
		{"wrong type", serverError("WRONGTYPE Operation against a key holding the wrong kind of value"), store.ErrCorrupt},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, store.ErrUnavailable},
		{"bare ECONNREFUSED", syscall.ECONNREFUSED, store.ErrUnavailable},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, store.ErrUnavailable},
		{"EOF on a closed connection", io.EOF, store.ErrUnavailable},
		{"unexpected EOF", fmt.Errorf("reading reply: %w", io.ErrUnexpectedEOF), store.ErrUnavailable},
		{"network timeout", timeoutError{}, store.ErrUnavailable},
		{"deadline exceeded", context.DeadlineExceeded, store.ErrUnavailable},
		{"pool timeout", redis.ErrPoolTimeout, store.ErrUnavailable},
		{"client closed", redis.ErrClosed, store.ErrUnavailable},
		{"loading", serverError("LOADING Redis is loading the dataset in memory"), store.ErrUnavailable},
		{"readonly", serverError("READONLY You can't write against a read only replica."), store.ErrUnavailable},
		{"cluster down", serverError("CLUSTERDOWN The cluster is down"), store.ErrUnavailable},
		{"master down", serverError("MASTERDOWN Link with MASTER is down"), store.ErrUnavailable},
		{"try again", serverError("TRYAGAIN Multiple keys request during rehashing of slot"), store.ErrUnavailable},
		{"busy", serverError("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."), store.ErrUnavailable},
		{"out of memory", serverError("OOM command not allowed when used memory > 'maxmemory'."), store.ErrUnavailable},
		{"no replicas", serverError("NOREPLICAS Not enough good replicas to write."), store.ErrUnavailable},
		{"disk failing", serverError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk."), store.ErrUnavailable},
		{"too many clients", serverError("ERR max number of clients reached"), store.ErrUnavailable},
		{"canceled", context.Canceled, nil},
		{"canceled dial", &net.OpError{Op: "dial", Net: "tcp", Err: context.Canceled}, nil},
		{"other server error", serverError("ERR unknown command 'FOO'"), nil},
		{"plain error", errors.New("boom"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err)
			assert.Equal(t, tc.want, got)

			err := wrap(`get "x"`, tc.err)
			require.ErrorIs(t, err, tc.err, "the client's error must stay in the chain")
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}
}
